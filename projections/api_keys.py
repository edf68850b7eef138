"""The API key table (``rm_api_keys``): a projection of the ``ApiKey`` events.

Authentication reads this table (through ``api.keycache``); the log is its truth. The
command side (``infrastructure.keys``) applies each key event to the live table in the
same transaction that appends it, so a key works, or stops working, the moment its
command returns; the projector applies the same events again (idempotently) and a
rebuild (``aimm projections rebuild``) restores the whole table from the log.

Every change to the table (create, revoke, a rebuild's rows, a hand-written UPDATE)
notifies ``aimm_keys``, so servers drop their cached key lookups at once.
``aimm_api_keys`` is a view of the live table under the name the table had before keys
were events, for scripts that read it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import asyncpg

from projections.events import Event

KEYS_CHANNEL = "aimm_keys"
TABLE = "rm_api_keys"
NAME = "api_keys"


def created_row(e: Event) -> tuple[Any, ...]:
    d = e.data
    return (
        d["key_id"],
        d["key_hash"],
        d["name"],
        d["principal"],
        list(d["roles"]),
        d["agent_id"],
        d["created_by"],
        e.timestamp,
        e.version,
    )


INSERT = (
    "INSERT INTO {table} (key_id, key_hash, name, principal, roles, agent_id, created_by, "
    "created_at, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING"
)
REVOKE = (
    "UPDATE {table} SET revoked_at = $2, revoked_by = $3, reason = $4, version = $5 "
    "WHERE key_id = $1 AND version < $5"
)


async def apply_key_events(conn: asyncpg.Connection, table: str, events: Sequence[Event]) -> None:
    """Apply ``ApiKey`` events (others are skipped); applying one twice changes nothing."""
    created = [created_row(e) for e in events if e.type == "ApiKey.Created"]
    revoked = [
        (e.data["key_id"], e.timestamp, e.data["revoked_by"], e.data["reason"], e.version)
        for e in events
        if e.type == "ApiKey.Revoked"
    ]
    if created:
        await conn.executemany(INSERT.format(table=table), created)
    if revoked:
        await conn.executemany(REVOKE.format(table=table), revoked)


class ApiKeys:
    """The key table authentication reads, one row per key ever created."""

    name: ClassVar[str] = NAME
    contexts: ClassVar[tuple[str, ...]] = ("registry",)
    tables: ClassVar[Mapping[str, Sequence[str]]] = {
        "api_keys": (
            """
            CREATE TABLE {api_keys} (
                key_id text PRIMARY KEY,
                key_hash text NOT NULL UNIQUE,
                name text NOT NULL,
                principal text NOT NULL,
                roles text[] NOT NULL,
                agent_id text,
                created_by text NOT NULL,
                created_at timestamptz NOT NULL,
                revoked_at timestamptz,
                revoked_by text,
                reason text,
                version bigint NOT NULL
            )
            """,
            """
            CREATE OR REPLACE FUNCTION aimm_keys_changed() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('aimm_keys', '');
                RETURN NULL;
            END $$
            """,
            """
            CREATE TRIGGER aimm_keys_changed AFTER INSERT OR UPDATE OR DELETE
                ON {api_keys} FOR EACH STATEMENT EXECUTE FUNCTION aimm_keys_changed()
            """,
            # The compatibility view follows the live table (and a rebuild's fresh table,
            # which becomes the live one); never an as-of copy in its own schema.
            """
            DO $$ BEGIN
                IF strpos('{api_keys}', '.') = 0 THEN
                    EXECUTE 'CREATE OR REPLACE VIEW aimm_api_keys AS SELECT * FROM {api_keys}';
                END IF;
            END $$
            """,
        ),
    }

    async def apply(
        self, conn: asyncpg.Connection, tables: Mapping[str, str], events: Sequence[Event]
    ) -> None:
        await apply_key_events(conn, tables["api_keys"], events)
