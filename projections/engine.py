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
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from projections.base import Projection, ddl, live_tables
from projections.events import Event, events_table, head_position, read_events

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "aimm_projections"
DEFAULT_BATCH = 5000

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
                    log.warning("projection %s changed shape or lost a table: rebuilding it", projection.name)
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
            await conn.executemany(
                "UPDATE aimm_projection_positions SET position = $3, updated_at = now() "
                "WHERE projection = $1 AND context = $2",
                [(p.name, context, last) for p in projections],
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
            while not stop.is_set():
                self._wake.clear()
                await self.catch_up()
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


async def rebuild(
    pool: asyncpg.Pool,
    projection: Projection,
    *,
    as_of: datetime | None = None,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> RebuildResult:
    """Rebuild ``projection`` from the start of its logs into fresh tables.

    Without ``as_of`` the fresh tables replace the live ones once caught up. With
    ``as_of`` only events stamped at or before it are applied, into tables of a schema
    ``asof_<timestamp>`` that are left for inspection and never replace the live ones.
    """
    if as_of is None:
        tables = {logical: f"{table}__rebuild" for logical, table in live_tables(projection).items()}
    else:
        schema = f"asof_{as_of.strftime('%Y%m%dt%H%M%S')}"
        tables = {logical: f"{schema}.{table}" for logical, table in live_tables(projection).items()}
    positions = {context: 0 for context in projection.contexts}
    applied = 0
    async with pool.acquire() as conn:
        async with conn.transaction():
            if as_of is not None:
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            await drop_tables(conn, tables)
            await create_tables(conn, projection, tables)
        total = 0
        for context in projection.contexts:
            total += await head_position(conn, context)

        async def apply_batch(context: str, until: int | None = None) -> int:
            nonlocal applied
            events = await read_events(conn, context, positions[context], batch_size, until)
            if not events:
                return 0
            positions[context] = events[-1].position
            todo: Sequence[Event] = events
            if as_of is not None:
                todo = [e for e in events if e.timestamp <= as_of]
            if todo:
                await projection.apply(conn, tables, todo)
            applied += len(events)
            if progress is not None:
                progress(applied, max(total, applied))
            return len(events)

        for context in projection.contexts:
            while True:
                async with conn.transaction():
                    if await apply_batch(context) == 0:
                        break
        if as_of is None:
            async with conn.transaction():
                await lock_projection(conn, projection.name)
                for context in projection.contexts:
                    while await apply_batch(context):
                        pass
                live = live_tables(projection)
                await drop_tables(conn, live)
                for logical, table in tables.items():
                    await conn.execute(f"ALTER TABLE {table} RENAME TO {live[logical]}")
                await conn.executemany(
                    "INSERT INTO aimm_projection_positions (projection, context, position) "
                    "VALUES ($1, $2, $3) ON CONFLICT (projection, context) "
                    "DO UPDATE SET position = excluded.position, updated_at = now()",
                    [(projection.name, c, p) for c, p in positions.items()],
                )
                await conn.execute(
                    "INSERT INTO aimm_projections (projection, ddl_hash, rebuilt_at) "
                    "VALUES ($1, $2, now()) ON CONFLICT (projection) "
                    "DO UPDATE SET ddl_hash = excluded.ddl_hash, rebuilt_at = now()",
                    projection.name,
                    ddl_hash(projection),
                )
            tables = live
    return RebuildResult(projection.name, applied, positions, dict(tables))


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
    conn: asyncpg.Connection, context: str, position: int, timeout: float = 5.0
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
