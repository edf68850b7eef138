"""The projector against real PostgreSQL: crashes, live rebuilds, as-of, NOTIFY, reshape, lag."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

import asyncpg
import pytest

from application.contexts import CONTEXTS
from application.registry import RegistryApplication
from domain.metadata import acting_as
from domain.registry.model import Model
from infrastructure.postgres import create_pool, eventsourcing_env
from infrastructure.schema import migrate
from infrastructure.wiring import build_contexts
from projections.audit import AuditIndex
from projections.audit_chain import AuditChain
from projections.base import live_tables
from projections.events import Event, head_position, read_events
from projections.positions import status, wait_for_position
from projections.projector import Projector, ddl_hash, setup
from projections.rebuild import rebuild, rebuild_many
from projections.registry_models import RegistryModels, split_table

REPO = Path(__file__).resolve().parents[2]

# Tags a naive array encoding would get wrong, mixed in with ordinary ones.
TAGS = ["forecast", "risk", "nlp", "fx", 'quote"d', "back\\slash", "com,ma", "{brace}", "null"]

# What the domain says a model is, in the columns rm_models must agree on.
ORACLE_COLUMNS = (
    "id", "name", "kind", "task", "description", "owner", "tags", "version", "created_by",
)  # fmt: skip


@dataclass
class Writer:
    """Issues registry commands and keeps what the read model must end up showing."""

    app: RegistryApplication
    rng: random.Random
    expected: dict[UUID, tuple[Any, ...]] = field(default_factory=dict)

    @staticmethod
    def snapshot(model: Model) -> tuple[Any, ...]:
        return (
            model.id, model.name, model.kind, model.task, model.description, model.owner,
            list(model.tags), model.version, model.created_by,
        )  # fmt: skip

    def respond(self, model: Model) -> tuple[int, Any]:
        self.expected[model.id] = self.snapshot(model)
        return 200, {"id": str(model.id)}

    def register(self) -> None:
        rng = self.rng
        self.app.register_model(
            name=f"model-{len(self.expected):05d}-{uuid.uuid4().hex[:6]}",
            kind=rng.choice(("llm", "ml")),
            task=f"task {rng.randrange(100)}",
            description=f"described {rng.random():.6f}",
            owner=rng.choice(("quant", "risk", "research")),
            tags=rng.sample(TAGS, rng.randrange(4)),
            respond=self.respond,
        )

    def update(self) -> None:
        rng = self.rng
        model_id = rng.choice(list(self.expected))
        change: dict[str, Any] = {}
        if rng.random() < 0.5:
            change["task"] = f"task {rng.randrange(100)}"
        if rng.random() < 0.7:
            change["description"] = f"revised {rng.random():.6f}"
        if rng.random() < 0.3:
            change["owner"] = rng.choice(("quant", "risk", "research"))
        if rng.random() < 0.5:
            change["tags"] = rng.sample(TAGS, rng.randrange(5))
        self.app.update_model(model_id, expected_version=None, respond=self.respond, **change)

    def write(self, commands: int, updates: bool = True) -> None:
        """Run ``commands`` commands, about one registration to two detail updates (an
        update may change nothing and so record no event)."""
        with acting_as("projector-test", f"corr-{uuid.uuid4()}"):
            for _ in range(commands):
                if not updates or not self.expected or self.rng.random() < 0.35:
                    self.register()
                else:
                    self.update()


class EventLedger:
    """A read model with one row per event application and no key, so a doubled or lost
    event shows up as a wrong list rather than as an error."""

    name: ClassVar[str] = "test_event_ledger"
    contexts: ClassVar[tuple[str, ...]] = ("registry",)
    tables: ClassVar[Mapping[str, Sequence[str]]] = {
        "test_ledger": (
            "CREATE TABLE {test_ledger} (position bigint NOT NULL, aggregate_id uuid NOT NULL, "
            "version integer NOT NULL)",
        ),
    }

    async def apply(
        self, conn: asyncpg.Connection, tables: Mapping[str, str], events: Sequence[Event]
    ) -> None:
        schema, name = split_table(tables["test_ledger"])
        await conn.copy_records_to_table(
            name,
            schema_name=schema,
            columns=("position", "aggregate_id", "version"),
            records=[(e.position, e.aggregate_id, e.version) for e in events],
        )


# The projector process for the ledger variant: the engine's Projector, run the way the
# ``aimm projector`` command runs it, over rm_models and the ledger.
LEDGER_PROJECTOR = """
import asyncio, os, signal, sys
from infrastructure.postgres import create_pool
from projections.projector import Projector
from projections.registry_models import RegistryModels
from tests.integration.test_projector import EventLedger

