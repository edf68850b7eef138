"""Unreadable stored data: an event whose JSON is corrupt, an artifact whose bytes are.

Each is named in a clear problem (503 problem+json: context, position, aggregate and
version; or the artifact's key) by the reads that need it, and by no other; the projector
halts that log at the event and records why, without crash-looping or stopping the other
logs; the Kafka relay dead-letters it and moves on, and ``aimm kafka dead-letters
--retry`` publishes it once repaired.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner

from api.cli import main
from application.ports import ArtifactIntegrityError
from domain.claims import UniqueClaim
from domain.metadata import acting_as
from infrastructure.kafka_relay import KafkaRelay, dead_letters, relay_positions
from infrastructure.postgres import create_pool
from projections.audit import read_checked
from projections.catalog import all_projections
from projections.events import UnreadableEventError, event_id, read_events
from projections.projector import Projector
from tests.helpers import Api, running_api
from tests.integration.test_kafka_relay import by_aggregate, event_ids, ids_of, read_topic

MODELS = "/api/v1/ai/models"
EVENTS = "/api/v1/audit/events"
CORRUPT = b'{"timestamp": {"_type_": "datetime_iso", "_data_": "2026-'  # cut off mid-write


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    async with running_api(database_url, projector=False) as client:
        yield client


@pytest.fixture
async def pool(api: Api) -> AsyncIterator[asyncpg.Pool]:
    pg = await create_pool(api.url, max_size=4)
    yield pg
    await pg.close()


async def register(api: Api, name: str) -> str:
    response = await api.client.post(
        MODELS,
        json={"name": name, "kind": "ml", "description": "first"},
        headers={**api.auth("operator"), "Idempotency-Key": name},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def claim_in(api: Api, context: str) -> int:
    """Append one event to another context's log (its position)."""
    app = api.client.app.state.contexts[context]

    def save() -> int:
        with acting_as("system-test", "corr-other"):
            recordings = app.save(UniqueClaim.claim("fault-test", uuid.uuid4().hex, "x"))
        return max(r.notification.id for r in recordings)

    return await asyncio.to_thread(save)


async def stored_row(pool: asyncpg.Pool, aggregate_id: str, version: int) -> asyncpg.Record:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT notification_id, state FROM registry_events "
            "WHERE originator_id = $1 AND originator_version = $2",
            uuid.UUID(aggregate_id),
            version,
        )
    assert row is not None
    return row


async def set_state(pool: asyncpg.Pool, position: int, state: bytes) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE registry_events SET state = $2 WHERE notification_id = $1", position, state
        )


def unreadable_problem(response: Any, aggregate_id: str, position: int) -> dict[str, Any]:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"] == "urn:aimm:problem:unreadable-event"
    assert (body["context"], body["position"]) == ("registry", position)
    assert (body["aggregate_id"], body["aggregate_version"]) == (aggregate_id, 1)
    for part in ("registry", f"position {position}", aggregate_id, "version 1", "cannot be read"):
        assert part in body["detail"]
    return body


