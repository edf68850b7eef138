"""The Kafka relay: every context's log, published at least once to ``aimm.<context>``.

Dead letters. A record the broker refuses for what it *is* — too large, failing the
topic's schema, otherwise invalid (:data:`PERMANENT_RECORD_ERRORS`, all non-retriable
in Kafka's protocol) — would be refused again on every retry and block its log for
good. So when a batch fails with such an error, the relay sends the rest of that batch
one record at a time (a refused batch takes its good records down with it), and the
record refused *on its own* is written to ``kafka_dead_letters`` (context, position,
event id, aggregate and version, type, topic, reason, time) in the same transaction
that moves the relay's position past it; the log goes on. A stored event that cannot
be decoded (``projections.audit.UnreadableEventError``) is dead-lettered the same way,
without a type. Every other failure (broker away, timeouts, leadership changes) is
transient: the position stays, the relay backs off and sends the same records again.

``aimm kafka dead-letters`` lists them; ``--retry`` sends each again, alone, from the
log as it is stored now (after the operator fixed the topic's limits or the row) and
marks it resolved when the broker acknowledges it. A retried record reaches its topic
*after* later events of its aggregate: consumers that care about order compare the
envelope's ``aggregate_version``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

import asyncpg
import msgspec
from kafka import KafkaProducer
from kafka.errors import (
    CorruptRecordError,
    InvalidRecordError,
    InvalidTimestampError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    UnsupportedForMessageFormatError,
)

from application.contexts import CONTEXTS
from application.retry import run_async_until_stopped
from projections.audit import decode_checked, read_checked
from projections.events import (
    EVENT_ID_NAMESPACE,
    SELECT_COLUMNS,
    Event,
    UnreadableEventError,
    envelope,
    event_id,
    events_table,
)

log = logging.getLogger(__name__)

DEFAULT_TOPIC_PREFIX = "aimm"
DEFAULT_BATCH = 1000

POSITIONS_DDL = """
    CREATE TABLE IF NOT EXISTS aimm_relay_positions (
        context text PRIMARY KEY,
        position bigint NOT NULL DEFAULT 0,
        updated_at timestamptz NOT NULL DEFAULT now()
    )
"""

DEAD_LETTERS_DDL = """
    CREATE TABLE IF NOT EXISTS kafka_dead_letters (
        context text NOT NULL,
        position bigint NOT NULL,
        event_id uuid NOT NULL,
        aggregate_id uuid NOT NULL,
        aggregate_version bigint NOT NULL,
        type text,
        topic text NOT NULL,
        reason text NOT NULL,
        failed_at timestamptz NOT NULL DEFAULT now(),
        attempts integer NOT NULL DEFAULT 1,
        resolved_at timestamptz,
        PRIMARY KEY (context, position)
    )
