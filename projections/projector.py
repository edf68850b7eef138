"""The asyncpg projector: batched catch-up with exactly-once effect.

For each context's log, one transaction per batch: take each following projection's
advisory lock, read its position, apply the events past it, store the new position
and ``NOTIFY aimm_projection_advanced, '<context>:<position>'`` — the read-model
changes, the position and the notification commit together, so a projector killed at
any point resumes exactly where its last commit left off, and a waiter
(``projections.positions.ProjectionWatcher``) hears of a batch exactly when it is
visible. It wakes on the NOTIFY the event store sends for every insert and on a short
timer otherwise.

The database going away ends a *session* (the listening connection, the catch-up
loop); ``Projector.run`` starts a new one with capped, jittered exponential backoff
(``application.retry``), logging one line per attempt, and the new session resumes
from the positions stored in the database.

An unreadable stored event (``projections.audit.UnreadableEventError``: corrupt JSON)
halts that context's log at the event, for every projection following it: the events
before it are applied, the event is recorded in ``aimm_projection_faults`` (context,
position, aggregate, version, reason) and logged once as an error, and the other logs
go on. Skipping it instead would leave read models that no rebuild reproduces (a lost
``Registered`` breaks every later event of its aggregate). Once the row is repaired,
the next pass applies it and clears the fault (``docs/reliability.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Mapping, Sequence

import asyncpg

from application.retry import run_async_until_stopped
from projections.audit import read_checked
from projections.base import Projection, ddl, live_tables
from projections.events import UnreadableEventError, events_table

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "aimm_projection_advanced"
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
    """
    CREATE TABLE IF NOT EXISTS aimm_projection_faults (
        context text PRIMARY KEY,
        position bigint NOT NULL,
        aggregate_id uuid NOT NULL,
        version bigint NOT NULL,
        reason text NOT NULL,
        detected_at timestamptz NOT NULL DEFAULT now()
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
            events, fault = await read_checked(conn, context, start, self.batch_size)
            if fault is not None and not events:
                await self._halt(conn, fault)
                return 0
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
            await conn.execute("DELETE FROM aimm_projection_faults WHERE context = $1", context)
            await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}, '{context}:{last}'")
        return len(events)

    async def _halt(self, conn: asyncpg.Connection, fault: UnreadableEventError) -> None:
        """Record (once) that ``fault``'s context stops at its unreadable event."""
        known = await conn.fetchval(
            "SELECT position FROM aimm_projection_faults WHERE context = $1", fault.context
        )
        if known == fault.position:
            return
        log.error("projector: %s; this log is halted there until the row is repaired", fault)
        await conn.execute(
            "INSERT INTO aimm_projection_faults (context, position, aggregate_id, version, reason)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (context) DO UPDATE SET position = "
            "excluded.position, aggregate_id = excluded.aggregate_id, version = excluded.version,"
            " reason = excluded.reason, detected_at = now()",
            fault.context,
            fault.position,
            fault.aggregate_id,
            fault.version,
            fault.reason,
        )

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
        """Catch up, then follow the logs until ``stop`` is set; a session that fails
        (the database went away, a handler raised) is started again with backoff."""
        await run_async_until_stopped(
            log, "projector", stop, lambda: self._session(stop, idle_timeout)
        )

    async def _session(self, stop: asyncio.Event, idle_timeout: float) -> None:
        await self.setup()
        listener = await self.pool.acquire()
        try:
            for context in self.contexts:
                await listener.add_listener(events_table(context), self._on_notify)
            while not stop.is_set():
                self._wake.clear()
                # A failed batch rolled back with its position: the next session retries it.
                await self.catch_up()
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait(
                    {waiter, stopper}, timeout=idle_timeout, return_when=asyncio.FIRST_COMPLETED
                )
                waiter.cancel()
                stopper.cancel()
        finally:
            with contextlib.suppress(Exception):
                for context in self.contexts:
                    await listener.remove_listener(events_table(context), self._on_notify)
            with contextlib.suppress(Exception):
                await self.pool.release(listener)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()
