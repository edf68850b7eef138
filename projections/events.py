"""Stored events as the read side sees them, decoded straight from the events tables.

Domain events keep their fields in plain JSON types (see ``domain.base``), so one
``msgspec`` decode of the stored ``state`` gives the payload; only the timestamp
carries the eventsourcing transcoder's type tag. Decoding is most of the read side's
own CPU time in a rebuild, so this path is kept lean: ``Event`` is a frozen msgspec
Struct (several times cheaper to build than a frozen dataclass) and topics map to
their short type names through a cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

import asyncpg
import msgspec

_decode = msgspec.json.Decoder(dict[str, Any]).decode


class Event(msgspec.Struct, frozen=True, gc=False):
    """One stored event, decoded. Immutable; built by keyword or in field order."""

    context: str
    position: int  # notification id in the context's log
    aggregate_id: UUID
    version: int
    type: str  # "Model.Registered"
    topic: str  # "domain.registry.model:Model.Registered"
    timestamp: datetime
    meta: dict[str, str]
    data: dict[str, Any]
    state: bytes  # the stored bytes, as written: what the audit hash chain covers


def events_table(context: str) -> str:
    return f"{context}_events"


# topic -> type ("domain.registry.model:Model.Registered" -> "Model.Registered"); topics
# are few and repeat on every event, so the split is done once per topic.
_types: dict[str, str] = {}
_fromisoformat = datetime.fromisoformat


def _type_of(topic: str) -> str:
    kind = _types[topic] = topic.rpartition(":")[2]
    return kind


class UnreadableEventError(RuntimeError):
    """A stored event whose bytes do not decode: named by context, position, aggregate
    and version, so an operator can find the row (``<context>_events``)."""

    def __init__(
        self, context: str, position: int, aggregate_id: UUID, version: int, reason: str
    ) -> None:
        self.context = context
        self.position = position
        self.aggregate_id = aggregate_id
        self.version = version
        self.reason = reason
        super().__init__(
            f"the stored event at {context} position {position} (aggregate {aggregate_id}, "
            f"version {version}) cannot be read: {reason}"
        )


def decode_row(context: str, row: Sequence[Any]) -> Event:
    """One stored row (notification id, originator id, version, topic, state) as an
    ``Event``; a row that does not decode raises :class:`UnreadableEventError` naming it,
    for every reader (projector, rebuild, replay, audit, relay)."""
    try:
        return _decode_row(context, row)
    except (msgspec.DecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UnreadableEventError(
            context, row[0], row[1], row[2], f"{type(exc).__name__}: {exc}"
        ) from exc


def _decode_row(context: str, row: Sequence[Any]) -> Event:
    notification_id, originator_id, version, topic, state = row
    data = _decode(state)
    stamp = data.pop("timestamp")
    data.pop("originator_topic", None)
    meta = data.pop("meta", None) or {}
    return Event(
        context,
        notification_id,
        originator_id,
        version,
        _types.get(topic) or _type_of(topic),
        topic,
        _fromisoformat(stamp["_data_"] if type(stamp) is dict else stamp),
        meta,
        data,
        state,
    )


SELECT_COLUMNS = "notification_id, originator_id, originator_version, topic, state"


async def read_events(
    conn: asyncpg.Connection, context: str, after: int, limit: int
) -> list[Event]:
    """Up to ``limit`` events of one context's log after ``after``, in log order."""
    rows = await conn.fetch(
        f"SELECT {SELECT_COLUMNS} FROM {events_table(context)} WHERE notification_id > $1 "
        "ORDER BY notification_id LIMIT $2",
        after,
        limit,
    )
    return [decode_row(context, row) for row in rows]


async def head_position(conn: asyncpg.Connection, context: str) -> int:
    value = await conn.fetchval(f"SELECT max(notification_id) FROM {events_table(context)}")
    return int(value or 0)


EVENT_ID_NAMESPACE = UUID("3c2b7d4e-8f61-4f0a-b7a2-5d9e0c4a1f37")


def event_id(event: Event) -> UUID:
    """A stable id for an event (its aggregate and version), for consumer dedupe."""
    return uuid5(EVENT_ID_NAMESPACE, f"{event.aggregate_id}:{event.version}")


def envelope(event: Event) -> dict[str, Any]:
    """The JSON shape an event leaves aimm in: replay, audit API and Kafka alike."""
    return {
        "event_id": str(event_id(event)),
        "context": event.context,
        "position": event.position,
        "aggregate_id": str(event.aggregate_id),
        "aggregate_version": event.version,
        "type": event.type,
        "topic": event.topic,
        "timestamp": event.timestamp.isoformat(),
        "metadata": event.meta,
        "payload": event.data,
    }


_encode = msgspec.json.Encoder().encode


async def replay_lines(  # noqa: PLR0913
    url: str, context: str, after: int, until: datetime | None, out: Any, batch: int = 5000
) -> int:
    """Write ``context``'s log after ``after`` as JSON lines; stop past ``until``."""
    conn = await asyncpg.connect(url)
    written = 0
    try:
        position = after
        while True:
            events = await read_events(conn, context, position, batch)
            if not events:
                return written
            for event in events:
                if until is not None and event.timestamp > until:
                    return written
                out.write(_encode(envelope(event)) + b"\n")
                written += 1
            position = events[-1].position
    finally:
        out.flush()
        await conn.close()
