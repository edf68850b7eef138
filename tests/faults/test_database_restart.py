"""PostgreSQL restarted under load: ``aimm dev`` keeps answering and recovers by itself.

As an operator would try it: ``aimm dev`` (API, projector, worker with its registrar and
scorer, Kafka relay) runs on a private PostgreSQL cluster (never the shared one) while
clients register models, add versions and deploy them, and read. The cluster is stopped
for ``OUTAGE`` seconds and started again. Then:

- every answer was a 2xx or a ``503`` problem+json with ``Retry-After`` (no 500, no
  dropped connection), and none took longer than the documented bound plus a margin;
- ``/health/ready`` said ``503`` while the database was away, and ``200`` after;
- the API answered commands again without anything being restarted: the supervisor
  restarted no child (it is the fallback, not the mechanism);
- every command that got a 2xx is in the log exactly once, and nothing is there twice
  (the clients retry a 503 with the same ``Idempotency-Key``, as a client should);
- the read models equal a clean rebuild of them, the relay published every log to its
  end, and a training job queued after the outage is trained by the same worker and
  registered by its registrar.

Needs ``pg_createcluster`` (Debian's ``postgresql-common``) and root; skipped otherwise.
Takes about two minutes; bounded by ``TEST_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from application.contexts import CONTEXTS
from infrastructure.postgres import create_pool
from infrastructure.schema import migrate
from infrastructure.settings import DatabaseTimeouts
from projections.base import live_tables
from projections.catalog import all_projections
from projections.positions import status
from projections.rebuild import rebuild_many
from tests.conftest import free_port, server_home
from tests.integration.test_database_outage import VERSION, _cluster, private_cluster

__all__ = ["private_cluster"]  # the fixture, shared with the integration test

pytestmark = pytest.mark.kafka

PROBLEM = "application/problem+json"
OUTAGE = 20.0  # seconds the database is away
TEST_SECONDS = 420.0  # the whole test, start-up and checks included
CLIENTS = 3  # concurrent command clients
# The longest any request may take: twice the configured database waits (a pool wait and
# a connection attempt; twice for a command the outage meets halfway) and a margin for a
# loaded machine (2 cores shared with the rest of the suite).
LIMIT = 2 * (DatabaseTimeouts().pool_timeout + DatabaseTimeouts().connect_timeout) + 5.0


@dataclass
class Answer:
    phase: str
    method: str
    path: str
    status: int  # 0: no HTTP answer at all (the API dropped the connection or timed out)
    seconds: float
    started: float = 0.0  # time.monotonic() when sent
    retry_after: str | None = None
    content_type: str = ""
    error: str = ""


@dataclass
class Load:
    """Clients sending commands and reads; every answer is kept."""

    client: httpx.AsyncClient
    phase: str = "before"
    answers: list[Answer] = field(default_factory=list)
    registered: dict[str, str] = field(default_factory=dict)  # name -> id, answered 2xx
    versioned: set[str] = field(default_factory=set)
    deployed: set[str] = field(default_factory=set)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    down: tuple[float, float] = (0.0, 0.0)  # from the stop's end to the start's beginning

    async def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        started = time.monotonic()
        phase = self.phase
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self.answers.append(
                Answer(phase, method, path, 0, time.monotonic() - started, started, error=repr(exc))
            )
            return None
        self.answers.append(
            Answer(
                phase,
                method,
                path,
                response.status_code,
                time.monotonic() - started,
                started,
                response.headers.get("retry-after"),
                response.headers.get("content-type", ""),
            )
        )
        return response

    async def command(self, path: str, body: dict[str, Any], key: str) -> dict[str, Any]:
        """POST until a 2xx, with the same Idempotency-Key each time (a client's retry)."""
        while True:
            response = await self.send("POST", path, json=body, headers={"Idempotency-Key": key})
            if response is not None and response.is_success:
                answer: dict[str, Any] = response.json()
                return answer
            retry_after = 1.0
            if response is not None and response.headers.get("retry-after", "").isdigit():
                retry_after = float(response.headers["retry-after"])
            # a client's retry interval (Retry-After, shortened to keep the load up)
            await asyncio.sleep(min(retry_after, 0.5))

    async def commands(self, client_number: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            name = f"outage-{client_number}-{n:04d}-{uuid.uuid4().hex[:6]}"
            model = await self.command(
                "/api/v1/ai/models", {"name": name, "kind": "ml", "task": "t"}, f"reg-{name}"
            )
            self.registered[name] = model["id"]
            base = f"/api/v1/ai/models/{model['id']}"
            await self.command(f"{base}/versions", {"artifact": f"sha256:{name}"}, f"ver-{name}")
            self.versioned.add(model["id"])
            await self.command(f"{base}/deploy", {"version": 1}, f"dep-{name}")
            self.deployed.add(model["id"])

    async def reads(self) -> None:
        while not self.stop.is_set():
            await self.send("GET", "/api/v1/ai/models", params={"limit": 5})
            if self.registered:
                some = next(reversed(self.registered.values()))
                await self.send("GET", f"/api/v1/ai/models/{some}")
            await self.send("GET", "/health/ready")
            await asyncio.sleep(0.05)  # a reader's pace, not a wait for anything

    def count(self, status: int, phase: str | None = None, path: str | None = None) -> int:
        return sum(
            1
            for a in self.answers
            if a.status == status
            and (phase is None or a.phase == phase)
            and (path is None or a.path == path)
        )


class Output:
    """The lines ``aimm dev`` and its children print, collected by a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line)

    async def wait_for(self, pattern: str, within: float) -> str:
        deadline = time.monotonic() + within
        while True:
            for line in list(self.lines):
                if match := re.search(pattern, line):
                    return match.group(0)
            assert time.monotonic() < deadline, f"{pattern!r} never printed:\n{self.text()}"
            await asyncio.sleep(0.1)

    def digest(self) -> str:
        """The warnings and errors printed, each kind once with its count."""
        kinds: Counter[str] = Counter()
        for line in self.lines:
            if re.search(r"WARNING|ERROR|CRITICAL|Traceback", line):
                kinds[re.sub(r"^\S+ \S+ |\d+(\.\d+)?", "#", line.strip())[:150]] += 1
        return "\n".join(f"{n:5d} x {kind}" for kind, n in kinds.most_common())

    def text(self) -> str:
        return "".join(self.lines[-200:])

    def unhandled(self) -> str:
        """What the API logged about its 500s: each "unhandled error" line with the
        traceback after it (a 500 is a bug; the failure should say which)."""
        found: list[str] = []
        for i, line in enumerate(self.lines):
            if "unhandled error" in line:
                found.extend(self.lines[i : i + 60])
        return "".join(found[:400])


async def until(check: Any, within: float, what: str) -> Any:
    """Poll ``check`` (an async callable) until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not reached within {within}s"
        await asyncio.sleep(0.2)


@contextlib.contextmanager
def dev(url: str, port: int, kafka: str, data_dir: Path) -> Iterator[subprocess.Popen[str]]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIMM_")}
    env.update(
        {
            "AIMM_DATABASE_URL": url,
            "AIMM_DATA_DIR": str(data_dir),
            "AIMM_PORT": str(port),
            "AIMM_LOG_LEVEL": "WARNING",
            "AIMM_KAFKA_BOOTSTRAP": kafka,
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "dev"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def table_contents(conn: asyncpg.Connection, tables: list[str]) -> dict[str, list[Any]]:
    found = {}
    for table in tables:
        rows = await conn.fetch(f"SELECT * FROM {table}")
        found[table] = sorted((tuple(r) for r in rows), key=repr)
    return found


async def heads(conn: asyncpg.Connection) -> dict[str, int]:
    return {
        context: await conn.fetchval(
            f"SELECT coalesce(max(notification_id), 0) FROM {context}_events"
        )
        for context in CONTEXTS
    }


async def test_the_database_restarts_under_load_and_everything_recovers_by_itself(
    private_cluster: tuple[str, str], kafka_bootstrap: str
) -> None:
    async with asyncio.timeout(TEST_SECONDS):
        await restart_under_load(*private_cluster, kafka_bootstrap)


async def restart_under_load(name: str, url: str, kafka: str) -> None:
    await migrate(url)
    port = free_port()
    with server_home() as home, dev(url, port, kafka, home / "data") as proc:
        output = Output(proc)
        key = await output.wait_for(r"aimm_[A-Za-z0-9_-]{20,}", 120)
        await output.wait_for(r"worker started \(pid \d+\)", 120)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=LIMIT + 30,
        ) as client:
            load = Load(client)

            async def ready() -> bool:
                response = await load.send("GET", "/health/ready")
                return response is not None and response.status_code == 200

            await until(ready, 120, "the API is ready")
            load.answers.clear()
            tasks = [asyncio.create_task(load.commands(i)) for i in range(CLIENTS)]
            tasks.append(asyncio.create_task(load.reads()))
            try:
                await until(lambda: asyncio.sleep(0, len(load.deployed) >= 5), 60, "load under way")

                # -- the outage ------------------------------------------------------------
                load.phase = "outage"
                await asyncio.to_thread(
                    _cluster, "pg_ctlcluster", VERSION, name, "stop", "-m", "fast"
                )
                stopped_at = time.monotonic()

                async def noticed() -> bool:
                    return (
                        load.count(503, "outage", "/health/ready") > 0
                        and load.count(503, "outage", "/api/v1/ai/models") > 0
                    )

                await until(noticed, OUTAGE, "the API answers 503 while the database is away")
                # the outage lasts OUTAGE seconds under load: a duration, not a wait for a state
                await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped_at)))
                load.down = (stopped_at, time.monotonic())
                await asyncio.to_thread(_cluster, "pg_ctlcluster", VERSION, name, "start")
                load.phase = "after"
                back = len(load.deployed)

                # the API answers commands again by itself, and the load goes on
                await until(
                    lambda: asyncio.sleep(0, len(load.deployed) >= back + 2 * CLIENTS),
                    90,
                    "commands succeed again after the restart",
                )
                await until(ready, 60, "ready again after the restart")
            finally:
                load.stop.set()
                done, pending = await asyncio.wait(tasks, timeout=LIMIT * 4)
                for task in pending:
                    task.cancel()
            for task in done:
                task.result()  # a client task that failed is a failure of the test
            assert not pending, "a client never got its command through after the outage"

            # -- every answer was a 2xx or a 503 with Retry-After, within the bound ---------
            bad = [a for a in load.answers if not (200 <= a.status < 300 or a.status == 503)]
            assert bad == [], f"answers other than 2xx/503: {bad[:10]}\n{output.unhandled()}"
            unhinted = [
                a
                for a in load.answers
                if a.status == 503
                and (
                    a.retry_after is None
                    # the readiness probe answers its own Health document, problems the rest
                    or (a.path != "/health/ready" and PROBLEM not in a.content_type)
                )
            ]
            assert unhinted == [], f"503s without Retry-After or problem+json: {unhinted[:10]}"
            slow = [a for a in load.answers if a.seconds > LIMIT]
            assert slow == [], f"answers slower than {LIMIT}s: {slow[:10]}"
            assert load.count(503, "outage") > 0
            # nothing got through while the server was down (the outage was real)
            down_from, down_until = load.down
            through = [
                a
                for a in load.answers
                if down_from <= a.started
                and a.started + a.seconds <= down_until
                and a.status // 100 == 2
            ]
            assert through == [], through[:10]
            print(summary(load))  # the figures, for whoever runs it with -s
            assert any(a.status // 100 == 2 for a in load.answers if a.phase == "after")

            # a training job queued after the outage: the worker and its registrar are alive
            job = await train_one(load, url)

        # -- nothing was restarted ---------------------------------------------------------
        print(output.digest())  # what the services logged about the outage
        restarts = [line for line in output.lines if "exited with code" in line]
        assert restarts == [], "".join(restarts) + "\n" + output.text()

        # -- the log: every 2xx command once, nothing twice ---------------------------------
        pool = await create_pool(url, max_size=4)
        try:
            async with pool.acquire() as conn:
                await check_log(conn, load)
                await check_registered(conn, job)
                await until(
                    lambda: caught_up(conn), 60, "the projections reach the end of the logs"
                )
                await until(lambda: relayed(conn), 60, "the relay publishes the logs to their end")
                tables = [t for p in all_projections() for t in live_tables(p).values()]
                live = await table_contents(conn, tables)
            await rebuild_many(pool, all_projections())
            async with pool.acquire() as conn:
                rebuilt = await table_contents(conn, tables)
            differing = [t for t in tables if live[t] != rebuilt[t]]
            assert differing == [], f"read models differing from a clean rebuild: {differing}"
        finally:
            await pool.close()
        assert proc.poll() is None, "aimm dev stopped"


def summary(load: Load) -> str:
    lines = []
    for phase in ("before", "outage", "after"):
        answers = [a for a in load.answers if a.phase == phase]
        statuses = Counter(a.status for a in answers)
        slowest = max((a.seconds for a in answers), default=0.0)
        slowest_503 = max((a.seconds for a in answers if a.status == 503), default=0.0)
        lines.append(
            f"{phase}: {len(answers)} answers {dict(sorted(statuses.items()))}, slowest "
            f"{slowest:.2f}s, slowest 503 {slowest_503:.2f}s"
        )
    for a in sorted(load.answers, key=lambda a: -a.seconds)[:5]:
        lines.append(
            f"  slow: {a.method} {a.path} {a.status} {a.seconds:.2f}s, sent "
            f"{a.started - load.down[0]:+.2f}s from the stop (down for "
            f"{load.down[1] - load.down[0]:.2f}s)"
        )
    lines.append(
        f"commands answered 2xx: {len(load.registered)} models registered, "
        f"{len(load.versioned)} versions, {len(load.deployed)} deploys"
    )
    return "\n".join(lines)


async def check_log(conn: asyncpg.Connection, load: Load) -> None:
    rows = await conn.fetch("SELECT originator_id, topic, state FROM registry_events")
    names: Counter[str] = Counter()
    deploys: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    for row in rows:
        if row["topic"].endswith("Model.Registered"):
            names[json.loads(row["state"])["name"]] += 1
        elif row["topic"].endswith("Model.VersionDeployed"):
            deploys[str(row["originator_id"])] += 1
        elif row["topic"].endswith("Model.VersionRegistered"):
            versions[str(row["originator_id"])] += 1
    assert [n for n in load.registered if names[n] != 1] == []
    assert [m for m in load.versioned if versions[m] != 1] == []
    assert [m for m in load.deployed if deploys[m] != 1] == []
    # nothing twice, whether or not its client saw the 2xx (a 503 may follow a commit)
    assert [n for n, c in names.items() if c > 1] == []
    assert [m for m, c in versions.items() if c > 1] == []
    assert [m for m, c in deploys.items() if c > 1] == []


async def caught_up(conn: asyncpg.Connection) -> bool:
    return all(row.lag == 0 for row in await status(conn))


async def relayed(conn: asyncpg.Connection) -> bool:
    positions = dict(await conn.fetch("SELECT context, position FROM aimm_relay_positions"))
    return all(positions.get(c, 0) >= head for c, head in (await heads(conn)).items())


async def train_one(load: Load, url: str) -> str:
    """A one-epoch job on the sample data, queued after the outage; its id once completed."""
    dataset = await load.command(
        "/api/v1/ml/datasets",
        {"name": "after-outage", "tickers": ["SP500"], "start": "2010-01-01", "end": "2012-12-31"},
        "dataset-after-outage",
    )
    job = await load.command(
        "/api/v1/ml/train",
        {
            "dataset_id": dataset["id"],
            "hyperparameters": {"epochs": 1, "hidden_units": 4, "layers": 1},
            "model_name": "after-outage",
        },
        "train-after-outage",
    )

    async def completed() -> bool:
        response = await load.send("GET", f"/api/v1/ml/jobs/{job['id']}")
        assert response is not None and response.status_code == 200, response
        assert response.json()["status"] not in ("failed", "stopped"), response.text
        return bool(response.json()["status"] == "completed")

    await until(completed, 180, "the training job queued after the outage completes")
    return str(job["id"])


async def check_registered(conn: asyncpg.Connection, job_id: str) -> None:
    async def registered() -> bool:
        rows = await conn.fetch("SELECT topic, state FROM registry_events")
        return any(
            r["topic"].endswith("Model.VersionRegistered")
            and json.loads(r["state"]).get("lineage", {}).get("training_run") == job_id
            for r in rows
        )

    await until(registered, 60, "the registrar registers the job's model version")
