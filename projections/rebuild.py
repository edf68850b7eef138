"""Rebuilds: a projection recomputed from the start of its logs into fresh tables.

A rebuild writes into fresh tables while the live projector goes on, then, holding
the projection's lock, applies the last events, swaps the tables in and moves the
position: readers see the old tables until the instant the new ones replace them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from projections.base import Projection, ddl, live_tables
from projections.events import Event, head_position, read_events
from projections.projector import ddl_hash, drop_tables, lock_projection

# Rebuilds read larger batches: fewer round trips, and more of each batch folds in memory
# (a row registered and updated within one batch is written once). Two are held at once.
REBUILD_BATCH = 20_000


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
