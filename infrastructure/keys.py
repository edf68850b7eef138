"""API keys: created and revoked as events, authenticated against their projection.

Keys are 256-bit random tokens shown once, at creation, and never stored: the log and
the table keep their SHA-256 hash. A fast hash is the right tool for random tokens
(there is nothing to brute-force).

**Where the events live.** ``ApiKey.Created`` and ``ApiKey.Revoked`` (``domain.keys``)
are appended to the registry context's log, the control plane's log, rather than to a
sixth "access" context: a new context is a new events table, relay topic, hash chain,
audit index and entry in every list of contexts, for a handful of events. In the
registry log they are covered by the audit chain, listed by the audit API, replayed by
``aimm replay --context registry`` and published to ``aimm.registry`` like any event
(hashes only: a consumer learns nothing it could log in with).

**How the table follows.** ``rm_api_keys`` is a projection of those events
(``projections.api_keys``), rebuilt from the log like every read model. The commands
here append the event *and* apply it to the live table in one PostgreSQL transaction
(holding the projection's lock, as the projector does), so a new key works and a
revoked key is refused the moment the command returns, whether or not a projector
runs; the projector applies the same events again without effect.

The events are appended through asyncpg with the event store's own encoding (the
eventsourcing mapper with the library's default transcodings, exactly what the context
applications use) and its own insert protocol: lock the table in EXCLUSIVE mode (so
commit order is notification order), NOTIFY the table's channel, insert. The registry
application reads these aggregates back like any other (``repository.get``).

**Who.** Every key event records who acted: ``created_by`` / ``revoked_by`` in the
payload and the same principal in the event's metadata (``cli:<os user>`` from the
command line, ``settings:AIMM_BOOTSTRAP_ADMIN_KEY`` for the bootstrap key, the acting
principal otherwise).
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    UUIDAsHex,
)

from domain.errors import ConflictError
from domain.keys import (
    ROLES,
    ApiKey,
    InvalidKeyRequestError,
    KeyAlreadyRevokedError,
    key_aggregate_id,
    validate_roles,
)
from domain.metadata import acting_as, current_meta
from projections.api_keys import KEYS_CHANNEL, TABLE, apply_key_events
from projections.events import decode_row, events_table
from projections.projector import lock_projection

__all__ = [
    "KEYS_CHANNEL",
    "KEY_PREFIX",
    "ROLES",
    "TABLE",
    "InvalidKeyRequestError",
    "KeyInfo",
    "Principal",
    "authenticate",
    "count_active_admin_keys",
    "create_key",
    "ensure_key",
    "hash_key",
    "is_recorded",
    "list_keys",
    "revoke_key",
    "validate_roles",
]

KEY_PREFIX = "aimm_"
CONTEXT = "registry"
LEGACY_TABLE = "aimm_api_keys"
LEGACY_RENAMED = "aimm_api_keys_legacy"


class DuplicateKeyError(ConflictError):
    """A key with this id exists already (the same key, or a 48-bit id collision)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the name events record, the roles checked, the agent bound."""

    name: str
    roles: frozenset[str]
    agent_id: str | None = None
    key_id: str | None = None

    def has_any(self, roles: frozenset[str]) -> bool:
        return bool(self.roles & roles)


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    name: str
    principal: str
    roles: list[str]
    agent_id: str | None
    created_at: datetime
    revoked_at: datetime | None
    created_by: str | None = None
    revoked_by: str | None = None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@functools.cache
def _mapper() -> Mapper[UUID]:
    """The event store's encoding: eventsourcing's default transcodings (as in
    ``Application.register_transcodings``), no compression, no cipher."""
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return Mapper(transcoder=transcoder)


async def _load(conn: asyncpg.Connection, key_id: str) -> ApiKey | None:
    rows = await conn.fetch(
        "SELECT originator_id, originator_version, topic, state "
        f"FROM {events_table(CONTEXT)} WHERE originator_id = $1 ORDER BY originator_version",
        key_aggregate_id(key_id),
    )
    aggregate: Any = None
    for row in rows:
        stored = StoredEvent(
            originator_id=row[0], originator_version=row[1], topic=row[2], state=bytes(row[3])
        )
        event: Any = _mapper().to_domain_event(stored)
        aggregate = event.mutate(aggregate)
    return aggregate if isinstance(aggregate, ApiKey) else None


async def _save(conn: asyncpg.Connection, aggregate: ApiKey) -> None:
    """Append the aggregate's new events and apply them to the key table, atomically.

    Raises ``asyncpg.UniqueViolationError`` when another writer stored that version first.
    """
    pending = aggregate.collect_events()
    stored = [_mapper().to_stored_event(e) for e in pending]
    table = events_table(CONTEXT)
    async with conn.transaction():
        await lock_projection(conn, "api_keys")
        await conn.execute("SET LOCAL lock_timeout = '10s'")
        await conn.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
        await conn.execute(f"NOTIFY {table}")
        rows = []
        for s in stored:
            position = await conn.fetchval(
                f"INSERT INTO {table} (originator_id, originator_version, topic, state) "
                "VALUES ($1, $2, $3, $4) RETURNING notification_id",
                s.originator_id,
                s.originator_version,
                s.topic,
                s.state,
            )
            rows.append((position, s.originator_id, s.originator_version, s.topic, s.state))
        await apply_key_events(conn, TABLE, [decode_row(CONTEXT, row) for row in rows])


async def create_key(  # noqa: PLR0913
    conn: asyncpg.Connection,
    *,
    roles: list[str],
    name: str,
    agent_id: str | None = None,
    key: str | None = None,
    created_by: str | None = None,
    note: str = "",
) -> tuple[str, KeyInfo]:
    """Record a new key (or the given one) and return its plaintext once.

    ``created_by``: who creates it (default: the acting principal of the block, see
    ``domain.metadata.acting_as``); recorded in the event and its metadata.
    """
    validate_roles(roles, agent_id)
    key = key or KEY_PREFIX + secrets.token_urlsafe(32)
    digest = hash_key(key)
    key_id = digest[:12]
    meta = current_meta()
    actor = created_by or meta["principal"]
    with acting_as(actor, meta.get("correlation_id", "system"), meta.get("causation_id")):
        aggregate = ApiKey.create(
            key_id=key_id,
            key_hash=digest,
            name=name or key_id,
            principal=name or f"key:{key_id}",
            roles=roles,
            agent_id=agent_id,
            created_by=actor,
            note=note,
        )
    try:
        await _save(conn, aggregate)
    except asyncpg.UniqueViolationError:
        raise DuplicateKeyError(f"a key with id {key_id} exists already") from None
    row = await conn.fetchrow(f"SELECT * FROM {TABLE} WHERE key_id = $1", key_id)
    return key, _info(row)


async def revoke_key(
    conn: asyncpg.Connection,
    key_id: str,
    *,
    revoked_by: str | None = None,
    reason: str = "",
) -> bool:
    """Record the revocation of an active key; False when there is no active key ``key_id``."""
    aggregate = await _load(conn, key_id)
    if aggregate is None:
        return False
    meta = current_meta()
    actor = revoked_by or meta["principal"]
    try:
        with acting_as(actor, meta.get("correlation_id", "system"), meta.get("causation_id")):
            aggregate.revoke(revoked_by=actor, reason=reason)
        await _save(conn, aggregate)
    except (KeyAlreadyRevokedError, asyncpg.UniqueViolationError):
        return False  # revoked before, or by a concurrent revocation
    return True


async def ensure_key(
    conn: asyncpg.Connection, key: str, *, name: str, roles: list[str], created_by: str
) -> None:
    """Record ``key`` (the bootstrap admin key) unless it was ever recorded: revoking it
    is final, so a revoked bootstrap key stays refused until the setting changes."""
    if await _load(conn, hash_key(key)[:12]) is not None:
        return
    try:
        await create_key(conn, roles=roles, name=name, key=key, created_by=created_by)
    except DuplicateKeyError:
        return  # another server recorded it first


async def list_keys(conn: asyncpg.Connection) -> list[KeyInfo]:
    rows = await conn.fetch(f"SELECT * FROM {TABLE} ORDER BY created_at, key_id")
    return [_info(row) for row in rows]


async def count_active_admin_keys(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval(
            f"SELECT count(*) FROM {TABLE} WHERE revoked_at IS NULL AND 'admin' = ANY(roles)"
        )
    )


async def authenticate(conn: asyncpg.Connection, key: str) -> Principal | None:
    row = await conn.fetchrow(
        f"SELECT key_id, principal, roles, agent_id FROM {TABLE} "
        "WHERE key_hash = $1 AND revoked_at IS NULL",
        hash_key(key),
    )
    if row is None:
        return None
    return Principal(row["principal"], frozenset(row["roles"]), row["agent_id"], row["key_id"])


async def is_recorded(conn: asyncpg.Connection, key: str) -> bool:
    """Whether the key table holds ``key`` at all, active or revoked."""
    return bool(
        await conn.fetchval(
            f"SELECT EXISTS (SELECT FROM {TABLE} WHERE key_hash = $1)", hash_key(key)
        )
    )


def _info(row: asyncpg.Record) -> KeyInfo:
    return KeyInfo(
        key_id=row["key_id"],
        name=row["name"],
        principal=row["principal"],
        roles=list(row["roles"]),
        agent_id=row["agent_id"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        created_by=row["created_by"],
        revoked_by=row["revoked_by"],
    )


# -- the key table of versions before keys were events ------------------------------


async def set_aside_legacy_table(conn: asyncpg.Connection) -> None:
    """Rename a key *table* of an older version out of the way of the projection's
    view of the same name (``import_legacy_keys`` then turns its rows into events)."""
    is_table = await conn.fetchval(
        "SELECT relkind = 'r' FROM pg_class WHERE oid = to_regclass($1)", LEGACY_TABLE
    )
    if is_table:
        await conn.execute(f"ALTER TABLE {LEGACY_TABLE} RENAME TO {LEGACY_RENAMED}")
        await conn.execute(f"DROP TRIGGER IF EXISTS aimm_keys_changed ON {LEGACY_RENAMED}")


async def import_legacy_keys(conn: asyncpg.Connection) -> int:
    """Record each key of an older version's table as events (by ``migration``), keeping
    its hash, principal and roles, and its revocation; then drop that table."""
    if await conn.fetchval("SELECT to_regclass($1) IS NULL", LEGACY_RENAMED):
        return 0
    imported = 0
    with acting_as("migration", "migration:api-keys"):
        for row in await conn.fetch(f"SELECT * FROM {LEGACY_RENAMED} ORDER BY created_at"):
            key_id = row["key_id"]
            if await _load(conn, key_id) is None:
                aggregate = ApiKey.create(
                    key_id=key_id,
                    key_hash=row["key_hash"],
                    name=row["name"],
                    principal=row["principal"],
                    roles=list(row["roles"]),
                    agent_id=row["agent_id"],
                    created_by="migration",
                    note=f"recorded from the key table; created {row['created_at'].isoformat()}",
                )
                if row["revoked_at"] is not None:
                    aggregate.revoke(
                        revoked_by="migration",
                        reason=f"revoked {row['revoked_at'].isoformat()}, before keys were events",
                    )
                await _save(conn, aggregate)
                imported += 1
    await conn.execute(f"DROP TABLE {LEGACY_RENAMED}")
    return imported