async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    pool = await create_pool(os.environ["AIMM_DATABASE_URL"], max_size=4)
    try:
        await Projector(pool, [RegistryModels(), EventLedger()], int(sys.argv[1])).run(stop)
    finally:
        await pool.close()

asyncio.run(main())
"""


async def dump(conn: asyncpg.Connection, table: str = "rm_models") -> list[tuple[Any, ...]]:
    """Every row and column of ``table``, in id order."""
    return [tuple(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY id")]


async def oracle_view(conn: asyncpg.Connection) -> dict[UUID, tuple[Any, ...]]:
    rows = await conn.fetch(f"SELECT {', '.join(ORACLE_COLUMNS)} FROM rm_models")
    return {r["id"]: tuple(r) for r in rows}


async def positions(conn: asyncpg.Connection) -> dict[tuple[str, str], int]:
    rows = await conn.fetch("SELECT projection, context, position FROM aimm_projection_positions")
    return {(r["projection"], r["context"]): r["position"] for r in rows}


async def registry_position(conn: asyncpg.Connection) -> int:
    value = await conn.fetchval(
        "SELECT position FROM aimm_projection_positions "
        "WHERE projection = 'registry_models' AND context = 'registry'"
    )
    return int(value or 0)


async def assert_positions_at_heads(conn: asyncpg.Connection) -> None:
    heads = {context: await head_position(conn, context) for context in CONTEXTS}
    found = await positions(conn)
    assert found, "no positions recorded"
    assert {key: heads[key[1]] for key in found} == found


async def prepare(url: str, projections: Sequence[Any]) -> None:
    """The events tables (the applications create them) and these projections' tables only,
    so that positions, and ``wait_for_position``, concern just the projections under test."""
    contexts = await asyncio.to_thread(build_contexts, eventsourcing_env(url, pool_size=1))
    contexts.close()
    conn = await asyncpg.connect(url)
    try:
        await setup(conn, projections)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def registry_writer(url: str, seed: float) -> AsyncIterator[Writer]:
    contexts = await asyncio.to_thread(build_contexts, eventsourcing_env(url))
    try:
        yield Writer(contexts.registry, random.Random(seed))
    finally:
        contexts.close()


def start_projector(
    url: str, host: str, batch_size: int, log_path: Path
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AIMM_DATABASE_URL": url, "AIMM_LOG_LEVEL": "WARNING"}
    if host == "cli":
        args = [sys.executable, "-m", "api.cli", "projector", "--batch-size", str(batch_size)]
    else:
        args = [sys.executable, "-c", LEDGER_PROJECTOR, str(batch_size)]
    with log_path.open("ab") as log:
        return subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def output(log_path: Path) -> str:
    """What the projector processes printed (shown when a test fails)."""
    return log_path.read_text()


async def until_position(
    conn: asyncpg.Connection, proc: subprocess.Popen[bytes], target: int, log_path: Path
) -> None:
    """Return once the projector has committed a batch at or beyond ``target``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while await registry_position(conn) < target:
        if proc.poll() is not None:
            pytest.fail(f"projector exited with {proc.returncode}:\n{output(log_path)}")
        if loop.time() > deadline:
            pytest.fail(f"projector made no progress in 60 s:\n{output(log_path)}")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("host", ["cli", "ledger"])