"""

# Refusals of a record itself: sending the same bytes again is refused again.
PERMANENT_RECORD_ERRORS: tuple[type[KafkaError], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidRecordError,
    CorruptRecordError,
    InvalidTimestampError,
    UnsupportedForMessageFormatError,
)


def is_permanent(error: BaseException | None) -> bool:
    """Whether ``error`` refuses a record for good (see :data:`PERMANENT_RECORD_ERRORS`)."""
    return isinstance(error, PERMANENT_RECORD_ERRORS)


# One relay publishes at a time: a second one (say `aimm relay` started beside
# `aimm dev`) waits on this lock as a standby instead of doubling every record.
LEADER_LOCK = "aimm.kafka_relay"

# The producer settings the guarantees rest on; callers may tune the rest.
PRODUCER_CONFIG: dict[str, Any] = {
    "enable_idempotence": True,
    "acks": "all",
    # One request in flight per broker: a batch for a partition is never sent while an
    # earlier one for it is unanswered, so a failed batch cannot be overtaken by a later
    # one, even on a broker that does not check idempotent sequence numbers (tansu).
    "max_in_flight_requests_per_connection": 1,
    # A bounded delivery time lets flush() end with every future decided, so the relay
    # knows exactly which records were acknowledged before it tries again.
    "delivery_timeout_ms": 30_000,
    "request_timeout_ms": 10_000,
    "max_block_ms": 10_000,
    "bootstrap_timeout_ms": 10_000,
    "linger_ms": 5,
    "batch_size": 256 * 1024,
}

_encode = msgspec.json.Encoder().encode


def topic_for(context: str, prefix: str = DEFAULT_TOPIC_PREFIX) -> str:
    return f"{prefix}.{context}"


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One event as it is sent: keyed by aggregate so an aggregate stays in one partition."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def out_record(event: Event) -> OutRecord:
    return OutRecord(
        key=str(event.aggregate_id).encode(),
        value=_encode(envelope(event)),
        headers=[("event_id", str(event_id(event)).encode()), ("type", event.type.encode())],
    )


@dataclass(frozen=True, slots=True)
class Delivery:
    """How many records, counted from the first, the broker acknowledged; and why not more."""

    acknowledged: int
    error: BaseException | None = None


class PublishError(RuntimeError):
    """The broker did not acknowledge every record of a batch."""


class KafkaPublisher:
    """The synchronous side: a kafka-python producer, only ever called from worker threads.

    A producer that failed any record is closed and replaced on the next batch: the new
    one starts clean (new producer id, new sequence numbers) instead of carrying the
    failed one's state.
    """

    def __init__(self, bootstrap: str, config: Mapping[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        self.config = {**PRODUCER_CONFIG, **(config or {})}
        self._producer: KafkaProducer | None = None

    def _ensure(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(bootstrap_servers=self.bootstrap, **self.config)
        return self._producer

    def publish(self, topic: str, records: Sequence[OutRecord]) -> Delivery:
        """Send ``records`` in order, wait for the broker's answers, report the acked prefix."""
        error: BaseException | None = None
        futures: list[Any] = []
        try:
            producer = self._ensure()
            for record in records:
                futures.append(
                    producer.send(topic, key=record.key, value=record.value, headers=record.headers)
                )
        except KafkaError as exc:  # no broker at start, or metadata never came (max_block_ms)
            error = exc
        if self._producer is not None:
            # Bounded wait: delivery_timeout_ms decides every future well before this.
            timeout = self.config["delivery_timeout_ms"] / 1000 + 5
            try:
                self._producer.flush(timeout=timeout)
            except KafkaError as exc:
                error = error or exc
        acknowledged = 0
        for future in futures:
            if not future.succeeded():
                error = error or future.exception or KafkaTimeoutError("record not acknowledged")
                break
            acknowledged += 1
        if error is not None:
            self.close()
        return Delivery(acknowledged, error)

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            close_producer(producer)


def close_producer(producer: KafkaProducer, timeout: float = 5) -> None:
    """Close ``producer`` for good, abandoning any record the broker never answered.

    kafka-python's ``close()`` flushes first and raises ``KafkaTimeoutError`` while a record
    is undecided, which a broker that stopped answering (alive, silent) keeps a record past
    ``delivery_timeout_ms``; the producer would then stay open, its I/O thread retrying
    for the life of the process, one more such thread for each of the relay's retries.
    Such a record was never counted as published (``publish`` reports the acknowledged
    prefix only) and is sent again by the next batch, so it is abandoned: the sender is
    closed without sending (kafka-python 3.0 offers no public call for that), which fails
    what it holds, and the close then completes.
    """
    try:
        producer.close(timeout=timeout)
    except KafkaTimeoutError:
        sender = producer._sender  # private: see above
        sender.force_close()
        sender.join(timeout)
        try:
            producer.close(timeout=timeout)
        except KafkaTimeoutError:
            log.warning("Kafka producer %s did not stop; its I/O thread is left running", sender)