async def test_a_corrupt_event_is_named_by_the_reads_that_need_it_and_by_no_other(
    api: Api, pool: asyncpg.Pool
) -> None:
    bad = await register(api, "corrupt-me")
    good = await register(api, "keep-me")
    await claim_in(api, "memory")
    await Projector(pool, all_projections()).catch_up()  # indexed and chained while intact
    row = await stored_row(pool, bad, 1)
    await set_state(pool, row["notification_id"], CORRUPT)

    auditor = api.auth("auditor")
    unreadable_problem(await api.client.get(EVENTS, headers=auditor), bad, row["notification_id"])
    unreadable_problem(
        await api.client.get(f"/api/v1/audit/aggregates/{bad}", headers=auditor),
        bad,
        row["notification_id"],
    )
    # Unrelated reads: another aggregate, another context, the read models, health.
    page = await api.client.get(EVENTS, params={"aggregate_id": good}, headers=auditor)
    assert page.status_code == 200, page.text
    assert {e["aggregate_id"] for e in page.json()["items"]} == {good}
    other = await api.client.get(EVENTS, params={"context": "memory"}, headers=auditor)
    assert other.status_code == 200 and len(other.json()["items"]) == 1
    history = await api.client.get(f"/api/v1/audit/aggregates/{good}", headers=auditor)
    assert history.status_code == 200 and history.json()["version"] == 1
    models = await api.client.get(MODELS, headers=api.auth("viewer"))
    assert models.status_code == 200
    assert {m["id"] for m in models.json()["items"]} == {bad, good}
    assert (await api.client.get("/health/live")).status_code == 200
    # A command on the aggregate loads it from its events: 503 naming the event, not a 500;
    # the same command on another aggregate goes through.
    for model_id, status in ((bad, 503), (good, 200)):
        changed = await api.client.patch(
            f"{MODELS}/{model_id}", json={"description": "again"}, headers=api.auth("operator")
        )
        assert changed.status_code == status, changed.text
        if status == 503:
            assert changed.json()["type"] == "urn:aimm:problem:unreadable-event"
            assert model_id in changed.json()["detail"] and "version 1" in changed.json()["detail"]
    # A rebuild stops at the event with a message naming it, and leaves the read models
    # in use as they were.
    rebuild = ["projections", "rebuild", "--projection", "registry_models"]
    rebuilt = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "api.cli", *rebuild],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("AIMM_")},
             "AIMM_DATABASE_URL": api.url},
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert rebuilt.returncode == 1, rebuilt.stdout + rebuilt.stderr
    assert f"position {row['notification_id']}" in rebuilt.stderr and bad in rebuilt.stderr
    assert "Traceback" not in rebuilt.stderr
    still = await api.client.get(MODELS, headers=api.auth("viewer"))
    assert {m["id"] for m in still.json()["items"]} == {bad, good}
    # verify hashes the stored bytes without decoding them: it reports the change.
    report = await api.client.get("/api/v1/audit/verify", headers=auditor)
    assert report.status_code == 200, report.text
    registry = next(c for c in report.json()["contexts"] if c["context"] == "registry")
    assert registry["broken"]["kind"] == "changed"
    assert registry["broken"]["position"] == row["notification_id"]


async def test_the_projector_halts_that_log_at_a_corrupt_event_records_it_and_resumes(
    api: Api, pool: asyncpg.Pool
) -> None:
    first = await register(api, "before")
    bad = await register(api, "unprojected")
    after = await register(api, "after")
    memory_position = await claim_in(api, "memory")
    row = await stored_row(pool, bad, 1)
    original = bytes(row["state"])
    await set_state(pool, row["notification_id"], CORRUPT)

    projector = Projector(pool, all_projections())
    await projector.setup()
    await projector.catch_up()  # no exception: the log halts, the others go on
    await projector.catch_up()  # and again: still no exception, the fault kept once
    async with pool.acquire() as conn:
        faults = await conn.fetch("SELECT * FROM aimm_projection_faults")
        positions = {
            (r["projection"], r["context"]): r["position"]
            for r in await conn.fetch("SELECT * FROM aimm_projection_positions")
        }
        prefix, fault = await read_checked(conn, "registry", 0, 100)
    assert isinstance(fault, UnreadableEventError)  # the batch ends at the bad row, named
    assert prefix and all(e.position < row["notification_id"] for e in prefix)
    assert (fault.position, str(fault.aggregate_id), fault.version) == (
        row["notification_id"],
        bad,
        1,
    )
    assert [
        (f["context"], f["position"], str(f["aggregate_id"]), f["version"]) for f in faults
    ] == [("registry", row["notification_id"], bad, 1)]
    assert faults[0]["reason"]  # the decoder's own words
    for (_, context), position in positions.items():
        if context == "registry":
            assert position == prefix[-1].position  # everything before it applied
        elif context == "memory":
            assert position == memory_position
    models = await api.client.get(MODELS, headers=api.auth("viewer"))
    assert {m["id"] for m in models.json()["items"]} == {first}  # halted, not skipped

    await set_state(pool, row["notification_id"], original)  # the operator repairs it
    await projector.catch_up()
    async with pool.acquire() as conn:
        assert await conn.fetch("SELECT * FROM aimm_projection_faults") == []
    models = await api.client.get(MODELS, headers=api.auth("viewer"))
    assert {m["id"] for m in models.json()["items"]} == {first, bad, after}


