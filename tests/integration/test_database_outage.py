"""The long-running loops survive the database going away: a private PostgreSQL cluster
(never the shared one) is stopped under a running projector and watcher, and started
again; events appended after it are projected, and the watcher hears of them. A
training worker whose claim loop starts while the database is away claims the job
queued before the outage once it is back, and trains it to its end.

Needs ``pg_createcluster`` (Debian's ``postgresql-common``) and root; skipped otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from eventsourcing.persistence import InterfaceError, OperationalError

from api.keycache import KeyCache
from application.contexts import Contexts
from application.market_data import import_rows
from application.registry import RegistryApplication
from application.worker import TrainingWorker
from domain.metadata import acting_as
from domain.ml.runs import COMPLETED, QUEUED, RUNNING
from infrastructure import keys
from infrastructure.postgres import create_pool, eventsourcing_env
from infrastructure.schema import migrate
from infrastructure.wiring import build_contexts, jax_trainer, job_queue
from projections.catalog import all_projections
from projections.positions import ProjectionWatcher, wait_for_position
from projections.projector import Projector
from tests.e2e.test_training_api import random_walk

VERSION = "15"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cluster(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60)


@pytest.fixture
def private_cluster() -> Iterator[tuple[str, str]]:
    """(name, url) of a PostgreSQL cluster of this test's own, dropped afterwards."""
    if shutil.which("pg_createcluster") is None or os.geteuid() != 0:
        pytest.skip("needs pg_createcluster (postgresql-common) and root")
    name, port = f"aimm_outage_{uuid.uuid4().hex[:8]}", _free_port()
    _cluster("pg_createcluster", VERSION, name, "-p", str(port), "--", "--auth=trust")
    try:
        _cluster("pg_ctlcluster", VERSION, name, "start")
        yield name, f"postgresql://postgres@127.0.0.1:{port}/aimm_outage"
    finally:
        _cluster("pg_dropcluster", "--stop", VERSION, name)


def _register(app: RegistryApplication) -> int:
    with acting_as("outage-test", f"corr-{uuid.uuid4()}"):
        result = app.register_model(
            name=f"model-{uuid.uuid4().hex[:8]}", kind="ml", task="t", description="d",
            owner="o", tags=[], respond=lambda m: (201, {"id": str(m.id)}),
        )  # fmt: skip
    return result.position


def _queue_a_run(contexts: Contexts) -> tuple[uuid.UUID, int]:
    """A small training job in the queue: bars, a dataset over them, a run of 2 epochs."""
    with acting_as("outage-test", f"corr-{uuid.uuid4()}"):
        import_rows(contexts.predictions, "ACME", random_walk(300, seed=7))
        dataset = contexts.training.register_dataset(
            "acme-outage",
            {"tickers": ["ACME"], "start": "2020-01-01", "end": "2021-12-31"},
            contexts.predictions,
            respond=lambda d: (201, {"id": str(d.id)}),
        )
        run = contexts.training.request_run(
            dataset_id=uuid.UUID(dataset.value.body["id"]),
            model_type="mlp_regressor",
            hyperparameters={"epochs": 2, "batch_size": 32, "hidden_units": 8},
            early_stopping=None,
            record_every_steps=None,
            model_name=None,
            respond=lambda r: (202, {"id": str(r.id)}),
        )
    return uuid.UUID(run.value.body["id"]), run.position


def _status_when_back(contexts: Contexts, run_id: uuid.UUID) -> Any:
    try:
        return contexts.training.get_run(run_id).status
    except (InterfaceError, OperationalError):  # a connection that died with the server
        return None


