"""Audit surface for auditors and admins: raw events, as-of replays, chain verification.

The contract (``api/contract.py``, ``docs/audit.md``): reads only, never an event appended;
the filters' shapes are in the schema (``context`` one of the logs, times RFC 3339 with an
offset, ``limit``/``cursor`` as on every list). A ``since`` later than ``until`` is an empty
range, so an empty page — not an error, since no schema can compare two parameters.

A stored event that no longer decodes (``projections.audit.UnreadableEventError``) is
answered ``503`` problem+json naming it (``context``, ``position``, ``aggregate_id``,
``aggregate_version``; ``api.errors``) by the reads that need it — a page that holds it,
its aggregate's history — and by nothing else: other pages, contexts and aggregates, and
``/verify`` (which hashes the stored bytes without decoding them), still answer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import anyio.to_thread
import asyncpg
import msgspec
from litestar import Controller, Request, get
from litestar.params import FromPath, Parameter
from msgspec import Struct

from api.auth import AUDIT
from api.consistency import WaitFor, wait_for
from api.contract import problems
from api.errors import ProblemError
from api.pagination import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, encode_cursor
from application.contexts import CONTEXTS, Contexts
from projections import audit, audit_chain
from projections.events import Event, envelope

# -- response bodies -------------------------------------------------------------------


class AuditEvent(Struct):
    """A stored event as it leaves aimm (the same envelope as replay and Kafka)."""

    event_id: UUID
    context: str
    position: int
    aggregate_id: UUID
    aggregate_version: int
    type: str
    topic: str
    timestamp: datetime
    metadata: dict[str, str]
    payload: dict[str, Any]


class AuditEventPage(Struct):
    items: list[AuditEvent]
    next_cursor: str | None


class AggregateHistory(Struct):
    aggregate_id: UUID
    context: str
    type: str
    as_of: datetime | None
    version: int
    state: dict[str, Any]
    events: list[AuditEvent]


class ChainBreak(Struct):
    position: int
    kind: str
    detail: str


class ChainContext(Struct):
    context: str
    ok: bool
    verified: int
    chained: int
    unchained: int
    head_position: int
    head_hash: str | None
    broken: ChainBreak | None


class ChainReport(Struct):
    ok: bool
    contexts: list[ChainContext]


# -- query parameters ------------------------------------------------------------------

ContextParam = Annotated[
    str | None,
    Parameter(
        query="context",
        pattern=f"^({'|'.join(CONTEXTS)})$",
        description=f"one of {', '.join(CONTEXTS)}",
    ),
]
TimeParam = Annotated[
    str | None,
    Parameter(
        max_length=64,
        schema_extra={"format": "date-time"},
        description="RFC 3339 timestamp with its offset, e.g. 2026-11-27T10:00:00Z",
    ),
]
Text = Annotated[str | None, Parameter(max_length=200)]


def bad_query(field: str, detail: str) -> ProblemError:
    return ProblemError(
        400, detail, errors=[{"field": field, "source": "query", "message": detail}]
    )


def to_instant(text: str) -> datetime | None:
    """The time zone-aware timestamp ``text`` names, if PostgreSQL can store it."""
    try:
        parsed = datetime.fromisoformat(text.upper())
        if parsed.tzinfo is None:
            return None
        parsed.astimezone(UTC)  # out of range once in UTC (year 1 at +14:00, ...)
    except (ValueError, OverflowError):
        return None
    return parsed


def check_text(field: str, value: str | None) -> str | None:
    if value is not None and "\x00" in value:
        raise bad_query(field, f"{field} must not contain NUL characters")
    return value


def parse_instant(field: str, value: str | None) -> datetime | None:
    """An ISO 8601 timestamp with a time zone (a '+' sent unencoded arrives as ' ')."""
    if value is None:
        return None
    candidates = [value]
    if " " in value:
        head, _, tail = value.rpartition(" ")
        candidates.append(f"{head}+{tail}")
    for candidate in candidates:
        parsed = to_instant(candidate)
        if parsed is not None:
            return parsed
    raise bad_query(
        field, f"{field} must be an ISO 8601 timestamp with a time zone, e.g. 2026-11-27T10:00:00Z"
    )


def check_context(value: str | None) -> str | None:
    if value is not None and value not in CONTEXTS:
        raise bad_query("context", f"context must be one of {', '.join(CONTEXTS)}")
    return value


def is_position(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def cursor_key(cursor: str | None, by_context: bool) -> audit.EventKey | None:
    """The key a cursor points after: [position] in one context, else [time, ctx, pos]."""
    value = decode_cursor(cursor)
    if value is None:
        return None
    if isinstance(value, list) and value and is_position(value[-1]):
        if by_context and len(value) == 1:
            return audit.EventKey(datetime.min.replace(tzinfo=UTC), "", value[0])
        if not by_context and len(value) == 3 and isinstance(value[0], str):
            stamp = to_instant(value[0])
            if stamp is not None and value[1] in CONTEXTS:
                return audit.EventKey(stamp, value[1], value[2])
    raise bad_query("cursor", "cursor is not one this query returned")


def next_cursor(key: audit.EventKey | None, by_context: bool) -> str | None:
    if key is None:
        return None
    if by_context:
        return encode_cursor([key.position])
    return encode_cursor([key.timestamp.isoformat(), key.context, key.position])


def event_out(event: Event) -> AuditEvent:
    return msgspec.convert(envelope(event), AuditEvent)


def chain_context_out(c: audit_chain.ContextVerification) -> ChainContext:
    broken = c.broken
    return ChainContext(
        context=c.context,
        ok=c.ok,
        verified=c.verified,
        chained=c.chained,
        unchained=c.unchained,
        head_position=c.head_position,
        head_hash=c.head_hash,
        broken=None if broken is None else ChainBreak(broken.position, broken.kind, broken.detail),
    )


def chain_out(report: audit_chain.Verification) -> ChainReport:
    return ChainReport(ok=report.ok, contexts=[chain_context_out(c) for c in report.contexts])


async def history(
    pool: asyncpg.Pool, contexts: Contexts, aggregate_id: UUID, at: datetime | None
) -> AggregateHistory:
    """Find the aggregate's context, replay it as of ``at`` (404 if it did not exist
    then), and list the stored events that state was built from."""
    async with pool.acquire() as conn:
        context = await audit.context_of(conn, aggregate_id)
        # Every stored event of it is decoded before the replay reads them, so an
        # unreadable one is named (UnreadableEventError), not a decoder's bare error.
        stored = (
            []
            if context is None
            else await audit.aggregate_events(conn, context, aggregate_id, 2**62)
        )
    if context is None:
        raise ProblemError(404, f"no aggregate {aggregate_id} in any context")
    aggregate, _ = await anyio.to_thread.run_sync(contexts[context].replay_as_of, aggregate_id, at)
    if stored and stored[-1].version < aggregate.version:  # appended since: read them too
        async with pool.acquire() as conn:
            stored = await audit.aggregate_events(conn, context, aggregate_id, aggregate.version)
    events = [e for e in stored if e.version <= aggregate.version]
    return AggregateHistory(
        aggregate_id=aggregate_id,
        context=context,
        type=type(aggregate).__qualname__,
        as_of=at,
        version=aggregate.version,
        state=audit.aggregate_state(aggregate),
        events=[event_out(e) for e in events],
    )


class AuditController(Controller):
    path = "/api/v1/audit"
    tags = ("audit",)
    guards = (AUDIT,)

    @get("/events", responses=problems())
    async def list_events(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        context: ContextParam = None,
        aggregate_id: Annotated[UUID | None, Parameter(query="aggregate_id")] = None,
        event_type: Annotated[
            str | None, Parameter(query="type", max_length=200, description="e.g. Model.Registered")
        ] = None,
        principal: Text = None,
        correlation_id: Text = None,
        since: TimeParam = None,
        until: TimeParam = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        wait: WaitFor = None,
    ) -> AuditEventPage:
        """Stored events with their metadata, filtered, in log order (per context) or by
        (timestamp, context, position) across contexts; ``since``/``until`` inclusive (a
        ``since`` later than ``until`` is an empty range)."""
        await wait_for(request, wait)
        filters = audit.EventFilter(
            context=check_context(context),
            aggregate_id=aggregate_id,
            type=check_text("type", event_type),
            principal=check_text("principal", principal),
            correlation_id=check_text("correlation_id", correlation_id),
            since=parse_instant("since", since),
            until=parse_instant("until", until),
        )
        by_context = context is not None
        after = cursor_key(cursor, by_context)
        if filters.since and filters.until and filters.since > filters.until:
            return AuditEventPage([], None)
        async with request.app.state.pool.acquire() as conn:
            events, key = await audit.list_events(conn, filters, after, limit)
        return AuditEventPage([event_out(e) for e in events], next_cursor(key, by_context))

    @get("/aggregates/{aggregate_id:uuid}", responses=problems(404))
    async def aggregate_history(
        self,
        request: Request[Any, Any, Any],
        aggregate_id: FromPath[UUID],
        contexts: Contexts,
        as_of: TimeParam = None,
    ) -> AggregateHistory:
        """An aggregate's stored events and its state replayed as of a time (default now)."""
        return await history(
            request.app.state.pool, contexts, aggregate_id, parse_instant("as_of", as_of)
        )

    @get("/verify", responses=problems())
    async def verify(
        self, request: Request[Any, Any, Any], context: ContextParam = None
    ) -> ChainReport:
        """Recompute each log's hash chain; ``ok`` is false with the first broken position."""
        chosen = check_context(context)
        async with request.app.state.pool.acquire() as conn:
            report = await audit_chain.verify(conn, chosen)
        return chain_out(report)
