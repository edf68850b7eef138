"""Cached key lookups, dropped whenever the key table changes (LISTEN aimm_keys).

An authenticated request costs no database round trip while its key is cached; a
revocation reaches every server through the table's trigger and NOTIFY within
milliseconds, and the TTL bounds staleness should the listening connection be lost.
When it is lost (the database restarted), the cache is emptied and the listener comes
back by itself, with backoff, as soon as the database does; it empties the cache again
then, since a revocation may have happened while nobody listened.

The bootstrap admin key (``AIMM_BOOTSTRAP_ADMIN_KEY``) is recorded as an
``ApiKey.Created`` event by ``settings:AIMM_BOOTSTRAP_ADMIN_KEY`` when a server starts
with it (``start(bootstrap_key)``); from then on it is a key like any other,
authenticated against the table, so revoking it (``aimm keys revoke``) is honoured and
final: a revoked bootstrap key is never recorded again, and refused. It is not recorded
at its first use instead: a read must never append an event. A server started without
recording it (``start()``) accepts it as the ``bootstrap-admin`` principal while the
log has never heard of it, and refuses it once the log has it revoked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg

from infrastructure.keys import (
    KEYS_CHANNEL,
    Principal,
    authenticate,
    ensure_key,
    hash_key,
    is_recorded,
)

log = logging.getLogger(__name__)

TTL_SECONDS = 10.0
RELISTEN_CAP = 10.0  # seconds between attempts to listen again, at most
MAX_ENTRIES = 10_000
BOOTSTRAP_ADMIN = "bootstrap-admin"
BOOTSTRAP_CREATOR = "settings:AIMM_BOOTSTRAP_ADMIN_KEY"


class KeyCache:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._listener: asyncpg.Connection | None = None
        self._recorded: set[str] = set()  # hashes of bootstrap keys recorded as events
        self._stopping = False
        self._relisten: asyncio.Task[None] | None = None

    async def start(self, bootstrap_key: str | None = None) -> None:
        await self._listen()
        if bootstrap_key is not None:
            await self.record_bootstrap(bootstrap_key)

    async def record_bootstrap(self, key: str) -> None:
        """Record the bootstrap admin key as an event, once per server (idempotent)."""
        digest = hash_key(key)
        if digest in self._recorded:
            return
        async with self.pool.acquire() as conn:
            await ensure_key(
                conn, key, name=BOOTSTRAP_ADMIN, roles=["admin"], created_by=BOOTSTRAP_CREATOR
            )
        self._recorded.add(digest)

    @property
    def listening(self) -> bool:
        return self._listener is not None and not self._listener.is_closed()

    async def _listen(self) -> None:
        conn = await self.pool.acquire()
        try:
            await conn.add_listener(KEYS_CHANNEL, self._on_change)
        except BaseException:
            await self.pool.release(conn)
            raise
        conn.add_termination_listener(self._on_lost)
        self._listener = conn
        self._entries.clear()  # what changed while nobody listened is not in the cache

    def _on_lost(self, conn: asyncpg.Connection) -> None:
        """The listening connection closed under us: empty the cache, listen again."""
        if self._stopping or conn is not self._listener:
            return
        log.warning("the key cache lost its LISTEN connection: listening again when it can")
        self._entries.clear()
        self._listener = None
        self._relisten = asyncio.get_running_loop().create_task(self._listen_again(conn))

    async def _listen_again(self, dead: asyncpg.Connection) -> None:
        with contextlib.suppress(Exception):
            await self.pool.release(dead)
        delay = 0.25
        while not self._stopping:
            try:
                await self._listen()
            except Exception:  # noqa: BLE001 - the database still away (refused, timed out, starting): try again later
                await asyncio.sleep(delay)
                delay = min(delay * 2, RELISTEN_CAP)
            else:
                log.info("the key cache listens again")
                return

    async def stop(self) -> None:
        self._stopping = True
        if self._relisten is not None:
            self._relisten.cancel()
            with contextlib.suppress(BaseException):
                await self._relisten
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.remove_listener(KEYS_CHANNEL, self._on_change)
            await self.pool.release(self._listener)
            self._listener = None

    def _on_change(self, *_: object) -> None:
        self._entries.clear()

    async def lookup(self, key: str, unrecorded: Principal | None = None) -> Principal | None:
        """The principal of an active ``key``; None for an unknown or revoked one, but
        ``unrecorded`` for a key the log has never recorded (the bootstrap key)."""
        digest = hash_key(key)
        hit = self._entries.get(digest)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        async with self.pool.acquire() as conn:
            principal = await authenticate(conn, key)
            if principal is None and unrecorded is not None and not await is_recorded(conn, key):
                principal = unrecorded
        # Only known keys are cached: guessing keys must not fill the cache.
        if principal is not None:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[digest] = (principal, now + TTL_SECONDS)
        return principal