async def _register_when_back(app: RegistryApplication, within: float) -> int:
    """A command right after the restart may meet a pooled connection that died with
    the server; a client retries it (it appended nothing)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            return await asyncio.to_thread(_register, app)
        except Exception:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)  # a client's retry interval, not a wait for a state


async def _until(check: object, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_the_projector_watcher_and_worker_resume_after_the_database_restarts(
    private_cluster: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    name, url = private_cluster
    await migrate(url)
    registry = await asyncio.to_thread(RegistryApplication, eventsourcing_env(url))
    contexts = await asyncio.to_thread(build_contexts, eventsourcing_env(url))
    queue = job_queue(contexts.training, lease_seconds=5)
    worker = TrainingWorker(
        contexts.training, queue, jax_trainer, heartbeat_seconds=0.5, poll_seconds=0.1
    )
    stopping = threading.Event()
    claiming = threading.Thread(target=worker.run, args=(stopping,), name="worker")
    pool = await create_pool(url, max_size=4)
    projector = Projector(pool, all_projections())
    watcher = ProjectionWatcher(pool, url)
    stop = asyncio.Event()
    caplog.set_level(logging.WARNING)
    task = asyncio.create_task(projector.run(stop, idle_timeout=0.2))
    await watcher.start()
    try:
        before = await asyncio.to_thread(_register, registry)
        assert await watcher.wait_until("registry", before, timeout=20)
        run_id, queued = await asyncio.to_thread(_queue_a_run, contexts)
        assert await watcher.wait_until("training", queued, timeout=20)  # in the jobs table

        await asyncio.to_thread(_cluster, "pg_ctlcluster", VERSION, name, "stop", "-m", "fast")
        claiming.start()  # the worker's claim loop starts while the database is away
        # the loops notice the outage and retry (one line each), none ends
        await _until(lambda: any("projector failed" in r.message for r in caplog.records), 20)
        await _until(lambda: any("claim or run failed" in r.message for r in caplog.records), 20)
        await _until(lambda: not watcher.listening.is_set(), 20)
        assert not task.done() and claiming.is_alive()

        await asyncio.to_thread(_cluster, "pg_ctlcluster", VERSION, name, "start")
        after = await _register_when_back(registry, within=20)
        assert after > before
        assert await watcher.wait_until("registry", after, timeout=30)
        await _until(watcher.listening.is_set, 20)
        conn = await pool.acquire()
        try:
            assert await wait_for_position(conn, "registry", after, timeout=5)
        finally:
            await pool.release(conn)
        assert not task.done()
        # the job queued before the outage is claimed and trained to its end after it
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 45
        while (status := await asyncio.to_thread(_status_when_back, contexts, run_id)) in (
            None, QUEUED, RUNNING,
        ):  # fmt: skip
            assert loop.time() < deadline, f"the queued job is still {status}"
            await asyncio.sleep(0.1)
        assert status == COMPLETED
        assert (await asyncio.to_thread(contexts.training.get_run, run_id)).attempt == 1
    finally:
        stopping.set()
        if claiming.is_alive():
            await asyncio.to_thread(claiming.join, 30)
        stop.set()
        await asyncio.wait_for(task, timeout=20)
        await watcher.stop()
        await pool.close()
        await asyncio.to_thread(registry.close)
        await asyncio.to_thread(contexts.close)


async def test_the_key_cache_listens_again_after_the_database_restarts(
    private_cluster: tuple[str, str],
) -> None:
    """A revocation reaches the API's key cache by NOTIFY; after the database restarted,
    the cache listens again by itself, so a revocation still drops the cached key at once
    (the TTL never removes an entry: only the notification does)."""
    name, url = private_cluster
    await migrate(url)
    pool = await create_pool(url, max_size=4)
    cache = KeyCache(pool)
    await cache.start()
    try:
        async with pool.acquire() as conn:
            key, info = await keys.create_key(conn, roles=["viewer"], name="k", created_by="t")
        assert await cache.lookup(key) is not None
        _cluster("pg_ctlcluster", VERSION, name, "stop", "-m", "fast")
        await _until(lambda: not cache.listening, 30)
        assert keys.hash_key(key) not in cache._entries  # emptied when the listener was lost
        _cluster("pg_ctlcluster", VERSION, name, "start")
        await _until(lambda: cache.listening, 60)
        found = None
        for _ in range(50):  # a pooled connection that died with the server: a retry
            try:
                found = await cache.lookup(key)
                break
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await asyncio.sleep(0.1)
        assert found is not None and keys.hash_key(key) in cache._entries
        async with pool.acquire() as conn:
            assert await keys.revoke_key(conn, info.key_id, revoked_by="t", reason="test")
        await _until(lambda: keys.hash_key(key) not in cache._entries, 30)
        assert await cache.lookup(key) is None
    finally:
        await cache.stop()
        await pool.close()
