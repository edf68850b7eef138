"""How far the read models are, and waiting until they get somewhere.

``status`` reports each projection's position per log and its lag. Waiting is
event-driven: the projector sends ``NOTIFY aimm_projection_advanced, '<context>:<position>'``
in the transaction of every batch (``projections.projector``), so it is delivered
exactly when the batch is visible.

``ProjectionWatcher`` is the one API for waiting on the read models, used by
``?wait_for=`` (``api.consistency``), by the training metrics stream
(``api.controllers.ml``), and meant for every later context (predictions, assistant):

- ``await watcher.wait_until(context, position, timeout) -> bool``: True once every
  projection following ``context`` has reached ``position`` (read-your-writes), False
  after ``timeout`` seconds;
- ``await watcher.advanced(context, timeout) -> bool``: True when a batch of
  ``context``'s log was projected since the call, False after ``timeout`` (a stream
  re-reads its rows either way).

One watcher per API process holds one LISTEN connection (started and stopped by the
app's lifespan) and fans each notification out to the asyncio waiters of that context.
A timer is the fallback: a waiter re-checks the positions table every
``fallback_seconds`` whatever it hears, so a lost notification (a rebuild swapping
tables in, the LISTEN connection reconnecting after the database went away) only costs
latency. ``listen=False`` makes a watcher that only polls (the benchmark's baseline).
``wait_for_position`` is the plain polling wait on one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from application.retry import run_async_until_stopped
from projections.events import events_table, head_position
from projections.projector import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

REACHED_SQL = (
    "SELECT coalesce(min(position), $2) >= $2 FROM aimm_projection_positions WHERE context = $1"
)


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


class ProjectionWatcher:
    """Wakes asyncio waiters when the projector commits a batch (see the module)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        url: str,
        *,
        listen: bool = True,
        fallback_seconds: float = 1.0,
    ) -> None:
        self.pool, self.url, self.listen = pool, url, listen
        self.fallback_seconds = fallback_seconds
        self._events: dict[str, asyncio.Event] = {}
        self._counts: dict[str, int] = {}  # notifications heard per context
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()  # set while the LISTEN connection is up

    async def start(self) -> None:
        if self.listen:
            self._task = asyncio.create_task(self._keep_listening())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task

    async def wait_until(self, context: str, position: int, timeout: float) -> bool:  # noqa: ASYNC109
        """True once every projection following ``context`` has reached ``position``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            heard = self.heard(context)  # before reading, so nothing falls in between
            async with self.pool.acquire() as conn:
                if await conn.fetchval(REACHED_SQL, context, position):
                    return True
            left = deadline - loop.time()
            if left <= 0:
                return False
            await self.advanced(context, min(left, self.fallback_seconds), since=heard)

    def heard(self, context: str) -> int:
        """How many notifications of ``context`` this watcher has heard (for ``since``)."""
        return self._counts.get(context, 0)

    async def advanced(
        self,
        context: str,
        timeout: float | None = None,  # noqa: ASYNC109
        since: int | None = None,
    ) -> bool:
        """True when a batch of ``context`` is projected within ``timeout`` (default: the
        fallback interval), else False. With ``since`` (a ``heard()`` taken before the
        caller read the read model), a notification heard after it counts at once."""
        wait = self.fallback_seconds if timeout is None else timeout
        if not self.listen:
            await asyncio.sleep(wait)
            return False
        if since is not None and self.heard(context) > since:
            return True
        event = self._events.setdefault(context, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout=wait)
        except TimeoutError:
            return False
        return True

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        context = payload.partition(":")[0]
        self._counts[context] = self._counts.get(context, 0) + 1
        self._wake(context)

    def _wake(self, context: str | None = None) -> None:
        """Release the waiters of ``context`` (all waiters when None)."""
        names = list(self._events) if context is None else [context]
        for name in names:
            event = self._events.pop(name, None)
            if event is not None:
                event.set()

    async def _keep_listening(self) -> None:
        await run_async_until_stopped(log, "projection watcher", self._stop, self._listen)

    async def _listen(self) -> None:
        """One LISTEN session: until stopped, or the connection is lost (then raise, and
        ``_keep_listening`` reconnects with backoff)."""
        conn = await asyncpg.connect(self.url)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _: lost.set())
        try:
            await conn.add_listener(NOTIFY_CHANNEL, self._notified)
            self.listening.set()
            self._wake()  # anything missed while reconnecting: everyone re-checks
            stopper = asyncio.ensure_future(self._stop.wait())
            loser = asyncio.ensure_future(lost.wait())
            await asyncio.wait({stopper, loser}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            loser.cancel()
            if lost.is_set() and not self._stop.is_set():
                raise ConnectionError("the LISTEN connection was lost")
        finally:
            self.listening.clear()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=2)
            if not conn.is_closed():
                conn.terminate()
