"""``kill -9`` of each aimm process under load, then a restart: nothing lost, nothing twice.

The processes ``aimm dev`` runs — ``serve`` (the API), ``projector``, ``worker`` (with the
registrar and scorer process managers, which live in it) and ``relay`` — run here as
subprocesses of the test on a fresh database of the shared server, with the session's
Kafka-protocol broker. Clients register models, add versions and deploy them (each POST
with an ``Idempotency-Key``, retried with the same key until it gets a 2xx, as a client
should when the API vanishes), and training jobs give the worker leases. Each kind of
process, in a seeded random order, is SIGKILLed at a seeded random moment (the worker
while it holds a lease) and started again; as under ``aimm dev``, a process that exits on
its own (a start-up that timed out on a loaded machine) is restarted too, and reported.
Afterwards:

- every command that got a 2xx is in the log exactly once, and nothing is there twice;
- the read models equal a clean rebuild of them (``projections.rebuild.rebuild_many``);
- no training job is left ``running`` without a live lease: each finished (the killed
  worker's job was taken over once its lease expired, or failed naming why);
- every event of every log reached Kafka at least once and, after dedupe by the
  envelope's ``event_id`` (what ``DedupingConsumer`` does), exactly once and in log order
  per aggregate; no dead letters.

Bounded by ``TEST_SECONDS``; run with ``-s`` to see the seed, the kill times and counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from api.cli.dev import load_sample_market_data
from application.contexts import CONTEXTS
from infrastructure.kafka_relay import dead_letters
from infrastructure.postgres import create_pool
from infrastructure.schema import migrate
from projections.base import live_tables
from projections.catalog import all_projections
from projections.events import event_id, read_events
from projections.positions import status
from projections.rebuild import rebuild_many
from tests.conftest import free_port, server_home
from tests.integration.test_kafka_relay import read_topic

pytestmark = pytest.mark.kafka

SEED = int(os.environ.get("AIMM_KILL_SEED", "20261207"))
TEST_SECONDS = 420.0
CLIENTS = 3
LEASE_SECONDS = 3.0  # a killed worker's job is taken over this long after its last renewal
ADMIN_KEY = "kill-test-admin-key-0123456789"
SERVICES = ("serve", "projector", "worker", "relay")


@dataclass
class Service:
    name: str
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    kills: int = 0
    exits: list[int] = field(default_factory=list)  # codes of exits on its own

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api.cli", self.name],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, f"{self.name} is not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.kills += 1

    def restart_if_exited(self) -> None:
        """What ``aimm dev``'s supervisor does for a child that exits on its own."""
        if self.proc is not None and (code := self.proc.poll()) is not None:
            self.exits.append(code)
            self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Load:
    client: httpx.AsyncClient
    registered: dict[str, str] = field(default_factory=dict)  # name -> model id (2xx)
    versioned: set[str] = field(default_factory=set)
    deployed: set[str] = field(default_factory=set)
    jobs: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def command(self, path: str, body: dict[str, Any], key: str) -> dict[str, Any]:
        """POST until a 2xx, with the same Idempotency-Key each time (a client's retry)."""
        while True:
            try:
                response = await self.client.post(path, json=body, headers={"Idempotency-Key": key})
            except httpx.HTTPError:
                self.statuses[0] += 1  # the API was killed under the request
            else:
                self.statuses[response.status_code] += 1
                if response.is_success:
                    answer: dict[str, Any] = response.json()
                    return answer
                assert response.status_code in (502, 503, 504), response.text
            await asyncio.sleep(0.2)  # a client's retry interval, not a wait for a state

    async def commands(self, client_number: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            name = f"kill-{client_number}-{n:04d}-{uuid.uuid4().hex[:6]}"
            model = await self.command(
                "/api/v1/ai/models", {"name": name, "kind": "ml", "task": "t"}, f"reg-{name}"
            )
            self.registered[name] = model["id"]
            base = f"/api/v1/ai/models/{model['id']}"
            await self.command(f"{base}/versions", {"artifact": f"sha256:{name}"}, f"ver-{name}")
            self.versioned.add(model["id"])
            await self.command(f"{base}/deploy", {"version": 1}, f"dep-{name}")
            self.deployed.add(model["id"])

    async def train(self, n: int, dataset_id: str) -> None:
        job = await self.command(
            "/api/v1/ml/train",
            {
                "dataset_id": dataset_id,
                "hyperparameters": {"epochs": 20, "hidden_units": 8, "layers": 1},
                "model_name": f"kill-trained-{n}",
            },
            f"train-{n}",
        )
        self.jobs.append(str(job["id"]))


async def until(check: Any, within: float, what: str) -> Any:
    """Poll ``check`` (an async callable) until it returns something truthy."""
    deadline = time.monotonic() + within
    while not (found := await check()):
        assert time.monotonic() < deadline, f"{what}: not reached within {within}s"
        await asyncio.sleep(0.2)
    return found


async def test_kill_9_of_each_process_under_load_loses_nothing_and_doubles_nothing(
    database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    async with asyncio.timeout(TEST_SECONDS):
        await kill_under_load(database_url, kafka_bootstrap, tmp_path)


async def kill_under_load(url: str, kafka: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    print(f"seed {SEED}")
    await migrate(url)
    await asyncio.to_thread(load_sample_market_data, url)  # bars for the training jobs
    port = free_port()
    with server_home() as home:
        env = {key: value for key, value in os.environ.items() if not key.startswith("AIMM_")}
        env |= {
            "AIMM_DATABASE_URL": url,
            "AIMM_DATA_DIR": str(home / "data"),
            "AIMM_PORT": str(port),
            "AIMM_LOG_LEVEL": "WARNING",
            "AIMM_KAFKA_BOOTSTRAP": kafka,
            "AIMM_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
            "AIMM_WORKER_LEASE_SECONDS": str(LEASE_SECONDS),
        }
        services = {name: Service(name, env, tmp_path / f"{name}.log") for name in SERVICES}
        pool = await create_pool(url, max_size=4)
        supervisor: asyncio.Task[None] | None = None
        try:
            for service in services.values():
                service.start()

            async def supervise() -> None:
                while True:
                    for service in services.values():
                        service.restart_if_exited()
                    await asyncio.sleep(0.5)  # the supervisor's polling interval

            supervisor = asyncio.create_task(supervise())
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                timeout=60,
            ) as client:
                load = Load(client)

                async def live() -> bool:
                    with contextlib.suppress(httpx.HTTPError):
                        return (await client.get("/health/live")).status_code == 200
                    return False

                await until(live, 120, "the API answers")
                dataset = await load.command(
                    "/api/v1/ml/datasets",
                    {"name": "kill", "tickers": ["SP500"], "start": "2008-01-01",
                     "end": "2014-12-31"},
                    "dataset-kill",
                )  # fmt: skip
                tasks = [asyncio.create_task(load.commands(i)) for i in range(CLIENTS)]
                try:
                    await load.train(0, dataset["id"])
                    await until(lambda: asyncio.sleep(0, len(load.deployed) >= 3), 90, "load")
                    order = list(SERVICES)
                    rng.shuffle(order)
                    for name in order:
                        if name == "worker":
                            await load.train(1, dataset["id"])
                            await until(lambda: leased(pool), 120, "a job leased by the worker")
                        # a random moment under load: a duration, not a wait for a state
                        delay = rng.uniform(0.2, 2.5)
                        await asyncio.sleep(delay)
                        services[name].kill()
                        print(f"killed {name} after {delay:.2f}s; {len(load.deployed)} deploys")
                        services[name].start()
                        if name == "serve":
                            await until(live, 120, "the API answers again")
                        before = len(load.deployed)
                        await until(
                            lambda b=before: asyncio.sleep(0, len(load.deployed) >= b + 2),
                            120,
                            f"commands go on after {name} was killed",
                        )
                    await load.train(2, dataset["id"])
                finally:
                    load.stop.set()
                    done, pending = await asyncio.wait(tasks, timeout=120)
                    for task in pending:
                        task.cancel()
                for task in done:
                    task.result()
                assert not pending, "a client never got its command through"
                print(
                    f"{len(load.registered)} models, {len(load.deployed)} deploys, "
                    f"{len(load.jobs)} jobs; answers {dict(load.statuses)}"
                )
                await wait_for_jobs(pool, load.jobs, services)

            assert supervisor is not None
            supervisor.cancel()
            for name, service in services.items():
                assert service.kills == 1 and service.proc is not None, name
                assert service.proc.poll() is None, f"{name} is not running at the end"
                if service.exits:  # e.g. a start-up that timed out on a loaded machine
                    print(f"{name} exited on its own {len(service.exits)}x: {service.exits}")
            async with pool.acquire() as conn:
                await check_log(conn, load)
                await check_jobs(conn, load.jobs)
                await until(lambda: caught_up(conn), 90, "the projections reach the log heads")
                await until(lambda: relayed(conn), 90, "the relay reaches the log heads")
                assert await dead_letters(conn) == []
                logs = {c: await read_events(conn, c, 0, 1_000_000) for c in CONTEXTS}
        finally:
            if supervisor is not None:
                supervisor.cancel()
            for service in services.values():
                service.stop()
        await check_kafka(kafka, logs)
        await check_rebuild(pool)
        await pool.close()


async def wait_for_jobs(pool: asyncpg.Pool, jobs: list[str], services: dict[str, Service]) -> None:
    """Until every job finishes; on failure, what the jobs, the queue and services were."""
    try:
        await until(lambda: jobs_finished(pool, jobs), 240, "every job finishes")
    except AssertionError:
        async with pool.acquire() as conn:
            found = await conn.fetch("SELECT id, status, attempt FROM rm_training_jobs")
            queue = await conn.fetch("SELECT * FROM aimm_job_queue")
        print(f"jobs {[dict(j) for j in found]}\nqueue {[dict(q) for q in queue]}")
        print(f"exits { ({n: s.exits for n, s in services.items()}) }")
        raise


async def leased(pool: asyncpg.Pool) -> bool:
    async with pool.acquire() as conn:
        return bool(
            await conn.fetchval(
                "SELECT count(*) FROM aimm_job_queue WHERE state = 'leased' "
                "AND lease_expires_at > now()"
            )
        )


async def jobs_finished(pool: asyncpg.Pool, jobs: list[str]) -> bool:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT status FROM rm_training_jobs WHERE id = ANY($1::uuid[])", jobs
        )
    return len(rows) == len(jobs) and all(r["status"] in ("completed", "failed") for r in rows)


async def check_log(conn: asyncpg.Connection, load: Load) -> None:
    rows = await conn.fetch("SELECT originator_id, topic, state FROM registry_events")
    names: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    deploys: Counter[str] = Counter()
    for row in rows:
        if row["topic"].endswith("Model.Registered"):
            names[json.loads(row["state"])["name"]] += 1
        elif row["topic"].endswith("Model.VersionRegistered"):
            versions[str(row["originator_id"])] += 1
        elif row["topic"].endswith("Model.VersionDeployed"):
            deploys[str(row["originator_id"])] += 1
    assert [n for n in load.registered if names[n] != 1] == [], "a 2xx registration missing"
    assert [m for m in load.versioned if versions[m] < 1] == [], "a 2xx version missing"
    assert [m for m in load.deployed if deploys[m] != 1] == [], "a 2xx deploy missing"
    assert [n for n, c in names.items() if c > 1] == [], "a registration twice"
    assert [m for m, c in versions.items() if c > 1] == [], "a version twice"
    assert [m for m, c in deploys.items() if c > 1] == [], "a deploy twice"
    trained = await conn.fetch(
        "SELECT state FROM training_events WHERE topic LIKE '%:TrainingRun.Requested'"
    )
    assert len(trained) == len(load.jobs), "a 2xx training request missing or twice"


async def check_jobs(conn: asyncpg.Connection, jobs: list[str]) -> None:
    """No job ``running`` without a live lease; the killed worker's job was taken over."""
    orphans = await conn.fetch(
        "SELECT j.id FROM rm_training_jobs j LEFT JOIN aimm_job_queue q ON q.run_id = j.id "
        "WHERE j.status = 'running' AND NOT (q.state = 'leased' AND q.lease_expires_at > now())"
    )
    assert orphans == []
    rows = await conn.fetch(
        "SELECT j.id, j.status, q.attempts FROM rm_training_jobs j "
        "JOIN aimm_job_queue q ON q.run_id = j.id WHERE j.id = ANY($1::uuid[])",
        jobs,
    )
    assert len(rows) == len(jobs)
    assert all(r["status"] == "completed" for r in rows), [dict(r) for r in rows]
    print(f"job attempts: {sorted(r['attempts'] for r in rows)}")


async def caught_up(conn: asyncpg.Connection) -> bool:
    return all(row.lag == 0 for row in await status(conn))


async def relayed(conn: asyncpg.Connection) -> bool:
    positions = dict(await conn.fetch("SELECT context, position FROM aimm_relay_positions"))
    for context in CONTEXTS:
        head = await conn.fetchval(
            f"SELECT coalesce(max(notification_id), 0) FROM {context}_events"
        )
        if positions.get(context, 0) < head:
            return False
    return True


async def check_kafka(kafka: str, logs: dict[str, list[Any]]) -> None:
    """Every event at least once; after dedupe by event id once, in order per aggregate."""
    for context, log in logs.items():
        if not log:
            continue
        expected = {str(event_id(e)) for e in log}
        records = await asyncio.to_thread(read_topic, kafka, f"aimm.{context}", expected)
        # the session's broker is shared: keep this database's events (their ids are its own)
        ours = [r for r in records if dict(r.headers)["event_id"].decode() in expected]
        ids = [dict(r.headers)["event_id"].decode() for r in ours]
        assert set(ids) == expected, f"{context}: events missing from Kafka"
        seen: dict[str, Any] = {}
        for record, ident in zip(ours, ids, strict=True):
            seen.setdefault(ident, record)
        per_aggregate: dict[str, list[str]] = defaultdict(list)
        for ident, record in seen.items():
            per_aggregate[record.key.decode()].append(ident)
        wanted: dict[str, list[str]] = defaultdict(list)
        for event in log:
            wanted[str(event.aggregate_id)].append(str(event_id(event)))
        assert dict(per_aggregate) == dict(wanted), f"{context}: order per aggregate"
        print(f"kafka {context}: {len(log)} events, {len(ours) - len(seen)} redelivered")


async def check_rebuild(pool: asyncpg.Pool) -> None:
    tables = [t for p in all_projections() for t in live_tables(p).values()]

    async def contents() -> dict[str, list[Any]]:
        async with pool.acquire() as conn:
            found = {}
            for table in tables:
                rows = await conn.fetch(f"SELECT * FROM {table}")
                found[table] = sorted((tuple(r) for r in rows), key=repr)
            return found

    live_rows = await contents()
    await rebuild_many(pool, all_projections())
    rebuilt = await contents()
    assert [t for t in tables if live_rows[t] != rebuilt[t]] == [], "read models != rebuild"
