"""Scale-out: two of each process give the same final state as one of each, with no
duplicate effect.

The same fixed workload runs twice, each time on a fresh database of the shared server:
once with one ``aimm serve``, one ``aimm projector`` and one ``aimm worker`` (which runs
the registrar and scorer process managers), once with two of each. The clients spread
their calls round-robin over the API servers, and every command is sent twice with the
same ``Idempotency-Key`` — the retry to the *other* server when there are two. The
workload: models registered, versioned and deployed; memories recorded; a market-data
import; a dataset and training jobs, which the workers claim from the one queue and
which the registrar registers in the registry when they finish; reads in between.

Then, for each run, once every job has finished and the read models have reached the
log heads, a snapshot of what a user sees and of what the logs hold, free of ids and
times: every event topic per context with its count, the model list (names, latest
versions, deployments), each agent's memories, the market-data tickers, the jobs'
outcomes and the job queue's attempts. The two snapshots must be equal, and each must
show every command once (each retry replayed), each job run once (one attempt, one
``Requested``/``Completed``), and each finished run registered once.

Why two projectors are safe: ``Projector.step`` takes each projection's transaction-
scoped advisory lock before it reads that projection's position, and commits the
read-model changes and the new position together; a second projector waits on the
lock, then reads the position the first one committed and goes on from there. Locks are
always taken in projection-name order, so two projectors cannot deadlock. The registrar
and the scorer record their position and their downstream events in one transaction
(eventsourcing's tracking table: a second one's insert is refused and it resumes past
the event); workers claim jobs with ``FOR UPDATE SKIP LOCKED``. The Kafka relay is left
out: a second relay is a standby behind its leader lock, and its kill test
(``tests/faults/test_kill.py``) covers the relay under faults.

Bounded by ``TEST_SECONDS``; run with ``-s`` to see the snapshot sizes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from api.cli.dev import load_sample_market_data
from application.contexts import CONTEXTS
from infrastructure.postgres import with_database
from infrastructure.schema import migrate
from projections.positions import status
from tests.conftest import free_port, server_home

TEST_SECONDS = 900.0
ADMIN_KEY = "scale-out-admin-key-0123456789"
CLIENTS = 4
MODELS = 8
MEMORIES = 24
AGENTS = 3
JOBS = 3
SERVICES = ("serve", "projector", "worker")


@contextlib.asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    name = f"aimm_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield with_database(server_url, name)
    finally:
        admin = await asyncpg.connect(with_database(server_url, "postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


# A process that constructs the eventsourcing applications runs the event store's
# ``CREATE OR REPLACE FUNCTION`` (every construction, tables there or not); two processes
# doing it at the same moment can make one fail with "tuple concurrently updated" and
# exit. A supervisor (``aimm dev``, systemd, Kubernetes) starts it again; so does this
# test, and only for that reason (see the README, "Scaling out").
KNOWN_START_RACE = "tuple concurrently updated"


@dataclass
class Service:
    name: str
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api.cli", self.name],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def watch(self) -> None:
        """Start it again if it exited at the known start race; fail on any other exit."""
        assert self.proc is not None
        if self.proc.poll() is None:
            return
        text = self.log.read_text(errors="replace")
        assert KNOWN_START_RACE in text and self.restarts < 3, (
            f"{self.name} exited with {self.proc.returncode}:\n{text[-3000:]}"
        )
        self.restarts += 1
        self.log.write_text(text.replace(KNOWN_START_RACE, "(known start race)"))
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.asynccontextmanager
async def processes(url: str, copies: int, tmp: Path) -> AsyncIterator[list[int]]:
    """``copies`` of each service on ``url``, supervised; yields the API servers' ports."""
    ports = [free_port() for _ in range(copies)]
    with server_home() as home:
        base = {k: v for k, v in os.environ.items() if not k.startswith("AIMM_")}
        base |= {
            "AIMM_DATABASE_URL": url,
            "AIMM_DATA_DIR": str(home / "data"),
            "AIMM_LOG_LEVEL": "WARNING",
            "AIMM_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
        }
        services = [
            Service(name, {**base, "AIMM_PORT": str(ports[n])}, tmp / f"{name}-{copies}x-{n}.log")
            for name, n in itertools.product(SERVICES, range(copies))
        ]

        async def supervise() -> None:
            while True:
                for service in services:
                    service.watch()
                await asyncio.sleep(0.5)

        for service in services:
            service.start()
        supervisor = asyncio.create_task(supervise())
        try:
            yield ports
            assert not supervisor.done(), supervisor.exception()
            for service in services:
                service.watch()
                assert service.proc is not None and service.proc.poll() is None, service.name
        finally:
            supervisor.cancel()
            for service in services:
                service.stop()
            restarted = {s.log.stem: s.restarts for s in services if s.restarts}
            print(f"{copies} of each: restarted after the known start race: {restarted or 0}")


