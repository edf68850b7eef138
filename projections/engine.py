"""The asyncpg projector: batched catch-up with exactly-once effect, and rebuilds.

For each context's log, one transaction per batch: take each following projection's
advisory lock, read its position, apply the events past it, and store the new
position. The read-model changes and the position commit together, so a projector
killed at any point resumes exactly where its last commit left off. It wakes on the
NOTIFY the event store sends for every insert and on a short timer otherwise.

A rebuild writes into fresh tables while the live projector goes on, then, holding
the projection's lock, applies the last events, swaps the tables in and moves the
position: readers see the old tables until the instant the new ones replace them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from projections.base import Projection, ddl, live_tables
from projections.events import Event, events_table, head_position, read_events

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "aimm_projections"
DEFAULT_BATCH = 5000
# Rebuilds read larger batches: fewer round trips, and more of each batch folds in memory
# (a row registered and updated within one batch is written once). Two are held at once.
REBUILD_BATCH = 20_000

SETUP_DDL = (
    """
    CREATE TABLE IF NOT EXISTS aimm_projections (
        projection text PRIMARY KEY,
        ddl_hash text NOT NULL,
        rebuilt_at timestamptz
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS aimm_projection_positions (
        projection text NOT NULL,
        context text NOT NULL,
        position bigint NOT NULL DEFAULT 0,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (projection, context)
    )
    """,
)


def ddl_hash(projection: Projection) -> str:
    text = "\n".join(ddl(projection, live_tables(projection)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


async def lock_projection(conn: asyncpg.Connection, name: str) -> None:
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"aimm.projection:{name}"
    )


async def create_tables(
    conn: asyncpg.Connection, projection: Projection, tables: Mapping[str, str]
) -> None:
    for statement in ddl(projection, tables):
        await conn.execute(statement)


async def drop_tables(conn: asyncpg.Connection, tables: Mapping[str, str]) -> None:
    for table in tables.values():
        await conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")


async def setup(conn: asyncpg.Connection, projections: Sequence[Projection]) -> None:
    """Create positions and live tables; reset a projection whose tables changed shape."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('aimm.setup', 0))")
        for statement in SETUP_DDL:
            await conn.execute(statement)
        for projection in projections:
            digest = ddl_hash(projection)
            stored = await conn.fetchval(
                "SELECT ddl_hash FROM aimm_projections WHERE projection = $1", projection.name
            )
            tables = live_tables(projection)
            missing = False
            for table in tables.values():
                missing |= await conn.fetchval("SELECT to_regclass($1) IS NULL", table)
            if stored != digest or missing:
                if stored is not None:
                    log.warning(
                        "projection %s changed shape or lost a table: rebuilding it",
                        projection.name,
                    )
                await drop_tables(conn, tables)
                await create_tables(conn, projection, tables)
                await conn.execute(
                    "DELETE FROM aimm_projection_positions WHERE projection = $1",
                    projection.name,
                )
                await conn.execute(
                    "INSERT INTO aimm_projections (projection, ddl_hash) VALUES ($1, $2) "
                    "ON CONFLICT (projection) DO UPDATE SET ddl_hash = excluded.ddl_hash",
                    projection.name,
                    digest,
                )
            await conn.executemany(
                "INSERT INTO aimm_projection_positions (projection, context) VALUES ($1, $2) "
                "ON CONFLICT DO NOTHING",
                [(projection.name, context) for context in projection.contexts],
            )


