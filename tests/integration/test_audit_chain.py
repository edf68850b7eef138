"""The audit hash chain over real logs: intact logs verify, every kind of tampering is found."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import UUID, uuid4

import asyncpg
import pytest
from eventsourcing.persistence import IntegrityError

from application.contexts import Contexts
from domain.base import Aggregate
from domain.claims import UniqueClaim
from domain.metadata import acting_as
from domain.registry.model import Model
from infrastructure.postgres import create_pool, eventsourcing_env
from infrastructure.schema import migrate
from infrastructure.wiring import build_contexts
from projections.audit_chain import (
    GENESIS,
    AuditChain,
    ContextVerification,
    Verification,
    canonical,
    link,
    verify,
)
from projections.projector import Projector


@dataclass
class Logs:
    url: str
    contexts: Contexts
    pool: asyncpg.Pool

    async def save(self, context: str, *aggregates: Aggregate) -> None:
        def save() -> None:
            with acting_as("alice", "corr-chain"):
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

    async def verify(self, context: str | None = None) -> Verification:
        async with self.pool.acquire() as conn:
            return await verify(conn, context)

    def by_context(self, report: Verification) -> dict[str, ContextVerification]:
        return {c.context: c for c in report.contexts}


@pytest.fixture
async def logs(database_url: str) -> AsyncIterator[Logs]:
    await migrate(database_url)
    contexts = await asyncio.to_thread(build_contexts, eventsourcing_env(database_url))
    pool = await create_pool(database_url, max_size=4)
    try:
        logs = Logs(database_url, contexts, pool)
        model = Model.register(
            name="lstm", kind="ml", task="forecast", description="v1", owner="o", tags=[]
        )
        await logs.save("registry", model)
        model.update_details(description="v2")
        await logs.save("registry", model)
        await logs.claims("registry", 4)  # registry: positions 1..6
        await logs.claims("training", 3)  # training: positions 1..3
        await logs.project()
        yield logs
    finally:
        await pool.close()
        await asyncio.to_thread(contexts.close)


def test_each_link_is_sha256_of_the_previous_hash_and_the_length_prefixed_fields() -> None:
    """Pins the chain's formula, so an auditor can recompute it with any sha256 tool."""
    aggregate_id = UUID("00000000-0000-0000-0000-000000000001")

    def field(data: bytes) -> bytes:
        return len(data).to_bytes(8, "big") + data

    expected = (
        field(b"registry")
        + field((7).to_bytes(8, "big"))
        + field(aggregate_id.bytes)
        + field((2).to_bytes(8, "big"))
        + field(b"m:T")
        + field(b'{"a":1}')
    )
    assert canonical("registry", 7, aggregate_id, 2, "m:T", b'{"a":1}') == expected
    assert GENESIS == bytes(32)
    assert link(GENESIS, expected) == hashlib.sha256(bytes(32) + expected).digest()


async def test_an_untouched_log_verifies_with_counts(logs: Logs) -> None:
    report = await logs.verify()
    assert report.ok
    found = logs.by_context(report)
    assert set(found) == {"registry", "training", "predictions", "memory", "assistant"}
    registry, training, memory = found["registry"], found["training"], found["memory"]
    assert (registry.verified, registry.chained, registry.unchained) == (6, 6, 0)
    assert registry.head_position == 6 and len(registry.head_hash) == 64
    assert (training.verified, training.unchained) == (3, 0)
    assert (memory.verified, memory.head_hash) == (0, None)


async def test_the_stored_chain_matches_an_independent_recomputation(logs: Logs) -> None:
    async with logs.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM registry_events ORDER BY notification_id"
        )
        chain = await conn.fetch(
            "SELECT position, prev_hash, hash FROM rm_audit_chain WHERE context = 'registry' "
            "ORDER BY position"
        )
    prev = bytes(32)
    for row, stored in zip(rows, chain, strict=True):
        parts = [
            b"registry",
            row[0].to_bytes(8, "big"),
            row[1].bytes,
            row[2].to_bytes(8, "big"),
            row[3].encode(),
            row[4],
        ]
        digest = hashlib.sha256(
            prev + b"".join(len(p).to_bytes(8, "big") + p for p in parts)
        ).digest()
        assert (stored["position"], bytes(stored["prev_hash"]), bytes(stored["hash"])) == (
            row[0],
            prev,
            digest,
        )
        prev = digest


async def test_events_not_projected_yet_are_counted_not_judged(logs: Logs) -> None:
    await logs.claims("registry", 2)
    report = await logs.verify("registry")
    assert report.ok
    (registry,) = report.contexts
    assert (registry.verified, registry.unchained) == (6, 2)
    await logs.project()
    (registry,) = (await logs.verify("registry")).contexts
    assert (registry.verified, registry.unchained, registry.head_position) == (8, 0, 8)


