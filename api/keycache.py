"""Cached key lookups, dropped whenever the key table changes (LISTEN aimm_keys).

An authenticated request costs no database round trip while its key is cached; a
revocation reaches every server through the table's trigger and NOTIFY within
milliseconds, and the TTL bounds staleness should the listening connection be lost.
"""

from __future__ import annotations

import time

import asyncpg

from infrastructure.keys import KEYS_CHANNEL, Principal, authenticate, hash_key

TTL_SECONDS = 10.0
MAX_ENTRIES = 10_000


class KeyCache:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._listener: asyncpg.Connection | None = None

    async def start(self) -> None:
        self._listener = await self.pool.acquire()
        await self._listener.add_listener(KEYS_CHANNEL, self._on_change)

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.remove_listener(KEYS_CHANNEL, self._on_change)
            await self.pool.release(self._listener)
            self._listener = None

    def _on_change(self, *_: object) -> None:
        self._entries.clear()

    async def lookup(self, key: str) -> Principal | None:
        digest = hash_key(key)
        hit = self._entries.get(digest)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        async with self.pool.acquire() as conn:
            principal = await authenticate(conn, key)
        # Only known keys are cached: guessing keys must not fill the cache.
        if principal is not None:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[digest] = (principal, now + TTL_SECONDS)
        return principal