class Projector:
    """Keeps the live read models of ``projections`` up to date with the logs."""

    def __init__(
        self, pool: asyncpg.Pool, projections: Sequence[Projection], batch_size: int = DEFAULT_BATCH
    ) -> None:
        self.pool = pool
        self.projections = sorted(projections, key=lambda p: p.name)
        self.batch_size = batch_size
        self.tables = {p.name: live_tables(p) for p in self.projections}
        self.contexts = sorted({c for p in self.projections for c in p.contexts})
        self._wake = asyncio.Event()

    def following(self, context: str) -> list[Projection]:
        return [p for p in self.projections if context in p.contexts]

    async def setup(self) -> None:
        async with self.pool.acquire() as conn:
            await setup(conn, self.projections)

    async def step(self, context: str) -> int:
        """Apply one batch of ``context``'s log; returns how many events were read."""
        projections = self.following(context)
        async with self.pool.acquire() as conn, conn.transaction():
            positions: dict[str, int] = {}
            for projection in projections:
                await lock_projection(conn, projection.name)
                positions[projection.name] = await conn.fetchval(
                    "SELECT position FROM aimm_projection_positions "
                    "WHERE projection = $1 AND context = $2",
                    projection.name,
                    context,
                )
            start = min(positions.values())
            events = await read_events(conn, context, start, self.batch_size)
            if not events:
                return 0
            last = events[-1].position
            for projection in projections:
                position = positions[projection.name]
                todo = events if position == start else [e for e in events if e.position > position]
                if todo:
                    await projection.apply(conn, self.tables[projection.name], todo)
            # Only the projections this batch moved forward: one ahead of ``last`` (a rebuild
            # just swapped it in) keeps its position, or it would get events applied twice.
            await conn.executemany(
                "UPDATE aimm_projection_positions SET position = $3, updated_at = now() "
                "WHERE projection = $1 AND context = $2",
                [(p.name, context, last) for p in projections if positions[p.name] < last],
            )
            await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}, '{context}:{last}'")
        return len(events)

    async def catch_up(self) -> int:
        """Apply batches until every followed log is fully projected."""
        total = 0
        while True:
            done = 0
            for context in self.contexts:
                done += await self.step(context)
            total += done
            if done == 0:
                return total

    async def run(self, stop: asyncio.Event, idle_timeout: float = 1.0) -> None:
        """Catch up, then follow the logs until ``stop`` is set."""
        await self.setup()
        listener = await self.pool.acquire()
        try:
            for context in self.contexts:
                await listener.add_listener(events_table(context), self._on_notify)
            failures = 0
            while not stop.is_set():
                self._wake.clear()
                try:
                    await self.catch_up()
                    failures = 0
                except (asyncpg.PostgresError, OSError, KeyError, ValueError, TypeError):
                    # The failed batch rolled back with its position: retrying is safe.
                    # A handler bug keeps failing here, loudly, instead of skipping events.
                    failures += 1
                    log.exception("projector batch failed (attempt %d); retrying", failures)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=min(30.0, 0.5 * 2**failures))
                    continue
                with contextlib.suppress(TimeoutError):
                    waiter = asyncio.ensure_future(self._wake.wait())
                    stopper = asyncio.ensure_future(stop.wait())
                    await asyncio.wait(
                        {waiter, stopper},
                        timeout=idle_timeout,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    waiter.cancel()
                    stopper.cancel()
        finally:
            with contextlib.suppress(Exception):
                for context in self.contexts:
                    await listener.remove_listener(events_table(context), self._on_notify)
            await self.pool.release(listener)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()


@dataclass(frozen=True)
class RebuildResult:
    projection: str
    events: int
    positions: dict[str, int]
    tables: dict[str, str]


def split_ddl(projection: Projection, tables: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """The statements that make the tables (with their keys and unique constraints), and
    the plain ``CREATE INDEX`` statements, which a bulk load is faster without."""
    make: list[str] = []
    defer: list[str] = []
    for statement in ddl(projection, tables):
        plain_index = statement.lstrip()[:12].upper() == "CREATE INDEX"
        (defer if plain_index else make).append(statement)
    return make, defer


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a rebuild applies its bulk batches.

    A batch is tens of thousands of decoded events: acyclic, and freed by reference
    counting once applied. With the collector on, every few thousand allocations it
    rescans the batches in flight, which measured at a third of a rebuild's CPU time.
    Nested and concurrent rebuilds share one pause; the collector is restored when the
    last one ends, even if it fails.
    """
    global _paused, _was_enabled  # noqa: PLW0603 - one process-wide collector
    if _paused == 0:
        _was_enabled = gc.isenabled()
        gc.disable()
    _paused += 1
    try:
        yield
    finally:
        _paused -= 1
        if _paused == 0 and _was_enabled:
            gc.enable()


_paused = 0
_was_enabled = True


async def read_log(
    pool: asyncpg.Pool, conn: asyncpg.Connection, context: str, after: int, batch_size: int
) -> AsyncGenerator[list[Event], None]:
    """Batches of ``context``'s log after ``after``, in order, until its current head.

    When the pool has a connection to spare, the next batch is read and decoded on it
    while the caller applies the current one on ``conn``, so that decoding overlaps the
    database's work on the writes; at most two batches are in memory. Close it with
    ``contextlib.aclosing``, which stops the reader.
    """
    if pool.get_max_size() < 2:
        while events := await read_events(conn, context, after, batch_size):
            yield events
            after = events[-1].position
        return
    handoff: asyncio.Queue[list[Event] | Exception] = asyncio.Queue(maxsize=1)

    async def produce() -> None:
        try:
            async with pool.acquire() as reader:
                position = after
                while True:
                    events = await read_events(reader, context, position, batch_size)
                    await handoff.put(events)
                    if not events:
                        return
                    position = events[-1].position
                    await handoff.join()  # read on only once this batch has been taken
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            await handoff.put(exc)

    producer = asyncio.create_task(produce())
    try:
        while True:
            item = await handoff.get()
            handoff.task_done()
            if isinstance(item, Exception):
                raise item
            if not item:
                return
            yield item
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer


async def rebuild(
    pool: asyncpg.Pool,
    projection: Projection,
    *,
    as_of: datetime | None = None,
    batch_size: int = REBUILD_BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> RebuildResult:
    """Rebuild ``projection`` from the start of its logs into fresh tables.

    Without ``as_of`` the fresh tables replace the live ones once caught up. With
    ``as_of`` only events stamped at or before it are applied, into tables of a schema
    ``asof_<timestamp>`` that are left for inspection and never replace the live ones.
    ``rebuild_many`` for a list of one: see there.
    """
    (result,) = await rebuild_many(
        pool, [projection], as_of=as_of, batch_size=batch_size, progress=progress
    )
    return result


@dataclass
class _Target:
    """One projection being rebuilt: its fresh tables and how far into each log they are."""

    projection: Projection
    live: dict[str, str]
    tables: dict[str, str]
    make: list[str]
    deferred: list[str]
    positions: dict[str, int]
    applied: int = 0

    @classmethod
    def fresh(cls, projection: Projection, schema: str | None) -> _Target:
        """Tables beside the live ones (``<table>__rebuild``), or in ``schema``."""
        live = live_tables(projection)
        if schema is None:
            tables = {logical: f"{table}__rebuild" for logical, table in live.items()}
        else:
            tables = {logical: f"{schema}.{table}" for logical, table in live.items()}
        make, deferred = split_ddl(projection, tables)
        positions = dict.fromkeys(projection.contexts, 0)
        return cls(projection, live, tables, make, deferred, positions)


@dataclass
class _Lane:
    """A pooled connection and the projections whose fresh tables it writes, in turn."""

    conn: asyncpg.Connection
    targets: list[_Target]


async def _together(*work: Awaitable[None]) -> None:
    """Await ``work`` concurrently; the first failure cancels the rest and is raised."""
    if len(work) == 1:
        await work[0]
        return
    try:
        async with asyncio.TaskGroup() as group:
            for item in work:
                group.create_task(item)  # type: ignore[arg-type]
    except BaseExceptionGroup as failures:
        raise failures.exceptions[0] from None


async def _swap_in(lane: _Lane, batch_size: int) -> None:
    """Swap each of the lane's fresh tables in, each projection in its own transaction
    holding its own lock: the last events applied, the live tables replaced, the
    positions moved; the projector, waiting on the lock, goes on from there."""
    conn = lane.conn
    for target in lane.targets:
        name = target.projection.name
        async with conn.transaction():
            await lock_projection(conn, name)
            for context in list(target.positions):
                while events := await read_events(
                    conn, context, target.positions[context], batch_size
                ):
                    await target.projection.apply(conn, target.tables, events)
                    target.positions[context] = events[-1].position
                    target.applied += len(events)
            await drop_tables(conn, target.live)
            for logical, table in target.tables.items():
                await conn.execute(f"ALTER TABLE {table} RENAME TO {target.live[logical]}")
            await conn.executemany(
                "INSERT INTO aimm_projection_positions (projection, context, position) "
                "VALUES ($1, $2, $3) ON CONFLICT (projection, context) "
                "DO UPDATE SET position = excluded.position, updated_at = now()",
                [(name, context, p) for context, p in target.positions.items()],
            )
            await conn.execute(
                "INSERT INTO aimm_projections (projection, ddl_hash, rebuilt_at) "
                "VALUES ($1, $2, now()) ON CONFLICT (projection) "
                "DO UPDATE SET ddl_hash = excluded.ddl_hash, rebuilt_at = now()",
                name,
                ddl_hash(target.projection),
            )
        target.tables = target.live


async def rebuild_many(  # noqa: PLR0915 - one pass, its phases in order
    pool: asyncpg.Pool,
    projections: Sequence[Projection],
    *,
    as_of: datetime | None = None,
    batch_size: int = REBUILD_BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> list[RebuildResult]:
    """Rebuild ``projections`` from the start of their logs, in one pass over each log.

    Each batch of a log is read and decoded once, then applied to the fresh tables of
    every projection following that log, on one pooled connection per projection (as
    many as the pool has, keeping one to read ahead on; with fewer, a connection takes
    several projections in turn), all at once: the database does the writes while
    Python decodes the next batch.

    The bulk of the log is applied in large batches (more of each batch folds in memory
    into fewer writes), into tables that get their plain (non-unique) indexes only once
    loaded: ``apply`` must find the rows it changes through the primary key or unique
    constraints, which exist from the start. What arrived meanwhile is applied next,
    still without a lock, so that the locked tail is short. Then each projection, in its
    own transaction holding its own lock, gets the last events applied, its tables
    swapped in and its positions moved, as the projector commits a batch.

    Without ``as_of`` the fresh tables replace the live ones once caught up. With
    ``as_of`` only events stamped at or before it are applied, into tables of a schema
    ``asof_<timestamp>`` that are left for inspection and never replace the live ones.
    ``progress`` gets the log events read so far and, roughly, how many there are.
    """
    names = [p.name for p in projections]
    if len(set(names)) != len(names):
        raise ValueError(f"a projection is named more than once: {', '.join(names)}")
    if not projections:
        return []
    schema = None if as_of is None else f"asof_{as_of.strftime('%Y%m%dt%H%M%S')}"
    targets = [_Target.fresh(projection, schema) for projection in projections]
    contexts = list(dict.fromkeys(c for p in projections for c in p.contexts))
    read_ahead = pool.get_max_size() >= 2
    read = 0
    async with contextlib.AsyncExitStack() as stack:
        lanes = [
            _Lane(await stack.enter_async_context(pool.acquire()), [])
            for _ in range(min(len(targets), max(1, pool.get_max_size() - 1)))
        ]
        for i, target in enumerate(targets):
            lanes[i % len(lanes)].targets.append(target)
        conn = lanes[0].conn
        async with conn.transaction():
            if schema is not None:
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            for target in targets:
                await drop_tables(conn, target.tables)
                for statement in target.make:
                    await conn.execute(statement)
        total = 0
        for context in contexts:
            total += await head_position(conn, context)

        async def apply_batch(lane: _Lane, context: str, events: list[Event]) -> None:
            todo: Sequence[Event] = events
            if as_of is not None:
                todo = [e for e in events if e.timestamp <= as_of]
            for target in lane.targets:
                if todo:
                    async with lane.conn.transaction():
                        await target.projection.apply(lane.conn, target.tables, todo)
                target.positions[context] = events[-1].position
                target.applied += len(events)

        def count(events: list[Event]) -> None:
            nonlocal read
            read += len(events)
            if progress is not None:
                progress(read, max(total, read))

        async def feed(context: str) -> None:
            """Apply ``context``'s log, from where its followers are, up to its head."""
            following = [
                _Lane(lane.conn, [t for t in lane.targets if context in t.positions])
                for lane in lanes
            ]
            following = [lane for lane in following if lane.targets]
            if not following:
                return
            start = following[0].targets[0].positions[context]
            batches = read_log(pool, conn, context, start, batch_size)
            if not read_ahead:  # one connection: it reads, then writes
                async with contextlib.aclosing(batches):
                    async for events in batches:
                        await apply_batch(following[0], context, events)
                        count(events)
                return
            # Every batch goes to each connection's queue; each connection applies its
            # batches in log order at its own pace, at most one batch behind the reader.
            queues = [asyncio.Queue[list[Event] | None](maxsize=1) for _ in following]

            async def supply() -> None:
                async with contextlib.aclosing(batches):
                    async for events in batches:
                        for queue in queues:
                            await queue.put(events)
                        count(events)
                for queue in queues:
                    await queue.put(None)

            async def work(lane: _Lane, queue: asyncio.Queue[list[Event] | None]) -> None:
                while (events := await queue.get()) is not None:
                    await apply_batch(lane, context, events)

            await _together(supply(), *map(work, following, queues))

        async def index(lane: _Lane) -> None:
            for target in lane.targets:
                for statement in target.deferred:
                    await lane.conn.execute(statement)

        with collector_paused():
            for context in contexts:
                await feed(context)
        await _together(*(index(lane) for lane in lanes))
        # What arrived meanwhile, still without a lock, so that the locked tail is short.
        for context in contexts:
            await feed(context)
        if as_of is None:
            await _together(*(_swap_in(lane, batch_size) for lane in lanes))
    return [
        RebuildResult(t.projection.name, t.applied, dict(t.positions), dict(t.tables))
        for t in targets
    ]


@dataclass(frozen=True)
class PositionStatus:
    projection: str
    context: str
    position: int
    head: int
    lag: int
    updated_at: datetime


async def status(conn: asyncpg.Connection) -> list[PositionStatus]:
    """Each projection's position per context, the log's head, and the lag in events."""
    rows = await conn.fetch(
        "SELECT projection, context, position, updated_at FROM aimm_projection_positions "
        "ORDER BY projection, context"
    )
    heads: dict[str, int] = {}
    result = []
    for row in rows:
        context = row["context"]
        if context not in heads:
            heads[context] = await head_position(conn, context)
        lag = await conn.fetchval(
            f"SELECT count(*) FROM {events_table(context)} WHERE notification_id > $1",
            row["position"],
        )
        result.append(
            PositionStatus(
                row["projection"], context, row["position"], heads[context], lag, row["updated_at"]
            )
        )
    return result


async def wait_for_position(
    conn: asyncpg.Connection,
    context: str,
    position: int,
    timeout: float = 5.0,  # noqa: ASYNC109 - a bound on polling that answers False
) -> bool:
    """Wait until every projection following ``context`` has reached ``position``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.005
    while True:
        reached = await conn.fetchval(
            "SELECT coalesce(min(position), $2) >= $2 FROM aimm_projection_positions "
            "WHERE context = $1",
            context,
            position,
        )
        if reached:
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
