"""A pooled connection the server drops is "the database is away" (a 503 for the API, a
retry for a loop), wherever in the ``acquire()`` block the loss is met.

The server ends the connection's backend (``pg_terminate_backend``, as a restart or a
failover does); then the holder of the connection makes its next call. asyncpg hands a
lost connection back to its pool at once, so that call can fail with an
``InterfaceError`` about a released connection rather than a connection error: the
restart test under load met exactly that as a 500 on ``GET /api/v1/ai/models/{id}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from infrastructure.postgres import create_pool, database_unavailable


async def _drop(conn: asyncpg.Connection, url: str) -> None:
    """End ``conn``'s backend from another session and wait until the client knows."""
    lost = asyncio.Event()
    conn.add_termination_listener(lambda _: lost.set())
    pid = conn.get_server_pid()
    admin = await asyncpg.connect(url)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    async with asyncio.timeout(10):
        await lost.wait()


async def _read_in_snapshot(conn: asyncpg.Connection) -> Any:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await conn.fetchval("SELECT 1")


async def _lost_before_the_transaction(conn: asyncpg.Connection, url: str) -> Any:
    await _drop(conn, url)
    return await _read_in_snapshot(conn)


async def _lost_inside_the_transaction(conn: asyncpg.Connection, url: str) -> Any:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await _drop(conn, url)
        return await conn.fetchval("SELECT 1")


@pytest.mark.parametrize(
    "lose", [_lost_before_the_transaction, _lost_inside_the_transaction], ids=["before", "inside"]
)
async def test_a_dropped_pooled_connection_reads_as_the_database_away(
    database_url: str, lose: Callable[[asyncpg.Connection, str], Awaitable[Any]]
) -> None:
    pool = await create_pool(database_url, max_size=2)
    try:
        # which error escapes is the point: any the classifier calls the database away
        with pytest.raises(Exception) as raised:
            async with pool.acquire() as conn:
                await lose(conn, database_url)
        assert database_unavailable(raised.value), repr(raised.value)
        # the pool itself is fine: the next acquire gets a working connection
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await pool.close()


async def test_a_misused_connection_is_still_a_bug(database_url: str) -> None:
    """The classifier's other InterfaceErrors stay 500s: two operations at once on one
    connection is aimm's mistake, not the database's absence."""
    conn = await asyncpg.connect(database_url)
    try:
        # the first runs until it waits for the server; the second then finds it busy
        first, second = await asyncio.gather(
            conn.fetchval("SELECT pg_sleep(0.2)"), conn.fetchval("SELECT 1"), return_exceptions=True
        )
    finally:
        await conn.close()
    assert not isinstance(first, BaseException), repr(first)
    assert isinstance(second, asyncpg.InterfaceError), repr(second)
    assert "in progress" in str(second)
    assert not database_unavailable(second), repr(second)


async def test_a_connection_ended_while_idle_in_the_pool_reads_as_the_database_away(
    database_url: str,
) -> None:
    """A backend ended while its connection sits idle in the pool sends a FATAL before it
    closes. The next acquirer's call meets the connection in one of three states: already
    known lost, lost in the middle of the call, or still discarding that FATAL (asyncpg's
    InternalClientError "another operation (2) is in progress"; a 500 in the restart test
    under load). Which one depends on the moment, so the test ends many backends at a few
    distances from the next call: every failure must read as the database away."""
    pool = await create_pool(database_url, max_size=1)
    admin = await asyncpg.connect(database_url)
    failures: list[BaseException] = []
    try:
        for attempt in range(40):
            async with pool.acquire() as conn:
                pid = conn.get_server_pid()
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            for _ in range(attempt % 5):  # a few turns of the event loop in between
                await asyncio.sleep(0)
            try:
                async with pool.acquire() as conn:
                    await conn.fetchval("SELECT 1")
            except Exception as exc:  # noqa: BLE001 - classified below
                failures.append(exc)
        misread = [repr(e) for e in failures if not database_unavailable(e)]
        assert misread == [], misread
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await admin.close()
        await pool.close()