async def test_an_updated_stored_state_is_found_at_its_position(logs: Logs) -> None:
    status = await logs.execute(
        "UPDATE registry_events SET state = convert_to("
        "  replace(convert_from(state, 'UTF8'), '\"v2\"', '\"v3\"'), 'UTF8') "
        "WHERE notification_id = 2 AND position('\"v2\"' in convert_from(state, 'UTF8')) > 0"
    )
    assert status == "UPDATE 1"
    report = await logs.verify()
    assert not report.ok
    registry = logs.by_context(report)["registry"]
    assert registry.broken is not None
    assert (registry.broken.position, registry.broken.kind) == (2, "changed")
    assert registry.verified == 1
    assert logs.by_context(report)["training"].ok
    assert (await logs.verify("training")).ok


async def test_an_updated_topic_is_found_too(logs: Logs) -> None:
    assert (
        await logs.execute(
            "UPDATE registry_events SET topic = topic || 'x' WHERE notification_id = 5"
        )
        == "UPDATE 1"
    )
    (registry,) = (await logs.verify("registry")).contexts
    assert registry.broken is not None
    assert (registry.broken.position, registry.broken.kind) == (5, "changed")


async def test_a_deleted_event_is_found_at_its_position(logs: Logs) -> None:
    assert await logs.execute("DELETE FROM registry_events WHERE notification_id = 4") == "DELETE 1"
    (registry,) = (await logs.verify("registry")).contexts
    assert registry.broken is not None
    assert (registry.broken.position, registry.broken.kind) == (4, "removed")
    assert registry.verified == 3


async def test_a_deleted_newest_event_is_found(logs: Logs) -> None:
    assert await logs.execute("DELETE FROM training_events WHERE notification_id = 3") == "DELETE 1"
    report = await logs.verify()
    training = logs.by_context(report)["training"]
    assert training.broken is not None
    assert (training.broken.position, training.broken.kind) == (3, "removed")
    assert logs.by_context(report)["registry"].ok


async def test_a_swapped_pair_is_found_as_reordered_at_the_first_of_the_two(logs: Logs) -> None:
    async with logs.pool.acquire() as conn, conn.transaction():
        for old, new in ((2, -1), (5, 2), (-1, 5)):
            await conn.execute(
                "UPDATE registry_events SET notification_id = $2 WHERE notification_id = $1",
                old,
                new,
            )
    (registry,) = (await logs.verify("registry")).contexts
    assert registry.broken is not None
    assert (registry.broken.position, registry.broken.kind) == (2, "reordered")
    assert "position 5" in registry.broken.detail
    assert registry.verified == 1


async def test_an_event_forged_into_a_gap_of_the_log_is_found(logs: Logs) -> None:
    taken = UniqueClaim.claim("names", "taken", "a")
    await logs.save("training", taken)  # position 4
    with pytest.raises(IntegrityError):  # a refused save burns position 5
        await logs.save("training", UniqueClaim.claim("names", "taken", "b"))
    await logs.claims("training", 1)  # position 6
    await logs.project()
    assert (await logs.verify("training")).ok
    async with logs.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT topic, state FROM training_events WHERE notification_id = 6"
        )
        await conn.execute(
            "INSERT INTO training_events (originator_id, originator_version, topic, state, "
            "notification_id) VALUES ($1, 1, $2, $3, 5)",
            uuid4(),
            row["topic"],
            row["state"],
        )
    (training,) = (await logs.verify("training")).contexts
    assert training.broken is not None
    assert (training.broken.position, training.broken.kind) == (5, "inserted")


async def test_a_rewritten_link_of_the_chain_itself_is_reported_as_such(logs: Logs) -> None:
    await logs.execute(
        "UPDATE rm_audit_chain SET hash = sha256(hash) WHERE context = 'registry' AND position = 3"
    )
    (registry,) = (await logs.verify("registry")).contexts
    assert registry.broken is not None
    assert (registry.broken.position, registry.broken.kind) == (3, "chain_altered")


async def test_an_unknown_context_is_refused(logs: Logs) -> None:
    with pytest.raises(ValueError, match="context must be one of"):
        await logs.verify("nope")


async def run_cli(url: str, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMM_")}
    env["AIMM_DATABASE_URL"] = url
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api.cli",
        "audit",
        "verify",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_the_cli_exits_zero_on_an_intact_log_and_one_on_a_broken_one(logs: Logs) -> None:
    code, out = await run_cli(logs.url)
    assert code == 0, out
    assert "registry" in out and "6 verified" in out and "BROKEN" not in out
    await logs.execute("DELETE FROM registry_events WHERE notification_id = 2")
    code, out = await run_cli(logs.url, "--context", "training")
    assert code == 0, out
    code, out = await run_cli(logs.url)
    assert code == 1, out
    assert "BROKEN" in out and "position 2" in out and "removed" in out
    code, out = await run_cli(logs.url, "--context", "nope")
    assert code == 2 and "context must be one of" in out