@pytest.mark.kafka
async def test_the_relay_dead_letters_a_corrupt_event_and_the_cli_republishes_it(
    api: Api, pool: asyncpg.Pool, kafka_bootstrap: str
) -> None:
    bad = await register(api, "relay-corrupt")
    await register(api, "relay-after")
    row = await stored_row(pool, bad, 1)
    original = bytes(row["state"])
    await set_state(pool, row["notification_id"], CORRUPT)
    prefix = f"unreadable-{uuid.uuid4().hex[:8]}"
    relay = KafkaRelay(pool, kafka_bootstrap, contexts=("registry",), topic_prefix=prefix)
    await relay.setup()
    try:
        await relay.catch_up()
    finally:
        await relay.close()
    async with pool.acquire() as conn:
        letters = await dead_letters(conn)
        head = await conn.fetchval("SELECT max(notification_id) FROM registry_events")
        assert (await relay_positions(conn))["registry"] == head  # moved past it
    assert [(d.context, d.position, str(d.aggregate_id), d.type) for d in letters] == [
        ("registry", row["notification_id"], bad, None)
    ]
    assert letters[0].reason.startswith("unreadable stored event")
    assert letters[0].topic == f"{prefix}.registry"

    await set_state(pool, row["notification_id"], original)  # the operator repairs it
    env = {"AIMM_DATABASE_URL": api.url, "AIMM_KAFKA_BOOTSTRAP": kafka_bootstrap}
    # asyncio.run inside the commands needs a thread without a running loop
    listed = await asyncio.to_thread(CliRunner(env=env).invoke, main, ["kafka", "dead-letters"])
    assert listed.exit_code == 1, listed.output  # unresolved ones: exit 1
    assert str(row["notification_id"]) in listed.output and bad[:8] in listed.output
    retried = await asyncio.to_thread(
        CliRunner(env=env).invoke, main, ["kafka", "dead-letters", "--retry"]
    )
    assert retried.exit_code == 0, retried.output
    assert "republished 1, still failing 0" in retried.output
    async with pool.acquire() as conn:
        assert await dead_letters(conn) == []
        (resolved,) = await dead_letters(conn, include_resolved=True)
        log = await read_events(conn, "registry", 0, 100)
    assert resolved.resolved_at is not None and resolved.type == "Model.Registered"
    expected = event_ids(log)
    records = await asyncio.to_thread(read_topic, kafka_bootstrap, f"{prefix}.registry", expected)
    # every event once (the repaired one by the retry), each aggregate's in log order
    assert Counter(ids_of(records)) == Counter(expected)
    assert by_aggregate(
        [(r.key.decode(), i) for r, i in zip(records, ids_of(records), strict=True)]
    ) == (by_aggregate([(str(e.aggregate_id), str(event_id(e))) for e in log]))


async def test_a_corrupt_artifact_is_named_on_download_and_by_the_store(
    api: Api, pool: asyncpg.Pool
) -> None:
    key = "sha256:" + hashlib.sha256(b"the real content").hexdigest()
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO aimm_artifacts (content_hash, media_type, size_bytes, data) "
            "VALUES ($1, 'application/octet-stream', 16, $2)",
            key,
            b"\x00not zlib at all",
        )
    response = await api.client.get(f"/api/v1/ml/artifacts/{key}", headers=api.auth("viewer"))
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == "urn:aimm:problem:unreadable-artifact"
    assert key in body["detail"] and "corrupt" in body["detail"]
    # An unrelated read still answers.
    assert (await api.client.get(MODELS, headers=api.auth("viewer"))).status_code == 200

    store = api.client.app.state.contexts.training.artifacts  # the worker's port
    with pytest.raises(ArtifactIntegrityError, match=key):
        await asyncio.to_thread(store.get, key)
