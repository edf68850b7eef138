"""Artifacts stored by content hash: dataset rows and trained parameters.

An artifact's key is ``sha256:<hex>`` of its bytes, so the key proves the content: a
reader recomputes the hash, and a store that returned other bytes is caught. Writes
are idempotent (the same bytes, the same key) and happen before the event that names
the hash is saved, so an event never names a missing artifact; an artifact whose
event was never saved is unreferenced, not harmful. Bytes are kept zlib-compressed.

Unreadable artifacts: stored bytes that no longer decompress, or decompress to other
content than their key, raise ``ArtifactIntegrityError`` naming the artifact's key (and
why); the workers fail the job that needed it with that message, and the API answers
the artifact's download with a ``503`` problem naming it (``api.errors``) — never a bare
``zlib.error`` and never a 500.
"""

from __future__ import annotations

import zlib
from typing import Any

import asyncpg

from application.ports import ArtifactIntegrityError
from domain.artifacts import content_hash

__all__ = ["ArtifactIntegrityError", "PostgresArtifactStore", "content_hash", "fetch"]

DDL = """
CREATE TABLE IF NOT EXISTS aimm_artifacts (
    content_hash text PRIMARY KEY,
    media_type text NOT NULL,
    size_bytes bigint NOT NULL,
    data bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""


def _checked(key: str, compressed: bytes) -> bytes:
    try:
        data = zlib.decompress(compressed)
    except zlib.error as exc:
        raise ArtifactIntegrityError(
            f"artifact {key} cannot be read: its stored bytes are corrupt ({exc})"
        ) from exc
    if content_hash(data) != key:
        raise ArtifactIntegrityError(f"artifact {key} does not match its content")
    return data


class PostgresArtifactStore:
    """The ``application.ports.ArtifactStore`` in the events' database, through an
    eventsourcing datastore's pool."""

    def __init__(self, datastore: Any) -> None:
        self.datastore = datastore
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SELECT pg_advisory_xact_lock(hashtextextended('aimm.artifacts', 0))")
            curs.execute(DDL)

    def put(self, data: bytes, media_type: str) -> str:
        key = content_hash(data)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "INSERT INTO aimm_artifacts (content_hash, media_type, size_bytes, data) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (content_hash) DO NOTHING",
                (key, media_type, len(data), zlib.compress(data, 6)),
            )
        return key

    def get(self, key: str) -> bytes | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT data FROM aimm_artifacts WHERE content_hash = %s", (key,))
            row = curs.fetchone()
        return None if row is None else _checked(key, bytes(row["data"]))


async def fetch(conn: asyncpg.Connection, key: str) -> tuple[str, bytes] | None:
    """(media type, bytes) of an artifact, checked against its key; None if unknown."""
    row = await conn.fetchrow(
        "SELECT media_type, data FROM aimm_artifacts WHERE content_hash = $1", key
    )
    return None if row is None else (row["media_type"], _checked(key, row["data"]))