async def setup(conn: asyncpg.Connection, contexts: Iterable[str] = CONTEXTS) -> None:
    """Create the positions table and a row per context (safe to run concurrently)."""
    async with conn.transaction():
        # Two relays starting together would race on CREATE TABLE IF NOT EXISTS.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('aimm.relay_setup', 0))")
        await conn.execute(POSITIONS_DDL)
        await conn.execute(DEAD_LETTERS_DDL)
        await conn.executemany(
            "INSERT INTO aimm_relay_positions (context) VALUES ($1) ON CONFLICT DO NOTHING",
            [(context,) for context in contexts],
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record the relay could not publish and moved past (``kafka_dead_letters``)."""

    context: str
    position: int
    event_id: UUID
    aggregate_id: UUID
    aggregate_version: int
    type: str | None
    topic: str
    reason: str
    failed_at: datetime
    attempts: int
    resolved_at: datetime | None


async def dead_letters(
    conn: asyncpg.Connection, *, context: str | None = None, include_resolved: bool = False
) -> list[DeadLetter]:
    """The dead letters, in (context, position) order; unresolved ones only by default."""
    rows = await conn.fetch(
        "SELECT context, position, event_id, aggregate_id, aggregate_version, type, topic, "
        "reason, failed_at, attempts, resolved_at FROM kafka_dead_letters "
        "WHERE ($1::text IS NULL OR context = $1) AND ($2 OR resolved_at IS NULL) "
        "ORDER BY context, position",
        context,
        include_resolved,
    )
    return [DeadLetter(**dict(row)) for row in rows]


async def record_dead_letter(  # noqa: PLR0913
    conn: asyncpg.Connection,
    context: str,
    position: int,
    aggregate_id: UUID,
    version: int,
    type_: str | None,
    topic: str,
    reason: str,
) -> None:
    """Insert (or, for a retried one, update) the dead letter of one stored event."""
    await conn.execute(
        "INSERT INTO kafka_dead_letters (context, position, event_id, aggregate_id, "
        "aggregate_version, type, topic, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
        "ON CONFLICT (context, position) DO UPDATE SET reason = excluded.reason, "
        "type = excluded.type, failed_at = now(), resolved_at = NULL, "
        "attempts = kafka_dead_letters.attempts + 1",
        context,
        position,
        uuid5(EVENT_ID_NAMESPACE, f"{aggregate_id}:{version}"),
        aggregate_id,
        version,
        type_,
        topic,
        reason,
    )


async def relay_positions(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch("SELECT context, position FROM aimm_relay_positions")
    return {row["context"]: row["position"] for row in rows}


class KafkaRelay:
    """Publishes every event of every context's log to ``<prefix>.<context>``.

    Delivery is **at least once**, in log order per aggregate. For each context the
    relay reads a batch past its stored position, sends each event's envelope (JSON,
    keyed by aggregate id, headers ``event_id`` and ``type``) through an idempotent
    producer with ``acks="all"``, waits until the broker has answered every record, and
    only then moves the position to the last record of the acknowledged prefix. So a
    record is never counted as published before the broker has it (nothing is lost),
    but a relay stopped between the acknowledgement and the position update, or a batch
    that failed half-way, sends some records again: consumers dedupe by ``event_id``
    (see ``infrastructure.kafka_consumer``). Kafka transactions are not used; the
    broker aimm is tested against does not enforce them.

    It wakes on the NOTIFY the event store sends for every insert, with a timer as a
    fallback, and backs off while the broker is unreachable. One relay leads at a time
    (a PostgreSQL advisory lock); others wait until it stops.
    """

    def __init__(  # noqa: PLR0913
        self,
        pool: asyncpg.Pool,
        bootstrap: str,
        *,
        contexts: Sequence[str] = CONTEXTS,
        topic_prefix: str = DEFAULT_TOPIC_PREFIX,
        batch_size: int = DEFAULT_BATCH,
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.pool = pool
        self.contexts = tuple(contexts)
        self.topic_prefix = topic_prefix
        self.batch_size = batch_size
        self.publisher = KafkaPublisher(bootstrap, producer_config)
        self.failures = 0  # failed publish attempts since start, for logs and tests
        self.dead_lettered = 0  # records moved to kafka_dead_letters since start
        self.last_error: BaseException | None = None
        self.leading = False  # holds the leader lock (inside run)
        self._wake = asyncio.Event()

    async def setup(self) -> None:
        async with self.pool.acquire() as conn:
            await setup(conn, self.contexts)

    async def step(self, context: str) -> int:
        """Publish one batch of ``context``'s log; returns how many events it moved past
        (published or dead-lettered).

        Raises :class:`PublishError` (after recording the acknowledged prefix) when the
        broker did not acknowledge the whole batch for a transient reason. Called outside
        :meth:`run`, it does not take the leader lock: the caller makes sure no other
        relay is running.
        """
        topic = topic_for(context, self.topic_prefix)
        async with self.pool.acquire() as conn:
            position = await conn.fetchval(
                "SELECT position FROM aimm_relay_positions WHERE context = $1", context
            )
            events, unreadable = await read_checked(conn, context, position, self.batch_size)
        if not events:
            if unreadable is None:
                return 0
            await self._dead_letter_unreadable(topic, unreadable)
            return 1
        records = [out_record(event) for event in events]
        delivery = await self._publish(topic, records)
        if delivery.acknowledged:
            await self._advance(context, events[delivery.acknowledged - 1].position)
        if delivery.error is None:
            return len(events)
        if not is_permanent(delivery.error):
            raise _publish_error(context, delivery, len(events), position)
        # A refused batch fails every record in it: find the one refused on its own.
        for event, record in zip(
            events[delivery.acknowledged :], records[delivery.acknowledged :], strict=True
        ):
            single = await self._publish(topic, [record])
            if single.acknowledged:
                await self._advance(context, event.position)
            elif is_permanent(single.error):
                await self._dead_letter(topic, event, single.error)
            else:
                raise _publish_error(context, single, 1, event.position - 1)
        return len(events)

    async def _publish(self, topic: str, records: Sequence[OutRecord]) -> Delivery:
        # kafka-python blocks; keep it off the event loop so NOTIFYs and stop stay live.
        return await asyncio.to_thread(self.publisher.publish, topic, records)

    async def _advance(self, context: str, position: int) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                "UPDATE aimm_relay_positions SET position = $2, updated_at = now() "
                "WHERE context = $1",
                context,
                position,
            )

    async def _dead_letter(self, topic: str, event: Event, error: BaseException | None) -> None:
        reason = f"the broker refused the record: {error!r}"
        await self._record_dead_letter(
            topic, event.context, event.position, event.aggregate_id, event.version, event.type,
            reason,
        )  # fmt: skip

    async def _dead_letter_unreadable(self, topic: str, fault: UnreadableEventError) -> None:
        await self._record_dead_letter(
            topic, fault.context, fault.position, fault.aggregate_id, fault.version, None,
            f"unreadable stored event: {fault.reason}",
        )  # fmt: skip

    async def _record_dead_letter(  # noqa: PLR0913
        self,
        topic: str,
        context: str,
        position: int,
        aggregate_id: UUID,
        version: int,
        type_: str | None,
        reason: str,
    ) -> None:
        """Write the dead letter and move past it, in one transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            await record_dead_letter(
                conn, context, position, aggregate_id, version, type_, topic, reason
            )
            await conn.execute(
                "UPDATE aimm_relay_positions SET position = $2, updated_at = now() "
                "WHERE context = $1",
                context,
                position,
            )
        self.dead_lettered += 1
        log.error(
            "Kafka relay: %s position %d (aggregate %s, version %d) dead-lettered to "
            "kafka_dead_letters and skipped: %s",
            context, position, aggregate_id, version, reason,
        )  # fmt: skip

    async def catch_up(self, stop: asyncio.Event | None = None) -> int:
        """Publish batches until every followed log is fully published (or ``stop``)."""
        total = 0
        # Checked between batches so a relay with a long backlog still stops promptly.
        while stop is None or not stop.is_set():
            done = 0
            for context in self.contexts:
                done += await self.step(context)
            total += done
            if done == 0:
                break
        return total

    async def run(
        self, stop: asyncio.Event, idle_timeout: float = 1.0, max_backoff: float = 10.0
    ) -> None:
        """Lead (or wait to), catch up, then follow the logs until ``stop`` is set.

        The database going away ends a session (and its leader lock, held by the
        session's connection); a new one starts with backoff (``application.retry``)
        and resumes from the stored positions."""
        await run_async_until_stopped(
            log, "Kafka relay", stop, lambda: self._session(stop, idle_timeout, max_backoff)
        )

    async def _session(self, stop: asyncio.Event, idle_timeout: float, max_backoff: float) -> None:
        await self.setup()
        conn = await self.pool.acquire()
        try:
            if not await self._lead(conn, stop):
                return
            for context in self.contexts:
                await conn.add_listener(events_table(context), self._on_notify)
            backoff = 0.5
            while not stop.is_set():
                self._wake.clear()
                try:
                    published = await self.catch_up(stop)
                    if published:
                        log.info("relayed %d events to Kafka", published)
                    backoff = 0.5
                except PublishError as exc:
                    self.failures += 1
                    self.last_error = exc
                    log.warning("Kafka relay: %s; retrying in %.1fs", exc, backoff)
                    # Only the timer may end a backoff: a NOTIFY must not hammer a dead broker.
                    await _wait(stop, None, backoff)
                    backoff = min(backoff * 2, max_backoff)
                    continue
                await _wait(stop, self._wake, idle_timeout)
        finally:
            try:
                for context in self.contexts:
                    await conn.remove_listener(events_table(context), self._on_notify)
                await conn.execute(
                    "SELECT pg_advisory_unlock(hashtextextended($1, 0))", LEADER_LOCK
                )
            except Exception:  # noqa: BLE001 - the connection may be gone with the database
                # A pooled connection must not go back still holding the leader lock. One
                # the server dropped is already back in the pool, closed, with no lock.
                with contextlib.suppress(asyncpg.InterfaceError):
                    conn.terminate()
            self.leading = False
            with contextlib.suppress(Exception):
                await self.pool.release(conn)
            await self.close()

    async def close(self) -> None:
        """Close the producer (``run`` does this itself when it ends)."""
        await asyncio.to_thread(self.publisher.close)

    async def _lead(self, conn: asyncpg.Connection, stop: asyncio.Event) -> bool:
        """Take the leader lock on ``conn``; False if stopped while waiting for it."""
        waiting_logged = False
        while not stop.is_set():
            if await conn.fetchval(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", LEADER_LOCK
            ):
                self.leading = True
                return True
            if not waiting_logged:
                log.info("another Kafka relay is running; standing by")
                waiting_logged = True
            await _wait(stop, None, 1.0)
        return False

    def _on_notify(self, *_: object) -> None:
        self._wake.set()


