"""Analytics consumers of the ``aimm.<context>`` topics: each event handled once, by event id."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
from kafka import KafkaConsumer
from kafka.structs import OffsetAndMetadata, TopicPartition

from application.contexts import CONTEXTS
from infrastructure.kafka_relay import DEFAULT_TOPIC_PREFIX, topic_for

# Offsets are committed by DedupingConsumer after the handler has run, never before.
CONSUMER_CONFIG: dict[str, Any] = {
    "auto_offset_reset": "earliest",
    "enable_auto_commit": False,
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
}

_decode = msgspec.json.Decoder(dict[str, Any]).decode


def analytics_consumer(
    bootstrap: str,
    group_id: str | None,
    *,
    contexts: Iterable[str] = CONTEXTS,
    topic_prefix: str = DEFAULT_TOPIC_PREFIX,
    **config: Any,
) -> KafkaConsumer:
    """A kafka-python consumer subscribed to the topics of ``contexts``."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, **{**CONSUMER_CONFIG, **config}
    )
    consumer.subscribe([topic_for(context, topic_prefix) for context in contexts])
    return consumer


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    """One record of an aimm topic, decoded: the envelope and where it was read."""

    event_id: str
    type: str
    key: str | None
    envelope: dict[str, Any]
    topic: str
    partition: int
    offset: int


def decode_record(record: Any) -> ReceivedEvent:
    envelope = _decode(record.value)
    headers = {name: value for name, value in (record.headers or [])}
    # The header lets a consumer route without decoding; the envelope is the fallback.
    event_id = headers.get("event_id", b"").decode() or envelope["event_id"]
    return ReceivedEvent(
        event_id=event_id,
        type=headers.get("type", b"").decode() or envelope["type"],
        key=record.key.decode() if record.key is not None else None,
        envelope=envelope,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
    )


class SeenEvents:
    """The ids of the last ``capacity`` events handled (oldest forgotten first).

    Why a bounded set in memory and not a table: the relay re-sends at most the one
    batch per context it had not recorded as acknowledged, so a duplicate follows its
    original within ``batch_size`` records of the same partition; a window far larger
    than that catches them all at no I/O cost. It does not survive a restart of the
    consumer: records handled after the last offset commit are handled again then.
    A consumer whose effect must not repeat even then keeps the event ids it applied
    in the same store and transaction as the effect itself.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, event_id: str) -> None:
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


class DedupingConsumer:
    """Polls a consumer and hands each event to ``handle`` once, dropping redeliveries.

    An event counts as handled, and its id as seen, only once ``handle`` has returned;
    offsets are committed after that (when the consumer has a group). If ``handle``
    raises, the records not yet handled are fetched again by the next poll.
    """

    def __init__(
        self,
        consumer: KafkaConsumer,
        handle: Callable[[ReceivedEvent], None],
        seen: SeenEvents | None = None,
    ) -> None:
        self.consumer = consumer
        self.handle = handle
        self.seen = seen if seen is not None else SeenEvents()
        self.handled = 0
        self.duplicates = 0
        self._commits = consumer.config.get("group_id") is not None

    def deliver(self, record: Any) -> bool:
        """Handle one record unless its event was seen; True if it was handled."""
        event = decode_record(record)
        if event.event_id in self.seen:
            self.duplicates += 1
            return False
        self.handle(event)
        self.seen.add(event.event_id)
        self.handled += 1
        return True

    def poll(self, timeout_ms: int = 1000, max_records: int | None = None) -> int:
        """One poll: handle what arrived, commit; returns how many records were read."""
        batches = self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        done: dict[TopicPartition, int] = {}  # partition -> next offset to read
        try:
            for partition, records in batches.items():
                for record in records:
                    self.deliver(record)
                    done[partition] = record.offset + 1
        except BaseException:
            # The consumer has moved past the whole poll; rewind what was not handled.
            for partition, records in batches.items():
                self.consumer.seek(partition, done.get(partition, records[0].offset))
            self._commit(done)
            raise
        self._commit(done)
        return sum(len(records) for records in batches.values())

    def run(self, stop: threading.Event, timeout_ms: int = 1000) -> None:
        """Poll until ``stop`` is set (from another thread)."""
        while not stop.is_set():
            self.poll(timeout_ms)

    def _commit(self, done: dict[TopicPartition, int]) -> None:
        if self._commits and done:
            self.consumer.commit(
                {partition: OffsetAndMetadata(offset, "", -1) for partition, offset in done.items()}
            )
