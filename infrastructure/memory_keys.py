"""The key vault of agent memory: one AES-256 key per memory, destroyed on erasure.

Keys are written (in their own transaction) before the events that hold text sealed
under them, so an event's text can always be opened until its memory is erased; a key
whose events were never saved opens nothing and harms nothing. Erasing deletes the key
row, on the command side and before the ``Erased`` event is saved (a failed save is
retried; ``application/memory.py`` says why this order): the sealed text in the log is
then unreadable for good. The projection only reads keys (``fetch_keys``), never deletes
them. The vault is a table of the same database here; a deployment that wants keys
elsewhere replaces this module (a KMS, an HSM).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

import asyncpg

TABLE = "memory_keys"
DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    memory_id uuid PRIMARY KEY,
    key bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""


class PostgresKeyVault:
    """The ``application.ports.KeyVault`` of PostgreSQL: synchronous access through an
    eventsourcing datastore's pool (the command side)."""

    def __init__(self, datastore: Any) -> None:
        self.datastore = datastore
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SELECT pg_advisory_xact_lock(hashtextextended('aimm.memory_keys', 0))")
            curs.execute(DDL)

    def put_many(self, keys: Iterable[tuple[UUID, bytes]]) -> None:
        rows = list(keys)
        if not rows:
            return
        with self.datastore.transaction(commit=True) as curs:
            with curs.copy(f"COPY {TABLE} (memory_id, key) FROM STDIN") as copy:
                for memory_id, key in rows:
                    copy.write_row((memory_id, key))

    def get_many(self, memory_ids: Sequence[UUID]) -> dict[UUID, bytes]:
        if not memory_ids:
            return {}
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                f"SELECT memory_id, key FROM {TABLE} WHERE memory_id = ANY(%s)",
                (list(memory_ids),),
            )
            return {r["memory_id"]: bytes(r["key"]) for r in curs.fetchall()}

    def destroy(self, memory_id: UUID) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(f"DELETE FROM {TABLE} WHERE memory_id = %s", (memory_id,))


async def fetch_keys(conn: asyncpg.Connection, memory_ids: Sequence[UUID]) -> dict[UUID, bytes]:
    """Keys for the read side (projection, as-of views), one round trip."""
    if not memory_ids:
        return {}
    rows = await conn.fetch(
        f"SELECT memory_id, key FROM {TABLE} WHERE memory_id = ANY($1::uuid[])", list(memory_ids)
    )
    return {r["memory_id"]: bytes(r["key"]) for r in rows}