async def until(check: Any, within: float, what: str) -> Any:
    """Poll ``check`` (an async callable) until it returns something truthy."""
    deadline = time.monotonic() + within
    while not (found := await check()):
        assert time.monotonic() < deadline, f"{what}: not reached within {within}s"
        await asyncio.sleep(0.2)
    return found


@dataclass
class Clients:
    """HTTP clients, one per API server; calls go round-robin over them."""

    servers: list[httpx.AsyncClient]
    turn: itertools.count[int] = field(default_factory=itertools.count)
    replays: int = 0

    def next(self) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
        """A server for a call and another (the next one) for its retry."""
        n = next(self.turn)
        return self.servers[n % len(self.servers)], self.servers[(n + 1) % len(self.servers)]

    async def command(self, path: str, body: dict[str, Any], key: str) -> dict[str, Any]:
        """The command, then the same again with the same key (a client's retry, to the
        other server when there are two): the retry must replay the first answer."""
        first_server, retry_server = self.next()
        headers = {"Idempotency-Key": key}
        first = await first_server.post(path, json=body, headers=headers)
        assert first.is_success, f"{path}: {first.status_code} {first.text}"
        retry = await retry_server.post(path, json=body, headers=headers)
        assert retry.status_code == first.status_code, retry.text
        assert retry.headers.get("Idempotent-Replayed") == "true", (path, dict(retry.headers))
        assert retry.json() == first.json()
        self.replays += 1
        answer: dict[str, Any] = first.json()
        return answer

    async def get(self, path: str, **params: Any) -> Any:
        """A read; a 503 (the read models not there within the API's bounded wait, on a
        busy machine) is retried after its ``Retry-After``, as a client does (bounded)."""
        deadline = time.monotonic() + 120
        while True:
            server, _ = self.next()
            response = await server.get(path, params=params)
            if response.status_code != 503 or time.monotonic() > deadline:
                break
            await asyncio.sleep(float(response.headers["Retry-After"]))
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
        return response.json()


async def workload(clients: Clients) -> list[str]:
    """The fixed workload; returns the training job ids."""
    dataset = await clients.command(
        "/api/v1/ml/datasets",
        {"name": "scale", "tickers": ["SP500"], "start": "2008-01-01", "end": "2014-12-31"},
        "dataset-scale",
    )
    jobs = []
    for n in range(JOBS):
        job = await clients.command(
            "/api/v1/ml/train",
            {
                "dataset_id": dataset["id"],
                "hyperparameters": {"epochs": 10, "hidden_units": 8, "layers": 1, "seed": n},
                "model_name": f"scale-trained-{n}",
            },
            f"train-{n}",
        )
        jobs.append(str(job["id"]))

    async def models(client_number: int) -> None:
        for n in range(client_number, MODELS, CLIENTS):
            name = f"scale-model-{n}"
            model = await clients.command(
                "/api/v1/ai/models", {"name": name, "kind": "ml", "task": "t"}, f"reg-{name}"
            )
            base = f"/api/v1/ai/models/{model['id']}"
            await clients.command(f"{base}/versions", {"artifact": f"sha256:{n}"}, f"ver-{name}")
            await clients.command(f"{base}/deploy", {"version": 1}, f"dep-{name}")
            await clients.get(base)  # readable at once, whichever server answers
            await clients.get("/api/v1/ai/models", limit=50)

    async def memories(client_number: int) -> None:
        for n in range(client_number, MEMORIES, CLIENTS):
            body = {
                "agent_id": f"scale-agent-{n % AGENTS}",
                "content": f"memory {n}: momentum breakout in sector {n % 5}",
                "tags": [f"t{n % 4}"],
            }
            await clients.command("/api/v1/memory", body, f"mem-{n}")
            await clients.get("/api/v1/memory/search", q="momentum")

    first = dt.date(2024, 1, 1)
    rows = [
        {"date": (first + dt.timedelta(days=i)).isoformat(), "open": 10.0 + i,
         "high": 11.0 + i, "low": 9.0 + i, "close": 10.5 + i, "volume": 100 + i}
        for i in range(30)
    ]  # fmt: skip
    await clients.command("/api/v1/market-data/SCALE/bars", {"rows": rows}, "import-scale")
    await asyncio.gather(
        *(models(c) for c in range(CLIENTS)), *(memories(c) for c in range(CLIENTS))
    )
    return jobs


SETTLED: dict[str, Any] = {}  # what ``settled`` saw last, for the failure message


async def settled(conn: asyncpg.Connection, jobs: list[str]) -> bool:
    """Every job finished, the registrar registered each, the read models caught up."""
    rows = await conn.fetch("SELECT status FROM rm_training_jobs WHERE id = ANY($1::uuid[])", jobs)
    SETTLED["jobs"] = sorted(r["status"] for r in rows)
    SETTLED["registered"] = await conn.fetchval(
        "SELECT count(*) FROM registry_events WHERE topic LIKE '%:Model.VersionRegistered' "
        "AND originator_id IN (SELECT originator_id FROM registry_events "
        "WHERE topic LIKE '%:Model.Registered' "
        "AND convert_from(state, 'UTF8') LIKE '%\"scale-trained-%')"
    )
    SETTLED["lagging"] = [
        (row.projection, row.context, row.lag) for row in await status(conn) if row.lag
    ]
    return (
        SETTLED["jobs"] == ["completed"] * len(jobs)
        and SETTLED["registered"] >= len(jobs)
        and not SETTLED["lagging"]
    )