def _publish_error(context: str, delivery: Delivery, sent: int, after: int) -> PublishError:
    error = PublishError(
        f"{context}: broker acknowledged {delivery.acknowledged} of {sent} "
        f"records after position {after}: {delivery.error!r}"
    )
    error.__cause__ = delivery.error
    return error


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    republished: list[DeadLetter]
    still_failing: list[DeadLetter]


async def retry_dead_letters(
    pool: asyncpg.Pool,
    publisher: KafkaPublisher,
    *,
    context: str | None = None,
) -> RetryOutcome:
    """Send each unresolved dead letter again, alone, to the topic it was meant for, from
    the log as stored now; mark the acknowledged ones resolved, record the new reason of
    the others."""
    async with pool.acquire() as conn:
        letters = await dead_letters(conn, context=context)
    done: list[DeadLetter] = []
    failing: list[DeadLetter] = []
    for letter in letters:
        topic = letter.topic
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT {SELECT_COLUMNS} FROM {events_table(letter.context)} "
                "WHERE notification_id = $1",
                letter.position,
            )
            try:
                if row is None:
                    raise LookupError(f"the event at position {letter.position} is gone")
                event = decode_checked(letter.context, row)
            except (UnreadableEventError, LookupError) as exc:
                await record_dead_letter(
                    conn, letter.context, letter.position, letter.aggregate_id,
                    letter.aggregate_version, letter.type, topic, f"unreadable stored event: {exc}",
                )  # fmt: skip
                failing.append(letter)
                continue
        delivery = await asyncio.to_thread(publisher.publish, topic, [out_record(event)])
        async with pool.acquire() as conn:
            if delivery.acknowledged:
                await conn.execute(
                    "UPDATE kafka_dead_letters SET resolved_at = now(), type = $3, "
                    "attempts = attempts + 1 WHERE context = $1 AND position = $2",
                    letter.context,
                    letter.position,
                    event.type,
                )
                done.append(letter)
            else:
                await record_dead_letter(
                    conn, letter.context, letter.position, letter.aggregate_id,
                    letter.aggregate_version, event.type, topic,
                    f"the broker refused the record again: {delivery.error!r}",
                )  # fmt: skip
                failing.append(letter)
    return RetryOutcome(done, failing)


async def _wait(stop: asyncio.Event, wake: asyncio.Event | None, seconds: float) -> None:
    """Sleep up to ``seconds``, ending early when ``stop`` (or ``wake``) is set."""
    waiters = {asyncio.ensure_future(stop.wait())}
    if wake is not None:
        waiters.add(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
