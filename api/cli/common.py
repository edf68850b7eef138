"""What every command shares: settings, the database (configured or embedded), one
connection, a log follower run until signalled, and timestamp parsing."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import TypeVar

import asyncpg
import click

from infrastructure.settings import Settings, SettingsError

T = TypeVar("T")


def load_settings() -> Settings:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(f"invalid configuration: {exc}") from None
    settings.configure_logging()
    return settings


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The configured server's URL, or the embedded server's while the block runs."""
    if settings.database_url is not None:
        yield settings.database_url
        return
    from infrastructure.postgres import embedded_server

    with embedded_server(settings.pgdata) as url:
        yield url


def on_connection(
    settings: Settings,
    work: Callable[[asyncpg.Connection], Awaitable[T]],
    *,
    migrated: bool = False,
) -> T:
    """Run ``work`` on one connection to the database (migrating it first if asked)."""

    async def run(url: str) -> T:
        if migrated:
            from infrastructure.schema import migrate as run_migrate

            await run_migrate(url)
        conn = await asyncpg.connect(url)
        try:
            return await work(conn)
        finally:
            await conn.close()

    with database(settings) as url:
        return asyncio.run(run(url))


def run_until_signalled(
    settings: Settings,
    pool_size: int,
    follow: Callable[[asyncpg.Pool, asyncio.Event], Awaitable[None]],
) -> None:
    """Migrate, then run a log follower (projector, relay) until SIGINT or SIGTERM."""
    from infrastructure.postgres import create_pool
    from infrastructure.schema import migrate as run_migrate

    async def run(url: str) -> None:
        await run_migrate(url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        pool = await create_pool(url, max_size=pool_size)
        try:
            await follow(pool, stop)
        finally:
            await pool.close()

    with database(settings) as url:
        asyncio.run(run(url))


def parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        raise click.BadParameter("the timestamp needs a time zone, e.g. 2026-11-27T10:00:00Z")
    return parsed
