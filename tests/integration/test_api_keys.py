"""API keys as events: who created and revoked each key is in the audit log, a revoked key
is refused, and the key table is rebuilt from the log. Real PostgreSQL, the real CLI."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from infrastructure import keys
from infrastructure.postgres import create_pool
from infrastructure.schema import migrate
from projections.api_keys import ApiKeys
from projections.rebuild import rebuild
from tests.helpers import ADMIN_KEY, running_api
from tests.integration.test_cli import aimm


async def audit_events(api: Any, type_: str) -> list[dict[str, Any]]:
    response = await api.client.get(
        "/api/v1/audit/events", params={"type": type_}, headers=api.auth("auditor")
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_creation_and_revocation_are_in_the_audit_log_with_who(database_url: str) -> None:
    async with running_api(database_url) as api:
        made = aimm(database_url, "keys", "create", "--role", "operator", "--name", "ops-bot")
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip()
        key_id = keys.hash_key(key)[:12]
        ok = await api.client.get("/api/v1/ai/models", headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200
        gone = aimm(database_url, "keys", "revoke", key_id, "--reason", "rotated")
        assert gone.returncode == 0, gone.stderr
        # the revocation is in force when the command returns (same transaction as the event)
        refused = await api.client.get(
            "/api/v1/ai/models", headers={"Authorization": f"Bearer {key}"}
        )
        assert refused.status_code == 401
        assert aimm(database_url, "keys", "revoke", key_id).returncode != 0  # final

        who = f"cli:{getpass.getuser()}"
        created = {e["payload"]["key_id"]: e for e in await audit_events(api, "ApiKey.Created")}
        assert created[key_id]["payload"]["created_by"] == who
        assert created[key_id]["metadata"]["principal"] == who
        assert created[key_id]["payload"]["roles"] == ["operator"]
        assert created[key_id]["context"] == "registry"
        bootstrap = created[keys.hash_key(ADMIN_KEY)[:12]]
        assert bootstrap["payload"]["created_by"] == "settings:AIMM_BOOTSTRAP_ADMIN_KEY"
        (revoked,) = await audit_events(api, "ApiKey.Revoked")
        assert revoked["payload"] == {"key_id": key_id, "revoked_by": who, "reason": "rotated"}
        # never the key itself: only its hash
        everything = (
            await api.client.get("/api/v1/audit/events", headers=api.auth("auditor"))
        ).text
        assert key not in everything and ADMIN_KEY not in everything
        assert f"created by {who}" in aimm(database_url, "keys", "list").stdout


async def test_a_revoked_bootstrap_key_is_refused_and_never_recorded_again(
    database_url: str,
) -> None:
    async with running_api(database_url) as api:
        admin = api.auth("admin")
        assert (await api.client.get("/api/v1/ai/models", headers=admin)).status_code == 200
        conn = await asyncpg.connect(database_url)
        try:
            key_id = keys.hash_key(ADMIN_KEY)[:12]
            assert await keys.revoke_key(conn, key_id, revoked_by="ops", reason="leaked")
            assert (await api.client.get("/api/v1/ai/models", headers=admin)).status_code == 401
            await api.record_bootstrap_key(ADMIN_KEY)  # a restart with the same setting
            assert (await api.client.get("/api/v1/ai/models", headers=admin)).status_code == 401
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM registry_events WHERE originator_id = "
                    "(SELECT originator_id FROM registry_events WHERE topic LIKE '%ApiKey.Revoked')"
                )
                == 2
            )
        finally:
            await conn.close()


async def test_a_rebuild_restores_the_key_table_from_the_log(database_url: str) -> None:
    await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        kept, _ = await keys.create_key(conn, roles=["viewer"], name="kept", created_by="t")
        agent, _ = await keys.create_key(
            conn, roles=["agent"], agent_id="a-1", name="bot", created_by="t"
        )
        gone, info = await keys.create_key(conn, roles=["admin"], name="gone", created_by="t")
        assert await keys.revoke_key(conn, info.key_id, revoked_by="t", reason="x")
        before = [tuple(r) for r in await conn.fetch("SELECT * FROM rm_api_keys ORDER BY key_id")]
        await conn.execute("DELETE FROM rm_api_keys")  # lost, or tampered with
        assert await keys.authenticate(conn, kept) is None
    finally:
        await conn.close()
    pool = await create_pool(database_url, max_size=3)
    try:
        await rebuild(pool, ApiKeys())
    finally:
        await pool.close()
    conn = await asyncpg.connect(database_url)
    try:
        after = [tuple(r) for r in await conn.fetch("SELECT * FROM rm_api_keys ORDER BY key_id")]
        assert after == before
        principal = await keys.authenticate(conn, agent)
        assert principal is not None and principal.agent_id == "a-1"
        assert await keys.authenticate(conn, kept) is not None
        assert await keys.authenticate(conn, gone) is None
        # the compatibility view follows the rebuilt table
        assert await conn.fetchval("SELECT count(*) FROM aimm_api_keys") == 3
    finally:
        await conn.close()


async def test_an_older_key_table_becomes_events(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            """
            CREATE TABLE aimm_api_keys (
                key_id text PRIMARY KEY, key_hash text NOT NULL UNIQUE, name text NOT NULL,
                principal text NOT NULL, roles text[] NOT NULL, agent_id text,
                created_at timestamptz NOT NULL DEFAULT now(), revoked_at timestamptz
            )
            """
        )
        old, revoked = "aimm_old-admin-key-0123456789", "aimm_old-revoked-key-0123456789"
        for key, revoked_at in ((old, None), (revoked, datetime(2024, 1, 1, tzinfo=UTC))):
            digest = keys.hash_key(key)
            await conn.execute(
                "INSERT INTO aimm_api_keys (key_id, key_hash, name, principal, roles, revoked_at) "
                "VALUES ($1, $2, 'n', 'first-admin', '{admin}', $3)",
                digest[:12],
                digest,
                revoked_at,
            )
    finally:
        await conn.close()
    await migrate(database_url)
    await migrate(database_url)  # idempotent
    conn = await asyncpg.connect(database_url)
    try:
        principal = await keys.authenticate(conn, old)
        assert principal is not None and principal.name == "first-admin"
        assert await keys.authenticate(conn, revoked) is None
        topics = [r[0] for r in await conn.fetch("SELECT topic FROM registry_events")]
        assert sorted(t.rpartition(":")[2] for t in topics) == [
            "ApiKey.Created",
            "ApiKey.Created",
            "ApiKey.Revoked",
        ]
        assert await conn.fetchval("SELECT to_regclass('aimm_api_keys_legacy')") is None
    finally:
        await conn.close()