async def test_sigkill_at_random_points_loses_and_doubles_nothing(
    database_url: str, host: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("AIMM_TEST_SEED") or random.SystemRandom().randrange(2**32))
    print(f"seed {seed} (rerun with AIMM_TEST_SEED={seed})")
    rng = random.Random(seed)
    log_path = tmp_path / "projector.log"
    if host == "cli":
        await migrate(database_url)  # what the command itself runs first: every projection
    else:
        await prepare(database_url, [RegistryModels(), EventLedger()])
    conn = await asyncpg.connect(database_url)
    try:
        async with registry_writer(database_url, rng.random()) as writer:
            await asyncio.to_thread(writer.write, 1000)  # some 1,400 events to start with
            interrupted = 0
            for _ in range(6):
                await asyncio.to_thread(writer.write, rng.randint(40, 100))  # a backlog
                before = await registry_position(conn)
                head = await head_position(conn, "registry")
                proc = start_projector(database_url, host, rng.randint(1, 20), log_path)
                writing = asyncio.create_task(asyncio.to_thread(writer.write, rng.randint(20, 60)))
                try:
                    if rng.random() < 0.25:
                        # Any moment from start-up (imports, migration) into the catch-up.
                        await asyncio.sleep(rng.uniform(0.0, 2.5))
                    else:
                        # A random point in the first half of the backlog: mid-catch-up.
                        target = rng.randint(before + 1, before + max(1, (head - before) // 2))
                        await until_position(conn, proc, target, log_path)
                finally:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    await writing
                lagging = await registry_position(conn) < await head_position(conn, "registry")
                interrupted += int(lagging)
            # The kills must have caught the projector with work left, or nothing was tested.
            assert interrupted > 0

            proc = start_projector(database_url, host, 500, log_path)
            try:
                # Events it can only have projected once running: then it also handles SIGTERM.
                await asyncio.to_thread(writer.write, 10, False)
                head = await head_position(conn, "registry")
                reached = await wait_for_position(conn, "registry", head, timeout=60)
                assert reached, output(log_path)
            finally:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=30) == 0, output(log_path)

            await assert_positions_at_heads(conn)
            assert await oracle_view(conn) == writer.expected
            if host == "ledger":
                ledger = await conn.fetch("SELECT position FROM rm_test_ledger ORDER BY position")
                log_ids = await conn.fetch(
                    "SELECT notification_id FROM registry_events ORDER BY notification_id"
                )
                assert [r[0] for r in ledger] == [r[0] for r in log_ids]
            live = await dump(conn)
            pool = await create_pool(database_url, max_size=2)
            try:
                await rebuild(pool, RegistryModels())
            finally:
                await pool.close()
            assert await dump(conn) == live
            await assert_positions_at_heads(conn)
    finally:
        await conn.close()


async def test_rebuild_while_projecting_and_writing_loses_and_doubles_nothing(
    database_url: str,
) -> None:
    projections = [RegistryModels(), EventLedger()]
    await prepare(database_url, projections)
    pool = await create_pool(database_url, max_size=8)
    conn = await asyncpg.connect(database_url)
    try:
        async with registry_writer(database_url, 7) as writer:
            await asyncio.to_thread(writer.write, 200)
            projector = Projector(pool, projections, batch_size=3)
            stop = asyncio.Event()
            running = asyncio.create_task(projector.run(stop))
            writing = asyncio.create_task(asyncio.to_thread(writer.write, 400))
            raced = rebuilds = 0
            while not writing.done() or rebuilds < 4:
                for projection in projections:
                    head_before = await head_position(conn, "registry")
                    await rebuild(pool, projection, batch_size=25)
                    raced += int(await head_position(conn, "registry") > head_before)
                    rebuilds += 1
            await writing
            # Rebuilds must have overlapped new events, or the race was not exercised.
            assert raced > 0
            head = await head_position(conn, "registry")
            assert await wait_for_position(conn, "registry", head, timeout=60)
            stop.set()
            await running

            ledger = await conn.fetch("SELECT position FROM rm_test_ledger ORDER BY position")
            log_ids = await conn.fetch(
                "SELECT notification_id FROM registry_events ORDER BY notification_id"
            )
            assert [r[0] for r in ledger] == [r[0] for r in log_ids]
            assert await oracle_view(conn) == writer.expected
            live = await dump(conn)
            await rebuild(pool, RegistryModels())
            assert await dump(conn) == live
    finally:
        await conn.close()
        await pool.close()


async def test_after_rebuilding_one_projection_the_projector_moves_no_position_back(
    database_url: str,
) -> None:
    # A rebuild leaves its projection ahead of the others that follow the same log; the
    # projector's next batches start at the slowest one and must neither re-apply events
    # to the rebuilt projection nor move its position back.
    projections = [RegistryModels(), EventLedger()]
    await prepare(database_url, projections)
    pool = await create_pool(database_url, max_size=4)
    conn = await asyncpg.connect(database_url)
    try:
        async with registry_writer(database_url, 13) as writer:
            await asyncio.to_thread(writer.write, 40)
        head = await head_position(conn, "registry")
        projector = Projector(pool, projections, batch_size=5)
        await projector.step("registry")
        behind = await registry_position(conn)
        await rebuild(pool, EventLedger())
        assert await positions(conn) == {
            ("registry_models", "registry"): behind,
            ("test_event_ledger", "registry"): head,
        }
        assert await projector.step("registry") == 5
        ledger_position = await conn.fetchval(
            "SELECT position FROM aimm_projection_positions WHERE projection = $1",
            EventLedger.name,
        )
        assert ledger_position == head
        await projector.catch_up()
        ledger = await conn.fetch("SELECT position FROM rm_test_ledger ORDER BY position")
        log_ids = await conn.fetch(
            "SELECT notification_id FROM registry_events ORDER BY notification_id"
        )
        assert [r[0] for r in ledger] == [r[0] for r in log_ids]
        await assert_positions_at_heads(conn)
        assert await oracle_view(conn) == writer.expected
    finally:
        await conn.close()
        await pool.close()


async def test_as_of_rebuild_holds_exactly_the_events_up_to_the_time_and_leaves_live_alone(
    database_url: str,
) -> None:
    await prepare(database_url, [RegistryModels()])
    pool = await create_pool(database_url, max_size=4)
    conn = await asyncpg.connect(database_url)
    projector = Projector(pool, [RegistryModels()])
    try:
        async with registry_writer(database_url, 11) as writer:
            await asyncio.to_thread(writer.write, 120)
            first = await read_events(conn, "registry", 0, 100_000)
            cutoff = max(e.timestamp for e in first)
            await projector.catch_up()
            live_at_cutoff = await dump(conn)
            expected_at_cutoff = dict(writer.expected)

            await asyncio.to_thread(writer.write, 120)
            later = await read_events(conn, "registry", first[-1].position, 100_000)
            assert later and min(e.timestamp for e in later) > cutoff
            await projector.catch_up()
            live = await dump(conn)
            positions_before = await positions(conn)

            result = await rebuild(pool, RegistryModels(), as_of=cutoff)

            table = result.tables["models"]
            assert table.startswith("asof_") and table != "rm_models"
            assert await dump(conn, table) == live_at_cutoff
            as_of_view = await conn.fetch(f"SELECT {', '.join(ORACLE_COLUMNS)} FROM {table}")
            assert {r["id"]: tuple(r) for r in as_of_view} == expected_at_cutoff
            assert await dump(conn) == live != live_at_cutoff
            assert await positions(conn) == positions_before
    finally:
        await conn.close()
        await pool.close()


async def contents(conn: asyncpg.Connection, tables: Sequence[str]) -> dict[str, list[Any]]:
    """Every row of each table, as a sorted list (duplicates kept: the ledger has no key)."""
    found = {}
    for table in tables:
        rows = await conn.fetch(f"SELECT * FROM {table}")
        found[table] = sorted((tuple(r) for r in rows), key=repr)
    return found


@pytest.mark.parametrize("rebuild_pool_size", [8, 3, 1])
async def test_one_pass_rebuild_of_several_while_projecting_and_writing_matches_the_projector(
    database_url: str, rebuild_pool_size: int
) -> None:
    # Several read models over one and over all five logs, rebuilt together in one pass
    # (with a connection each, sharing two, or all on one) while the live projector runs
    # and events keep arriving: no position may ever move back, and each read model must
    # end up just as the projector alone builds it from zero.
    projections = [RegistryModels(), EventLedger(), AuditIndex(), AuditChain()]
    tables = [t for p in projections for t in live_tables(p).values()]
    await prepare(database_url, projections)
    pool = await create_pool(database_url, max_size=4)
    rebuild_pool = await create_pool(database_url, max_size=rebuild_pool_size)
    conn = await asyncpg.connect(database_url)
    watcher = await asyncpg.connect(database_url)
    backwards: list[tuple[tuple[str, str], int, int]] = []
    watching = asyncio.Event()

    async def watch() -> None:
        seen = await positions(watcher)
        while not watching.is_set():
            now = await positions(watcher)
            backwards.extend((k, seen[k], p) for k, p in now.items() if p < seen.get(k, 0))
            seen = now
            await asyncio.sleep(0.002)

    watch_task = asyncio.create_task(watch())
    try:
        async with registry_writer(database_url, 17) as writer:
            await asyncio.to_thread(writer.write, 200)
            projector = Projector(pool, projections, batch_size=3)
            stop = asyncio.Event()
            running = asyncio.create_task(projector.run(stop))
            writing = asyncio.create_task(asyncio.to_thread(writer.write, 300))
            raced = rebuilds = 0
            while not writing.done() or rebuilds < 3:
                head_before = await head_position(conn, "registry")
                results = await rebuild_many(rebuild_pool, projections, batch_size=25)
                raced += int(await head_position(conn, "registry") > head_before)
                rebuilds += 1
                assert [r.projection for r in results] == [p.name for p in projections]
                assert all(not t.endswith("__rebuild") for r in results for t in r.tables.values())
            await writing
            assert raced > 0  # rebuilds overlapped new events, or the race was not exercised
            head = await head_position(conn, "registry")
            assert await wait_for_position(conn, "registry", head, timeout=60)
            stop.set()
            await running
        watching.set()
        await watch_task
        assert backwards == []
        await assert_positions_at_heads(conn)
        assert await oracle_view(conn) == writer.expected
        ledger = await conn.fetch("SELECT position FROM rm_test_ledger ORDER BY position")
        log_ids = await conn.fetch("SELECT notification_id FROM registry_events ORDER BY 1")
        assert [r[0] for r in ledger] == [r[0] for r in log_ids]
        rebuilt = await contents(conn, tables)
        leftovers = await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE '%\\_\\_rebuild'"
        )
        assert leftovers == 0

        # The projector alone, from zero, into the same tables.
        for table in tables:
            await conn.execute(f"DROP TABLE {table}")
        await setup(conn, projections)
        assert all(p == 0 for p in (await positions(conn)).values())
        await Projector(pool, projections, batch_size=7).catch_up()
        assert await contents(conn, tables) == rebuilt
        await assert_positions_at_heads(conn)
    finally:
        watching.set()
        await watch_task
        await watcher.close()
        await conn.close()
        await rebuild_pool.close()
        await pool.close()


async def test_as_of_rebuild_of_several_leaves_live_tables_and_positions_alone(
    database_url: str,
) -> None:
    projections = [RegistryModels(), EventLedger()]
    await prepare(database_url, projections)
    pool = await create_pool(database_url, max_size=4)
    conn = await asyncpg.connect(database_url)
    projector = Projector(pool, projections)
    try:
        async with registry_writer(database_url, 19) as writer:
            await asyncio.to_thread(writer.write, 120)
            first = await read_events(conn, "registry", 0, 100_000)
            cutoff = max(e.timestamp for e in first)
            await projector.catch_up()
            models_at_cutoff = await dump(conn)
            ledger_at_cutoff = await contents(conn, ["rm_test_ledger"])
            expected_at_cutoff = dict(writer.expected)

            await asyncio.to_thread(writer.write, 120)
            later = await read_events(conn, "registry", first[-1].position, 100_000)
            assert later and min(e.timestamp for e in later) > cutoff
            await projector.catch_up()
            live = await contents(conn, ["rm_models", "rm_test_ledger"])
            positions_before = await positions(conn)

            results = await rebuild_many(pool, projections, as_of=cutoff, batch_size=50)

            models, ledger = results[0].tables["models"], results[1].tables["test_ledger"]
            assert models.startswith("asof_") and ledger.startswith("asof_")
            assert models.split(".")[0] == ledger.split(".")[0]
            assert await dump(conn, models) == models_at_cutoff
            as_of_view = await conn.fetch(f"SELECT {', '.join(ORACLE_COLUMNS)} FROM {models}")
            assert {r["id"]: tuple(r) for r in as_of_view} == expected_at_cutoff
            as_of_ledger = await contents(conn, [ledger])
            assert as_of_ledger[ledger] == ledger_at_cutoff["rm_test_ledger"]
            assert await contents(conn, ["rm_models", "rm_test_ledger"]) == live
            assert live["rm_models"] != sorted(models_at_cutoff, key=repr)
            assert await positions(conn) == positions_before
    finally:
        await conn.close()
        await pool.close()