async def snapshot(conn: asyncpg.Connection, clients: Clients) -> dict[str, Any]:
    """What the run left, without ids or times."""
    topics: Counter[tuple[str, str]] = Counter()
    for context in CONTEXTS:
        for row in await conn.fetch(
            f"SELECT topic, count(*) AS n FROM {context}_events GROUP BY topic"
        ):
            topics[(context, row["topic"])] = row["n"]
    models = await clients.get("/api/v1/ai/models", limit=500)
    memories = {}
    for agent in range(AGENTS):
        # every memory of the workload has "momentum" in it
        page = await clients.get(
            "/api/v1/memory/search", q="momentum", agent_id=f"scale-agent-{agent}", limit=100
        )
        memories[agent] = sorted((m["snippet"], m["tags"], m["status"]) for m in page["items"])
    market = await clients.get("/api/v1/market-data")
    jobs = await clients.get("/api/v1/ml/jobs", limit=500)
    attempts = await conn.fetch("SELECT attempts, state FROM aimm_job_queue")
    return {
        "topics": dict(sorted(topics.items())),
        "models": sorted(
            (m["name"], m["kind"], m["latest_version"], sorted(m["active"].items()))
            for m in models["items"]
        ),
        "memories": memories,
        "market": sorted(
            (t["ticker"], t["first_date"], t["last_date"], t["row_count"], t["imports"])
            for t in market["items"]
        ),
        "jobs": sorted((j["status"], j["model_name"], j["attempt"]) for j in jobs["items"]),
        "queue": sorted((r["attempts"], r["state"]) for r in attempts),
    }


def check_once(state: dict[str, Any]) -> None:
    """Each command once, each job run once, each finished run registered once."""
    topics = state["topics"]

    def count(context: str, suffix: str) -> int:
        return sum(n for (c, t), n in topics.items() if c == context and t.endswith(suffix))

    trained_models = [m for m in state["models"] if m[0].startswith("scale-trained-")]
    assert len(trained_models) == JOBS and all(m[2] == 1 for m in trained_models), state["models"]
    assert count("registry", ":Model.Registered") == MODELS + JOBS
    assert count("registry", ":Model.VersionRegistered") == MODELS + JOBS
    assert count("registry", ":Model.VersionDeployed") == MODELS
    assert count("training", ":TrainingRun.Requested") == JOBS
    assert count("training", ":TrainingRun.Completed") == JOBS
    assert sum(len(v) for v in state["memories"].values()) == MEMORIES
    assert [a for a, _ in state["queue"]] == [1] * JOBS, state["queue"]  # each claimed once
    assert [(s, a) for s, _, a in state["jobs"]] == [("completed", 1)] * JOBS, state["jobs"]


async def run(server_url: str, copies: int, tmp: Path) -> dict[str, Any]:
    async with fresh_database(server_url) as url:
        await migrate(url)
        await asyncio.to_thread(load_sample_market_data, url)  # the dataset's bars
        async with processes(url, copies, tmp) as ports:
            headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
            async with contextlib.AsyncExitStack() as stack:
                servers = [
                    await stack.enter_async_context(
                        httpx.AsyncClient(
                            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60
                        )
                    )
                    for port in ports
                ]
                for server in servers:

                    async def ready(server: httpx.AsyncClient = server) -> bool:
                        with contextlib.suppress(httpx.HTTPError):
                            return (await server.get("/health/ready")).status_code == 200
                        return False

                    await until(ready, 120, "an API server is ready")
                clients = Clients(servers)
                jobs = await workload(clients)
                conn = await asyncpg.connect(url)
                try:
                    try:
                        await until(lambda: settled(conn, jobs), 400, "jobs done, caught up")
                    except AssertionError as exc:
                        raise AssertionError(f"{exc}; last seen: {SETTLED}") from None
                    state = await snapshot(conn, clients)
                    connections = await conn.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    )
                finally:
                    await conn.close()
        print(
            f"{copies} of each: {sum(state['topics'].values())} events, "
            f"{len(state['models'])} models, {clients.replays} retries replayed, "
            f"{connections} database connections open at the end"
        )
        return state


async def test_two_of_each_process_give_the_same_state_as_one_of_each(
    server_url: str, tmp_path: Path
) -> None:
    async with asyncio.timeout(TEST_SECONDS):
        single = await run(server_url, 1, tmp_path)
        double = await run(server_url, 2, tmp_path)
    check_once(single)
    check_once(double)
    for part in single:
        assert double[part] == single[part], part
