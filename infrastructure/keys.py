"""API keys: stored as SHA-256 hashes, each mapping to a principal, roles and an agent.

Keys are 256-bit random tokens, so a fast hash is the right tool (there is nothing to
brute-force); the plaintext is shown once, at creation, and never stored.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

ROLES = ("admin", "operator", "viewer", "auditor", "agent")
KEY_PREFIX = "aimm_"

DDL = """
CREATE TABLE IF NOT EXISTS aimm_api_keys (
    key_id text PRIMARY KEY,
    key_hash text NOT NULL UNIQUE,
    name text NOT NULL,
    principal text NOT NULL,
    roles text[] NOT NULL,
    agent_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE OR REPLACE FUNCTION aimm_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('aimm_keys', '');
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER aimm_keys_changed AFTER INSERT OR UPDATE OR DELETE
    ON aimm_api_keys FOR EACH STATEMENT EXECUTE FUNCTION aimm_keys_changed();
"""
# Every change to the key table (create, revoke, even a hand-written UPDATE) notifies
# this channel, so servers drop their cached key lookups at once.
KEYS_CHANNEL = "aimm_keys"


class InvalidKeyRequestError(ValueError):
    """A key cannot be created as asked (unknown role, agent role without agent)."""


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


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def validate_roles(roles: list[str], agent_id: str | None) -> None:
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise InvalidKeyRequestError(f"roles must be some of {', '.join(ROLES)}; got {roles}")
    if ("agent" in roles) != (agent_id is not None):
        raise InvalidKeyRequestError(
            "the agent role needs --agent ID, and only the agent role takes one"
        )


async def create_key(
    conn: asyncpg.Connection,
    *,
    roles: list[str],
    name: str,
    agent_id: str | None = None,
    key: str | None = None,
) -> tuple[str, KeyInfo]:
    """Store a new key (or the given one) and return its plaintext once."""
    validate_roles(roles, agent_id)
    key = key or KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = hash_key(key)[:12]
    principal = f"{name}" if name else f"key:{key_id}"
    row = await conn.fetchrow(
        "INSERT INTO aimm_api_keys (key_id, key_hash, name, principal, roles, agent_id) "
        "VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        key_id,
        hash_key(key),
        name or key_id,
        principal,
        sorted(set(roles)),
        agent_id,
    )
    return key, _info(row)


async def revoke_key(conn: asyncpg.Connection, key_id: str) -> bool:
    status: str = await conn.execute(
        "UPDATE aimm_api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL",
        key_id,
    )
    return status.endswith(" 1")


async def list_keys(conn: asyncpg.Connection) -> list[KeyInfo]:
    rows = await conn.fetch("SELECT * FROM aimm_api_keys ORDER BY created_at")
    return [_info(row) for row in rows]


async def count_active_admin_keys(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM aimm_api_keys WHERE revoked_at IS NULL AND 'admin' = ANY(roles)"
        )
    )


async def authenticate(conn: asyncpg.Connection, key: str) -> Principal | None:
    row = await conn.fetchrow(
        "SELECT key_id, principal, roles, agent_id FROM aimm_api_keys "
        "WHERE key_hash = $1 AND revoked_at IS NULL",
        hash_key(key),
    )
    if row is None:
        return None
    return Principal(row["principal"], frozenset(row["roles"]), row["agent_id"], row["key_id"])


def _info(row: asyncpg.Record) -> KeyInfo:
    return KeyInfo(
        key_id=row["key_id"],
        name=row["name"],
        principal=row["principal"],
        roles=list(row["roles"]),
        agent_id=row["agent_id"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )
