"""Signed checkpoints of the audit chain: a rewrite of both the log and its chain is caught.

The chain alone cannot catch someone who changes a stored event and then recomputes
the chain (the attack is shown to pass plain ``verify`` first); a checkpoint signed with
a key kept outside the database can. Real PostgreSQL, the real ``aimm`` command line.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest

from application.contexts import Contexts
from domain.base import Aggregate
from domain.claims import UniqueClaim
from domain.metadata import acting_as
from domain.registry.model import Model
from infrastructure import audit_checkpoint, keys
from infrastructure.postgres import create_pool, eventsourcing_env
from infrastructure.schema import migrate
from infrastructure.wiring import build_contexts
from projections.audit_chain import AuditChain, verify
from projections.projector import Projector


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


@dataclass
class Logs:
    url: str
    contexts: Contexts
    pool: asyncpg.Pool

    async def save(self, context: str, *aggregates: Aggregate) -> None:
        def save() -> None:
            with acting_as("alice", "corr-checkpoint"):
                self.contexts[context].save(*aggregates)

        await asyncio.to_thread(save)

    async def claims(self, context: str, count: int) -> None:
        for _ in range(count):
            await self.save(context, UniqueClaim.claim("test", uuid4().hex, "owner"))

    async def project(self) -> None:
        await Projector(self.pool, [AuditChain()]).catch_up()

    async def execute(self, statement: str, *args: object) -> str:
        async with self.pool.acquire() as conn:
            status: str = await conn.execute(statement, *args)
        return status

    async def recompute_chain(self, context: str) -> None:
        """What an attacker with write access does after editing the log: rehash it."""
        await self.execute("DELETE FROM rm_audit_chain WHERE context = $1", context)
        await self.execute(
            "UPDATE aimm_projection_positions SET position = 0 "
            "WHERE projection = 'audit_chain' AND context = $1",
            context,
        )
        await self.project()

    async def sign(self, key_file: Path) -> dict[str, object]:
        private = audit_checkpoint.load_signing_key(key_file)
        async with self.pool.acquire() as conn:
            return await audit_checkpoint.sign_heads(conn, private)

    async def check(self, body: dict[str, object]) -> audit_checkpoint.CheckpointReport:
        async with self.pool.acquire() as conn:
            return await audit_checkpoint.check(conn, body)


@pytest.fixture
async def logs(database_url: str) -> AsyncIterator[Logs]:
    await migrate(database_url)
    contexts = await asyncio.to_thread(build_contexts, eventsourcing_env(database_url))
    pool = await create_pool(database_url, max_size=4)
    try:
        logs = Logs(database_url, contexts, pool)
        model = Model.register(
            name="lstm", kind="ml", task="forecast", description="first-v1", owner="o", tags=[]
        )
        await logs.save("registry", model)  # registry position 1
        await logs.claims("registry", 3)  # 2..4
        async with pool.acquire() as conn:
            await keys.create_key(conn, roles=["admin"], name="ops", created_by="alice")  # 5
        await logs.claims("training", 2)
        await logs.project()
        yield logs
    finally:
        await pool.close()
        await asyncio.to_thread(contexts.close)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "signing.pem"
    audit_checkpoint.generate_key(path)
    return path


def public_of(key_file: Path) -> Path:
    return key_file.with_name(key_file.name + ".pub")


def write(tmp_path: Path, document: dict[str, object], name: str = "cp.json") -> Path:
    path = tmp_path / name
    audit_checkpoint.save(document, path)
    return path


async def test_the_cli_makes_keys_signs_heads_and_verifies_against_them(
    logs: Logs, tmp_path: Path
) -> None:
    key = tmp_path / "audit.pem"
    made = aimm(logs.url, "audit", "keygen", "--out", str(key))
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key.read_bytes() and b"PUBLIC KEY" in public_of(key).read_bytes()
    assert aimm(logs.url, "audit", "keygen", "--out", str(key)).returncode != 0  # no overwrite

    out = tmp_path / "checkpoint.json"
    signed = aimm(logs.url, "audit", "checkpoint", "--key-file", str(key), "--out", str(out))
    assert signed.returncode == 0, signed.stderr
    document = json.loads(out.read_text())
    heads = {h["context"]: h for h in document["heads"]}
    assert set(heads) == {"registry", "training"}  # contexts with an empty log have no head
    assert heads["registry"]["position"] == 5 and len(heads["registry"]["hash"]) == 64
    assert "PRIVATE" not in out.read_text()

    args = ("audit", "verify", "--checkpoint", str(out), "--public-key", str(public_of(key)))
    ok = aimm(logs.url, *args, "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    report = json.loads(ok.stdout)
    assert report["ok"] and all(h["ok"] for h in report["checkpoint"])

    # the rewrite-both attack: change an event before the head, rehash the whole chain
    await logs.execute(
        "UPDATE registry_events SET state = convert_to(replace(convert_from(state, 'UTF8'), "
        "'first-v1', 'first-v0'), 'UTF8') WHERE notification_id = 1"
    )
    await logs.recompute_chain("registry")
    assert aimm(logs.url, "audit", "verify").returncode == 0  # the chain alone is fooled
    caught = aimm(logs.url, *args)
    assert caught.returncode == 1
    assert "registry" in caught.stdout and "REWRITTEN" in caught.stdout
    assert "rewritten after the checkpoint" in caught.stderr

    needs_both = aimm(logs.url, "audit", "verify", "--checkpoint", str(out))
    assert needs_both.returncode == 2 and "--public-key" in needs_both.stderr


async def test_a_log_that_grew_after_the_checkpoint_still_verifies(
    logs: Logs, key_file: Path, tmp_path: Path
) -> None:
    body = audit_checkpoint.read(write(tmp_path, await logs.sign(key_file)), public_of(key_file))
    await logs.claims("registry", 3)
    await logs.claims("memory", 1)
    async with logs.pool.acquire() as conn:
        await keys.revoke_key(conn, (await keys.list_keys(conn))[0].key_id, revoked_by="alice")
    await logs.project()
    report = await logs.check(body)
    assert report.ok
    assert {(h.context, h.position) for h in report.heads} == {("registry", 5), ("training", 2)}


@pytest.mark.parametrize("position", [1, 5])
async def test_rewriting_log_and_chain_at_or_before_a_head_is_caught(
    logs: Logs, key_file: Path, tmp_path: Path, position: int
) -> None:
    body = audit_checkpoint.read(write(tmp_path, await logs.sign(key_file)), public_of(key_file))
    # at 5: the key's creation, rewritten to name someone else as its creator
    await logs.execute(
        "UPDATE registry_events SET state = convert_to(replace(replace(convert_from(state, "
        "'UTF8'), 'first-v1', 'first-v0'), '\"alice\"', '\"mallory\"'), 'UTF8') "
        "WHERE notification_id = $1",
        position,
    )
    await logs.recompute_chain("registry")
    async with logs.pool.acquire() as conn:
        assert (await verify(conn)).ok  # the recomputed chain matches the rewritten log
    report = await logs.check(body)
    assert not report.ok
    (bad,) = [h for h in report.heads if not h.ok]
    assert (bad.context, bad.position) == ("registry", 5) and bad.found not in (None, bad.expected)


async def test_removing_checkpointed_events_and_rehashing_is_caught(
    logs: Logs, key_file: Path, tmp_path: Path
) -> None:
    body = audit_checkpoint.read(write(tmp_path, await logs.sign(key_file)), public_of(key_file))
    await logs.execute("DELETE FROM registry_events WHERE notification_id >= 4")
    await logs.recompute_chain("registry")
    report = await logs.check(body)
    assert report.verification.ok and not report.ok
    (bad,) = [h for h in report.heads if not h.ok]
    assert bad.found is None  # no link at the checkpointed position any more


async def test_a_forged_or_foreign_checkpoint_is_refused(
    logs: Logs, key_file: Path, tmp_path: Path
) -> None:
    document = await logs.sign(key_file)
    heads = document["heads"]
    assert isinstance(heads, list)
    forged = {**document, "heads": [{**heads[0], "hash": "00" * 32}, *heads[1:]]}
    with pytest.raises(audit_checkpoint.CheckpointError, match="signature"):
        audit_checkpoint.read(write(tmp_path, forged, "forged.json"), public_of(key_file))

    other = tmp_path / "other.pem"
    audit_checkpoint.generate_key(other)
    # a checkpoint signed with another key (which names its own public key) is refused
    with pytest.raises(audit_checkpoint.CheckpointError, match="signature"):
        audit_checkpoint.read(write(tmp_path, await logs.sign(other)), public_of(key_file))
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(audit_checkpoint.CheckpointError, match="cannot read"):
        audit_checkpoint.read(tmp_path / "junk.json", public_of(key_file))
    with pytest.raises(audit_checkpoint.CheckpointError, match="private key"):
        audit_checkpoint.load_signing_key(public_of(key_file))


async def test_a_broken_chain_is_never_checkpointed(logs: Logs, key_file: Path) -> None:
    await logs.execute("DELETE FROM registry_events WHERE notification_id = 2")
    with pytest.raises(audit_checkpoint.CheckpointError, match="does not verify"):
        await logs.sign(key_file)
