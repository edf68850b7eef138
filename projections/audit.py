"""Audit index (``rm_audit_events``) over all five logs, and the auditors' event queries.

Decision: the index keeps only what the filters need — context, position, aggregate id,
version, type, timestamp, principal and correlation id — and every query joins back to
the raw ``<context>_events`` tables by (context, notification id), so the envelope an
auditor receives is decoded from the bytes stored now, never from a copy. (The raw
tables alone cannot serve the time and principal filters: those live inside the stored
JSON, unindexed.) An indexed event whose stored row has since been deleted is left out
of the page and logged; ``projections.audit_chain.verify`` is what reports tampering.

Order: within one context (``context`` filter given), notification-id order — the log
order, which has no late arrivals, so walking the pages never misses an event. Across
contexts (no ``context`` filter), by (timestamp, context, position): the five logs are
independent, so the event's own timestamp is the only common clock, and context and
position break ties. In that order an event committed after a page was read may carry
an earlier timestamp than the cursor (timestamps are taken before commit) and so land
behind it; an auditor who needs a complete walk of a still-moving log filters by context.

``since`` is inclusive and ``until`` is inclusive, like ``aimm replay --until`` and the
``as_of`` replays (an event stamped exactly at ``as_of`` is part of that state).

Unreadable stored events: every stored event the audit queries, the projector and the
Kafka relay read goes through :func:`decode_checked`, which turns a row that does not
decode (corrupt JSON, a missing field) into :class:`UnreadableEventError` naming the
event — context, position, aggregate id and version — instead of a bare decoder error.
The API answers it as a problem (``api.errors``), the projector halts that log at the
event and records it in ``aimm_projection_faults``, the relay dead-letters it
(``docs/reliability.md``, "Unreadable events and artifacts").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

import asyncpg
import msgspec

from application.contexts import CONTEXTS
from projections.events import (
    SELECT_COLUMNS,
    Event,
    UnreadableEventError,
    decode_row,
    events_table,
)
from projections.registry_models import split_table

log = logging.getLogger(__name__)

INDEX_TABLE = "rm_audit_events"
COLUMNS = (
    "context",
    "position",
    "aggregate_id",
    "version",
    "type",
    "timestamp",
    "principal",
    "correlation_id",
)


def decode_checked(context: str, row: Sequence[Any]) -> Event:
    """``projections.events.decode_row``, raising :class:`UnreadableEventError` on a row
    that does not decode (row: notification id, originator id, version, topic, state)."""
    try:
        return decode_row(context, row)
    except (msgspec.DecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UnreadableEventError(
            context, row[0], row[1], row[2], f"{type(exc).__name__}: {exc}"
        ) from exc


async def read_checked(
    conn: asyncpg.Connection, context: str, after: int, limit: int
) -> tuple[list[Event], UnreadableEventError | None]:
    """Like ``projections.events.read_events``, but a row that does not decode ends the
    batch: the events before it, and the error naming it (``None`` if all decoded)."""
    rows = await conn.fetch(
        f"SELECT {SELECT_COLUMNS} FROM {events_table(context)} WHERE notification_id > $1 "
        "ORDER BY notification_id LIMIT $2",
        after,
        limit,
    )
    events: list[Event] = []
    for row in rows:
        try:
            events.append(decode_checked(context, row))
        except UnreadableEventError as exc:
            return events, exc
    return events, None


class AuditIndex:
    """One row per stored event of every context: the keys auditors filter and page by."""

    name: ClassVar[str] = "audit_index"
    contexts: ClassVar[tuple[str, ...]] = CONTEXTS
    tables: ClassVar[Mapping[str, Sequence[str]]] = {
        "audit_events": (
            """
            CREATE TABLE {audit_events} (
                context text NOT NULL,
                position bigint NOT NULL,
                aggregate_id uuid NOT NULL,
                version bigint NOT NULL,
                type text NOT NULL,
                timestamp timestamptz NOT NULL,
                principal text,
                correlation_id text,
                PRIMARY KEY (context, position)
            )
            """,
            "CREATE INDEX ON {audit_events} (timestamp, context, position)",
            "CREATE INDEX ON {audit_events} (aggregate_id, version)",
            "CREATE INDEX ON {audit_events} (type, timestamp)",
            "CREATE INDEX ON {audit_events} (principal, timestamp)",
            "CREATE INDEX ON {audit_events} (correlation_id)",
        ),
    }

    async def apply(
        self, conn: asyncpg.Connection, tables: Mapping[str, str], events: Sequence[Event]
    ) -> None:
        records = [
            (
                e.context,
                e.position,
                e.aggregate_id,
                e.version,
                e.type,
                e.timestamp,
                e.meta.get("principal"),
                e.meta.get("correlation_id"),
            )
            for e in events
        ]
        schema, name = split_table(tables["audit_events"])
        await conn.copy_records_to_table(name, schema_name=schema, columns=COLUMNS, records=records)


@dataclass(frozen=True)
class EventFilter:
    """What an auditor narrows the events to; ``None`` means no condition."""

    context: str | None = None
    aggregate_id: UUID | None = None
    type: str | None = None
    principal: str | None = None
    correlation_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class EventKey:
    """Where an event sits in the audit order (what a cursor points after)."""

    timestamp: datetime
    context: str
    position: int


def _where(f: EventFilter, after: EventKey | None) -> tuple[str, list[Any]]:
    """The WHERE clause (only the conditions given, so the planner can use the indexes)."""
    conditions: list[str] = []
    args: list[Any] = []

    def add(sql: str, *values: Any) -> None:
        refs = []
        for value in values:
            args.append(value)
            refs.append(f"${len(args)}")
        conditions.append(sql.format(*refs))

    for column, value in (
        ("context", f.context),
        ("aggregate_id", f.aggregate_id),
        ("type", f.type),
        ("principal", f.principal),
        ("correlation_id", f.correlation_id),
    ):
        if value is not None:
            add(f"{column} = {{}}", value)
    if f.since is not None:
        add("timestamp >= {}", f.since)
    if f.until is not None:
        add("timestamp <= {}", f.until)
    if after is not None:
        if f.context is not None:
            add("position > {}", after.position)
        else:
            add(
                "(timestamp, context, position) > ({}, {}, {})",
                after.timestamp,
                after.context,
                after.position,
            )
    return (" WHERE " + " AND ".join(conditions)) if conditions else "", args


async def list_events(
    conn: asyncpg.Connection, f: EventFilter, after: EventKey | None, limit: int
) -> tuple[list[Event], EventKey | None]:
    """Up to ``limit`` stored events matching ``f`` after ``after``, in audit order,
    and the key to continue after (``None`` when there are no more)."""
    where, args = _where(f, after)
    order = "position" if f.context is not None else "timestamp, context, position"
    rows = await conn.fetch(
        f"SELECT context, position, timestamp FROM {INDEX_TABLE}{where} "
        f"ORDER BY {order} LIMIT ${len(args) + 1}",
        *args,
        limit + 1,
    )
    page = rows[:limit]
    next_key = None
    if len(rows) > limit:
        last = page[-1]
        next_key = EventKey(last["timestamp"], last["context"], last["position"])
    stored = await stored_events(conn, [(r["context"], r["position"]) for r in page])
    events = []
    for r in page:
        event = stored.get((r["context"], r["position"]))
        if event is None:
            log.warning("indexed event %s:%s is missing from its log", r["context"], r["position"])
        else:
            events.append(event)
    return events, next_key


async def stored_events(
    conn: asyncpg.Connection, keys: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], Event]:
    """The stored events at these (context, position) keys, decoded from the raw logs."""
    wanted: dict[str, list[int]] = {}
    for context, position in keys:
        wanted.setdefault(context, []).append(position)
    found: dict[tuple[str, int], Event] = {}
    for context, positions in wanted.items():
        rows = await conn.fetch(
            f"SELECT {SELECT_COLUMNS} FROM {events_table(context)} "
            "WHERE notification_id = ANY($1::bigint[])",
            positions,
        )
        for row in rows:
            event = decode_checked(context, row)
            found[(context, event.position)] = event
    return found


async def context_of(conn: asyncpg.Connection, aggregate_id: UUID) -> str | None:
    """The context whose log holds ``aggregate_id`` (looked up in the raw logs, so it
    does not depend on the projector having caught up)."""
    for context in CONTEXTS:
        found = await conn.fetchval(
            f"SELECT 1 FROM {events_table(context)} WHERE originator_id = $1 LIMIT 1",
            aggregate_id,
        )
        if found:
            return context
    return None


async def aggregate_events(
    conn: asyncpg.Connection, context: str, aggregate_id: UUID, up_to_version: int
) -> list[Event]:
    """The stored events of one aggregate up to a version, in version order."""
    rows = await conn.fetch(
        f"SELECT {SELECT_COLUMNS} FROM {events_table(context)} "
        "WHERE originator_id = $1 AND originator_version <= $2 ORDER BY originator_version",
        aggregate_id,
        up_to_version,
    )
    return [decode_checked(context, row) for row in rows]


def _plain(value: Any) -> Any:
    return repr(value)


def aggregate_state(aggregate: Any) -> dict[str, Any]:
    """An aggregate as JSON: its public attributes plus id, version and timestamps."""
    state: dict[str, Any] = {
        "id": aggregate.id,
        "version": aggregate.version,
        "created_on": aggregate.created_on,
        "modified_on": aggregate.modified_on,
    }
    state.update({k: v for k, v in vars(aggregate).items() if not k.startswith("_")})
    result: dict[str, Any] = msgspec.to_builtins(state, str_keys=True, enc_hook=_plain)
    return result
