"""The operator's command line against a real database: keys, projections, replay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import asyncpg
import polars as pl

from domain.metadata import acting_as
from infrastructure.postgres import eventsourcing_env
from infrastructure.wiring import build_contexts


def aimm(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMM_")}
    env["AIMM_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def write_models(url: str, names: list[str]) -> None:
    contexts = build_contexts(eventsourcing_env(url))
    try:
        with acting_as("cli-test", "cli"):
            for name in names:
                result = contexts.registry.register_model(
                    name=name, kind="ml", task="", description="", owner="o", tags=[],
                    respond=lambda m: (201, {"id": str(m.id)}),
                )  # fmt: skip
                contexts.registry.update_model(
                    UUID(result.value.body["id"]),
                    expected_version=1,
                    description="changed",
                    respond=lambda m: (200, {}),
                )
    finally:
        contexts.close()


async def test_keys_are_printed_once_stored_hashed_listed_and_revoked(database_url: str) -> None:
    created = aimm(
        database_url, "keys", "create", "--role", "agent", "--agent", "a-1", "--name", "bot"
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("aimm_")
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT key_id, key_hash, roles, agent_id FROM aimm_api_keys")
    finally:
        await conn.close()
    assert key not in row["key_hash"] and (row["roles"], row["agent_id"]) == (["agent"], "a-1")
    listed = aimm(database_url, "keys", "list")
    assert row["key_id"] in listed.stdout and key not in listed.stdout and "active" in listed.stdout
    assert aimm(database_url, "keys", "revoke", row["key_id"]).returncode == 0
    assert "revoked" in aimm(database_url, "keys", "list").stdout
    assert aimm(database_url, "keys", "revoke", row["key_id"]).returncode != 0
    refused = aimm(database_url, "keys", "create", "--role", "agent")
    assert refused.returncode != 0 and "--agent" in refused.stderr
    assert aimm(database_url, "keys", "create", "--role", "wizard").returncode != 0


async def test_rebuild_status_and_replay(database_url: str) -> None:
    assert aimm(database_url, "migrate").returncode == 0
    write_models(database_url, ["alpha", "beta"])
    cutoff = datetime.now(UTC).isoformat()
    write_models(database_url, ["gamma"])
    rebuilt = aimm(database_url, "projections", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "registry_models" in rebuilt.stdout and "audit_chain" not in rebuilt.stdout
    status = aimm(database_url, "projections", "status")
    assert status.returncode == 0 and "registry_models" in status.stdout
    conn = await asyncpg.connect(database_url)
    try:
        names = [r["name"] for r in await conn.fetch("SELECT name FROM rm_models ORDER BY name")]
        lag = await conn.fetchval(
            "SELECT max(p.position) FROM aimm_projection_positions p "
            "WHERE p.projection = 'registry_models'"
        )
        head = await conn.fetchval("SELECT max(notification_id) FROM registry_events")
    finally:
        await conn.close()
    assert names == ["alpha", "beta", "gamma"]
    assert lag == head
    replay = aimm(database_url, "replay", "--context", "registry")
    lines = [json.loads(line) for line in replay.stdout.splitlines()]
    assert [e["position"] for e in lines] == sorted(e["position"] for e in lines)
    assert {e["metadata"]["principal"] for e in lines} == {"cli-test"}
    until = aimm(database_url, "replay", "--context", "registry", "--until", cutoff)
    registered = [
        json.loads(line)["payload"]["name"]
        for line in until.stdout.splitlines()
        if json.loads(line)["type"] == "Model.Registered"
    ]
    assert registered == ["alpha", "beta"]
    assert aimm(database_url, "replay", "--context", "nowhere").returncode != 0
    assert aimm(database_url, "projections", "rebuild", "--as-of", "yesterday").returncode != 0


async def test_market_data_import_reads_csv_and_parquet_files(
    database_url: str, tmp_path: Path
) -> None:
    rows = [
        ("2024-01-02", 10.0, 11.0, 9.5, 10.5, 1000.0),
        ("2024-01-03", 10.5, 11.5, 10.0, 11.0, 1200.0),
    ]
    csv_file = tmp_path / "acme.csv"
    csv_file.write_text(
        "date,open,high,low,close,volume\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)
    )
    done = aimm(database_url, "market-data", "import", str(csv_file), "--ticker", "acme")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["new_dates"] == 2
    frame = pl.DataFrame(
        {name: [r[i] for r in rows] for i, name in enumerate(
            ("date", "open", "high", "low", "close", "volume"))}
    ).with_columns(pl.col("date").str.to_date())  # fmt: skip
    parquet = tmp_path / "acme.parquet"
    frame.write_parquet(parquet)
    same = aimm(database_url, "market-data", "import", str(parquet), "--ticker", "ACME")
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["changed"] is False  # identical rows record nothing
    frame.with_columns(pl.col("close") + 0.25).write_parquet(parquet)
    refused = aimm(database_url, "market-data", "import", str(parquet), "--ticker", "ACME")
    assert refused.returncode != 0
    assert "contradict" in refused.stderr


async def test_seed_adds_the_assistants_roles_once(database_url: str) -> None:
    first = aimm(database_url, "seed")
    assert first.returncode == 0, first.stderr
    assert "role trading-assistant added" in first.stdout
    conn = await asyncpg.connect(database_url)
    try:
        count = await conn.fetchval("SELECT count(*) FROM assistant_events")
        again = aimm(database_url, "seed")
        assert again.returncode == 0, again.stderr
        assert "all there" in again.stdout
        assert await conn.fetchval("SELECT count(*) FROM assistant_events") == count
    finally:
        await conn.close()
