"""The long-running loops survive the database going away: a private PostgreSQL cluster
(never the shared one) is stopped under a running projector and watcher, and started
again; events appended after it are projected, and the watcher hears of them.

Needs ``pg_createcluster`` (Debian's ``postgresql-common``) and root; skipped otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from application.registry import RegistryApplication
from domain.metadata import acting_as
from infrastructure.postgres import create_pool, eventsourcing_env
from infrastructure.schema import migrate
from projections.catalog import all_projections
from projections.positions import ProjectionWatcher, wait_for_position
from projections.projector import Projector

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


async def test_the_projector_and_the_watcher_resume_after_the_database_restarts(
    private_cluster: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    name, url = private_cluster
    await migrate(url)
    registry = await asyncio.to_thread(RegistryApplication, eventsourcing_env(url))
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

        await asyncio.to_thread(_cluster, "pg_ctlcluster", VERSION, name, "stop", "-m", "fast")
        # both loops notice the outage and retry (one line each), neither ends
        await _until(lambda: any("projector failed" in r.message for r in caplog.records), 20)
        await _until(lambda: not watcher.listening.is_set(), 20)
        assert not task.done()

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
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=20)
        await watcher.stop()
        await pool.close()
        await asyncio.to_thread(registry.close)