class ObservedProjector(Projector):
    """The real projector, flagging each time it has caught up and is about to idle."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle = asyncio.Event()
        self.catch_ups = 0

    async def catch_up(self) -> int:
        done = await super().catch_up()
        self.catch_ups += 1
        self.idle.set()
        return done


async def test_projector_wakes_on_notify_not_on_its_timer(database_url: str) -> None:
    await prepare(database_url, [RegistryModels()])
    pool = await create_pool(database_url, max_size=4)
    conn = await asyncpg.connect(database_url)
    # An idle timer of an hour: within this test only a NOTIFY can wake the projector.
    projector = ObservedProjector(pool, [RegistryModels()])
    stop = asyncio.Event()
    running = asyncio.create_task(projector.run(stop, idle_timeout=3600))
    try:
        async with registry_writer(database_url, 3) as writer:
            for _ in range(3):
                await projector.idle.wait()
                projector.idle.clear()
                # Written after the projector's last read: only the NOTIFY announces it.
                await asyncio.to_thread(writer.write, 1, False)
                head = await head_position(conn, "registry")
                assert await wait_for_position(conn, "registry", head, timeout=30)
                assert await oracle_view(conn) == writer.expected
            await projector.idle.wait()
            # The start-up catch-up, then exactly one per command's NOTIFY.
            assert projector.catch_ups == 4
    finally:
        stop.set()
        await running
        await conn.close()
        await pool.close()


class ReshapedModels(RegistryModels):
    """rm_models with one more index: the same projection, a new DDL hash."""

    tables: ClassVar[Mapping[str, Sequence[str]]] = {
        "models": (*RegistryModels.tables["models"], "CREATE INDEX ON {models} (owner)"),
    }


async def test_setup_resets_a_projection_whose_ddl_changed_and_the_projector_rebuilds_it(
    database_url: str,
) -> None:
    await prepare(database_url, [RegistryModels()])
    pool = await create_pool(database_url, max_size=4)
    conn = await asyncpg.connect(database_url)
    try:
        async with registry_writer(database_url, 5) as writer:
            await asyncio.to_thread(writer.write, 60)
        head = await head_position(conn, "registry")
        await Projector(pool, [RegistryModels()]).catch_up()
        before = await dump(conn)
        assert before and await registry_position(conn) == head

        await setup(conn, [ReshapedModels()])
        assert await registry_position(conn) == 0
        assert await dump(conn) == []
        stored = await conn.fetchval(
            "SELECT ddl_hash FROM aimm_projections WHERE projection = 'registry_models'"
        )
        assert stored == ddl_hash(ReshapedModels()) != ddl_hash(RegistryModels())
        indexes = await conn.fetch("SELECT indexdef FROM pg_indexes WHERE tablename = 'rm_models'")
        assert any("(owner)" in r["indexdef"] for r in indexes)

        await Projector(pool, [ReshapedModels()]).catch_up()
        assert await dump(conn) == before
        assert await registry_position(conn) == head

        # The same shape again is left alone.
        await setup(conn, [ReshapedModels()])
        assert await registry_position(conn) == head
        assert await dump(conn) == before
    finally:
        await conn.close()
        await pool.close()


async def test_status_reports_each_projections_lag_in_events(database_url: str) -> None:
    await prepare(database_url, [RegistryModels()])
    pool = await create_pool(database_url, max_size=4)
    conn = await asyncpg.connect(database_url)
    try:
        async with registry_writer(database_url, 9) as writer:
            await asyncio.to_thread(writer.write, 30)
        events = await read_events(conn, "registry", 0, 100_000)

        def registry_row(rows: Sequence[Any]) -> Any:
            key = ("registry_models", "registry")
            (row,) = [r for r in rows if (r.projection, r.context) == key]
            return row

        row = registry_row(await status(conn))
        assert (row.position, row.head, row.lag) == (0, events[-1].position, len(events))
        # A context nobody wrote to has no lag.
        assert all(r.lag == 0 for r in await status(conn) if r.context == "memory")

        projector = Projector(pool, [RegistryModels()], batch_size=7)
        assert await projector.step("registry") == 7
        row = registry_row(await status(conn))
        assert (row.position, row.lag) == (events[6].position, len(events) - 7)

        await projector.catch_up()
        row = registry_row(await status(conn))
        assert (row.position, row.head, row.lag) == (events[-1].position, events[-1].position, 0)
        assert isinstance(row.updated_at, datetime)
    finally:
        await conn.close()
        await pool.close()
