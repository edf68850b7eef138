"""Agent memory resource: /api/v1/memory (F11.3.1–F11.3.5).

Who may do what: agents (an ``agent`` key, bound to one agent id) write, reinforce and
read their own agent's memories only — another agent's memory is 404 to them, and
naming another agent is 403; viewers, operators and auditors read all; operators and
admins write for any agent, invalidate, restore, erase and forget.

Reads do not write, except a retrieval for use. A search reinforces its hits (each at
most once an hour, as the searching principal; the ranking uses the strength before)
only when it is a retrieval for use: by default when the caller is an ``agent`` key
(``reinforce=false`` opts out), and with an explicit ``reinforce=true`` from a writer
role (operator, admin; an agent may say it too). A reader (viewer, auditor) asking
``reinforce=true`` is 403; a reader's search appends nothing. The reinforcement is saved
before the answer, which then carries ``Aimm-Position`` of the access events (no header
when nothing was reinforced).

A memory's detail (``GET /{id}``) is served from the read model in one snapshot: the
memory's row, its entities and relations, and its event history from the lifecycle
marks (one per event, with principal, correlation id and the event's fields). A memory
whose creation is in the log but not yet projected waits for the projection (bounded),
like every read by id. Only ``as_of`` replays its events. ``ETag`` is its version on
every response that shows or changes one memory.

Commands that change an existing memory (reinforce, invalidate, erase, restore) take
``If-Match`` (or ``expected_version`` in the body): a stale one is 409 with
``current_version`` and appends nothing. Every POST and DELETE takes ``Idempotency-Key``.
Bulk forget takes no ``If-Match`` (it changes many memories) and runs in pages: one run
invalidates (or, dry, lists) at most ``limit`` memories weakest first, and answers
``items`` and ``next_cursor`` to continue (see ``ForgetIn``).

Timestamps in query strings must be RFC 3339 (``2026-03-02T09:00:00Z``); a number
such as ``0.5`` is a 400, as the schema says, and so is a body value of the wrong JSON
type (a string for a boolean or a number): bodies are decoded strictly.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import anyio.to_thread
import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import Parameter

from api.auth import READ_MEMORY, WRITE, WRITE_MEMORY
from api.commands import (
    expected_version,
    idempotency,
    principal_of,
    run_command,
    to_builtins,
)
from api.consistency import WaitFor, wait_for
from api.contract import (
    COMMAND_HEADERS,
    CREATED_HEADERS,
    ONE_AGGREGATE_HEADERS,
    POSITION_HEADER,
    IdempotencyKey,
    IfMatch,
    Instant,
    etag,
    instants,
    problems,
    read_one,
    snapshot,
    strict_body,
)
from api.controllers.models import aware
from api.errors import ProblemError
from api.memory_schemas import (
    CURSOR,
    AgentPage,
    AgentSummary,
    ForgetCandidate,
    ForgetIn,
    ForgetOut,
    GraphOut,
    HistoryEntry,
    Invalidation,
    Kind,
    MemoryBatch,
    MemoryIn,
    MemoryOut,
    MemoryRef,
    MemoryRefs,
    ReinforceIn,
    RestoreIn,
    ScoreParts,
    SearchHit,
    SearchPage,
    StrengthOut,
    TimelineCount,
    TimelineItem,
    TimelineMark,
    TimelineOut,
)
from api.pagination import DEFAULT_LIMIT, Limit, decode_cursor, encode_cursor
from application.base import Response as CommandResponse
from application.contexts import Contexts
from domain.errors import InvalidFieldsError
from domain.memory.memory import Draft, Memory, parse_memory
from domain.memory.strength import Curve, Strength, strength_at
from domain.metadata import acting_as
from projections import memory as tables
from projections import memory_queries as views
from projections.memory_graph import build_graph
from projections.memory_search import search as search_memories

USES = frozenset({"admin", "operator", "agent"})  # may ask a search to reinforce
MAX_SEARCH = 100
MAX_TIMELINE = 500
MAX_GRAPH = 2000
LABEL = 80

PageCursor = Annotated[
    str | None,
    Parameter(
        min_length=1, max_length=2000, pattern=CURSOR.__metadata__[0].pattern,
        description="`next_cursor` of the previous page; omit for the first page",
    ),
]  # fmt: skip


def _scope(request: Request[Any, Any, Any]) -> str | None:
    """The agent an agent-only key is bound to (None: the caller may see every agent)."""
    principal = principal_of(request)
    if principal.has_any(frozenset({"admin", "operator", "viewer", "auditor"})):
        return None
    return principal.agent_id or ""


def _check_agent(request: Request[Any, Any, Any], agent_id: str) -> None:
    scope = _scope(request)
    if scope is not None and scope != agent_id:
        raise ProblemError(403, f"this key may only use the memories of agent {scope!r}")


def strength_out(s: Strength) -> StrengthOut:
    return StrengthOut(**dataclasses.asdict(s))


def row_strength(row: Any, now: datetime) -> Strength:
    """The same strength as the SQL ranking, from a read-model row."""
    return strength_at(
        Curve(
            importance=row["importance"],
            recorded_at=row["created_at"],
            stability_days=row["stability_days"],
            anchor_at=row["anchor_at"],
            accesses=row["accesses"],
            feedback=row["feedback"],
        ),
        now,
    )


def _ref(memory: Memory) -> MemoryRef:
    return MemoryRef(
        id=memory.id,
        agent_id=memory.agent_id,
        status=memory.status,
        version=memory.version,
        strength=strength_out(memory.strength(datetime.now(UTC))),
    )


def _respond_ref(status: int) -> Any:
    def respond(memory: Memory) -> CommandResponse:
        return status, to_builtins(_ref(memory))

    return respond


def _drafts(items: list[MemoryIn], prefix: str | None) -> list[Draft]:
    """Check every memory of a request; all bad fields of all items in one 400."""
    drafts, errors = [], []
    for i, item in enumerate(items):
        raw = {k: v for k, v in msgspec.to_builtins(item).items() if v is not None}
        try:
            drafts.append(parse_memory(raw, "" if prefix is None else f"{prefix}[{i}]."))
        except InvalidFieldsError as exc:
            errors += [{"source": "body", **e} for e in exc.errors]
    if errors:
        raise InvalidFieldsError(errors)
    return drafts


_DETAIL_FIELDS = {
    "Memory.Recorded": ("agent_id", "kind", "importance", "occurred_at", "supersedes"),
    "Memory.Reinforced": ("source", "value"),
    "Memory.Invalidated": ("reason", "superseded_by"),
    "Memory.Restored": ("reason",),
    "Memory.Erased": ("reason",),
}
_EVENT_OF_MARK = {
    "created": "Memory.Recorded",
    "reinforced": "Memory.Reinforced",
    "invalidated": "Memory.Invalidated",
    "restored": "Memory.Restored",
    "erased": "Memory.Erased",
}


def _history(events: list[Any]) -> list[HistoryEntry]:
    entries = []
    for event in events:
        kind = type(event).__qualname__
        entries.append(
            HistoryEntry(
                version=event.originator_version,
                type=kind,
                at=event.timestamp,
                principal=event.meta.get("principal", "unknown"),
                correlation_id=event.meta.get("correlation_id"),
                detail={f: getattr(event, f) for f in _DETAIL_FIELDS.get(kind, ())},
            )
        )
    return entries


def memory_out(
    memory: Memory, document: dict[str, Any] | None, events: list[Any], as_of: datetime | None
) -> MemoryOut:
    """A memory replayed from its events (the ``as_of`` view)."""
    doc = document or {}
    return MemoryOut(
        id=memory.id,
        agent_id=memory.agent_id,
        kind=memory.kind,
        importance=memory.importance,
        occurred_at=datetime.fromisoformat(memory.occurred_at),
        created_at=memory.created_on,
        status=memory.status,
        content=doc.get("content"),
        entities=list(doc.get("entities", [])),
        relations=list(doc.get("relations", [])),
        tags=list(doc.get("tags", [])),
        source=doc.get("source"),
        supersedes=None if memory.supersedes is None else UUID(memory.supersedes),
        invalidation=(
            Invalidation(
                memory.invalidation_reason,
                None if memory.superseded_by is None else UUID(memory.superseded_by),
            )
            if memory.status == "invalidated"
            else None
        ),
        strength=strength_out(memory.strength(as_of or datetime.now(UTC))),
        version=memory.version,
        history=_history(events),
        as_of=as_of,
    )


def detail_out(found: dict[str, Any], now: datetime) -> MemoryOut:
    """A memory from its read-model detail (``projections.memory_queries.detail``)."""
    history = []
    for mark in found["lifecycle"]:
        kind = _EVENT_OF_MARK[mark["mark"]]
        detail = mark["detail"]
        history.append(
            HistoryEntry(
                version=mark["version"],
                type=kind,
                at=mark["at"],
                principal=detail.get("by", "unknown"),
                correlation_id=mark["correlation_id"],
                detail={f: detail.get(f) for f in _DETAIL_FIELDS[kind]},
            )
        )
    erased = found["status"] == "erased"
    return MemoryOut(
        id=found["id"],
        agent_id=found["agent_id"],
        kind=found["kind"],
        importance=found["importance"],
        occurred_at=found["occurred_at"],
        created_at=found["created_at"],
        status=found["status"],
        content=found["content"],
        entities=found["entities"],
        relations=found["relations"],
        tags=list(found["tags"] or []),
        source=None if erased else found["source"],
        supersedes=found["supersedes"],
        invalidation=(
            Invalidation(found["invalidation_reason"] or "", found["superseded_by"])
            if found["status"] == "invalidated"
            else None
        ),
        strength=strength_out(row_strength(found, now)),
        version=found["version"],
        history=history,
    )


async def _change(  # noqa: PLR0913
    request: Request[Any, Any, Any],
    contexts: Contexts,
    memory_id: UUID,
    act: Any,
    *,
    agent_scope: str | None = None,
    in_body: int | None = None,
    erase: bool = False,
    reason: str = "",
) -> Response[Any]:
    """Run one change of a memory as a command; answers with the memory's reference."""
    idem = await idempotency(request)
    expected = expected_version(request, in_body)
    if erase:
        return await run_command(
            request,
            lambda: contexts.memory.erase(
                memory_id, reason, _respond_ref(200), idem=idem, expected_version=expected
            ),
        )
    return await run_command(
        request,
        lambda: contexts.memory.change(
            memory_id,
            act,
            _respond_ref(200),
            agent_scope=agent_scope,
            idem=idem,
            expected_version=expected,
        ),
    )


class MemoryController(Controller):
    path = "/api/v1/memory"
    tags = ["agent memory"]

    @post(
        "/", guards=[WRITE_MEMORY], status_code=201, responses=problems(404, 409, 422),
        response_headers=CREATED_HEADERS,
    )  # fmt: skip
    async def record(
        self,
        request: Request[Any, Any, Any],
        data: MemoryIn,
        contexts: Contexts,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[MemoryRef]:
        """Record a memory; its text is sealed under a key of its own."""
        data = await strict_body(request, MemoryIn) or data
        _check_agent(request, data.agent_id)
        [draft] = _drafts([data], None)
        idem = await idempotency(request, idempotency_key)

        def respond(memories: list[Memory]) -> CommandResponse:
            return 201, to_builtins(_ref(memories[0]))

        return await run_command(
            request,
            lambda: contexts.memory.record([draft], idem=idem, respond=respond),
            location=lambda body: f"{self.path}/{body['id']}",
        )

    @post(
        "/batch", guards=[WRITE_MEMORY], status_code=201, responses=problems(404, 409, 422),
        response_headers=[COMMAND_HEADERS[0], COMMAND_HEADERS[2]],
    )  # fmt: skip
    async def record_batch(
        self,
        request: Request[Any, Any, Any],
        data: MemoryBatch,
        contexts: Contexts,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[MemoryRefs]:
        """Record up to 1,000 memories in one transaction: all of them or none."""
        data = await strict_body(request, MemoryBatch) or data
        for item in data.memories:
            _check_agent(request, item.agent_id)
        drafts = _drafts(data.memories, "memories")
        idem = await idempotency(request, idempotency_key)

        def respond(memories: list[Memory]) -> CommandResponse:
            return 201, to_builtins(MemoryRefs([_ref(m) for m in memories]))

        return await run_command(
            request, lambda: contexts.memory.record(drafts, idem=idem, respond=respond)
        )

    @get(
        "/search", guards=[READ_MEMORY], responses=problems(),
        response_headers=[COMMAND_HEADERS[0]],
    )  # fmt: skip
    async def search(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        contexts: Contexts,
        q: Annotated[str, Parameter(min_length=1, max_length=500, pattern=r"\S")],
        agent_id: Annotated[str | None, Parameter(max_length=100)] = None,
        kind: Kind | None = None,
        start: Instant = None,
        end: Instant = None,
        include_invalidated: bool = False,
        reinforce: Annotated[
            bool | None,
            Parameter(
                description="reinforce the hits (a retrieval for use): default for agent "
                "keys; readers may not"
            ),
        ] = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_SEARCH)] = 20,
        cursor: PageCursor = None,
        wait: WaitFor = None,
    ) -> Response[SearchPage]:
        """Keyword search: full-text (quoted phrases, OR, -exclusions) and trigram matches
        for partial words, ranked by relevance × (0.5 + 0.5 × strength), paged by
        ``cursor``. Reinforces the hits only for a retrieval for use: an agent's key, or
        ``reinforce=true`` from a writer (a reader asking it is 403)."""
        instants(request, "start", "end")
        principal = principal_of(request)
        scope = _scope(request)
        if reinforce and not principal.has_any(USES):
            raise ProblemError(403, "only agents, operators and admins may reinforce by search")
        uses = reinforce if reinforce is not None else scope is not None
        await wait_for(request, wait)
        if scope is not None:
            if agent_id is not None and agent_id != scope:
                raise ProblemError(403, f"this key may only search agent {scope!r}")
            agent_id = scope
        now, after = datetime.now(UTC), None
        raw = decode_cursor(cursor)
        if raw is not None:
            try:
                now = datetime.fromisoformat(raw[0])
                after = (float(raw[1]), UUID(raw[2]))
            except (TypeError, ValueError, IndexError, KeyError):
                raise ProblemError(400, "cursor is not one this API returned") from None
        async with request.app.state.pool.acquire() as conn:
            rows = await search_memories(
                conn,
                q=q,
                now=now,
                agent_id=agent_id,
                kind=kind,
                start=None if start is None else aware(start),
                end=None if end is None else aware(end),
                include_invalidated=include_invalidated,
                limit=limit + 1,
                after=after,
            )
        hits = [
            SearchHit(
                id=r["id"],
                agent_id=r["agent_id"],
                kind=r["kind"],
                importance=r["importance"],
                occurred_at=r["occurred_at"],
                created_at=r["created_at"],
                status=r["status"],
                tags=list(r["tags"] or []),
                source=r["source"] or "",
                snippet=r["snippet"],
                score=ScoreParts(
                    score=r["score"],
                    relevance=r["relevance"],
                    text_rank=r["text_rank"],
                    trigram=r["trigram"],
                    strength=r["strength"],
                ),
                strength=strength_out(row_strength(r, now)),
            )
            for r in rows[:limit]
        ]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor([now.isoformat(), last["score"], str(last["id"])])
        headers = {}
        active = [h.id for h in hits if h.status == "active"]
        if uses and active:
            correlation_id = request.scope["state"]["correlation_id"]

            def run() -> int:
                with acting_as(principal.name, correlation_id):
                    return contexts.memory.access(active, datetime.now(UTC))

            position = await anyio.to_thread.run_sync(run)
            if position:
                headers[POSITION_HEADER] = f"memory:{position}"
        return Response(SearchPage(items=hits, query=q, next_cursor=next_cursor), headers=headers)

    @get(
        "/{memory_id:uuid}", guards=[READ_MEMORY], responses=problems(404),
        response_headers=ONE_AGGREGATE_HEADERS,
    )  # fmt: skip
    async def get_memory(
        self,
        request: Request[Any, Any, Any],
        memory_id: UUID,
        contexts: Contexts,
        as_of: Instant = None,
        wait: WaitFor = None,
    ) -> Response[MemoryOut]:
        """The memory (its text unless erased), its strength and components, and its
        full event history, from the read model; ``as_of`` replays it up to that time."""
        instants(request, "as_of")
        scope = _scope(request)
        if as_of is None:
            await wait_for(request, wait)
            now = datetime.now(UTC)

            async def fetch(conn: Any) -> dict[str, Any] | None:
                return await views.detail(conn, memory_id)

            found = await read_one(request, "memory", memory_id, fetch)
            if found is None or (scope is not None and found["agent_id"] != scope):
                raise ProblemError(404, f"memory {memory_id} not found")
            shown = detail_out(found, now)
            return Response(shown, headers=etag(shown.version))
        moment = aware(as_of)

        def load() -> MemoryOut:
            _, events = contexts.memory.history(memory_id, scope)
            found = contexts.memory.as_of([memory_id], moment)
            if not found:
                raise ProblemError(404, f"memory {memory_id} did not exist at {moment}")
            past, document = found[0]
            return memory_out(past, document, [e for e in events if e.timestamp <= moment], moment)

        shown = await anyio.to_thread.run_sync(load)
        return Response(shown, headers=etag(shown.version))

    @delete(
        "/{memory_id:uuid}", guards=[WRITE], status_code=200, responses=problems(404, 409, 422),
        response_headers=COMMAND_HEADERS,
    )  # fmt: skip
    async def invalidate(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        memory_id: UUID,
        contexts: Contexts,
        reason: Annotated[str, Parameter(min_length=1, max_length=1000)],
        erase: bool = False,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[MemoryRef]:
        """Invalidate (restorable), or with ``erase=true`` erase: the key is destroyed,
        the text is gone for good, the log keeps who erased it, when and why."""
        return await _change(
            request, contexts, memory_id, lambda m: m.invalidate(reason),
            erase=erase, reason=reason,
        )  # fmt: skip

    @post(
        "/{memory_id:uuid}/restore", guards=[WRITE], status_code=200,
        responses=problems(404, 409, 422), response_headers=COMMAND_HEADERS,
    )  # fmt: skip
    async def restore(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        memory_id: UUID,
        contexts: Contexts,
        data: RestoreIn | None = None,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[MemoryRef]:
        """Undo an invalidation (409 if the memory is active or erased)."""
        data = await strict_body(request, RestoreIn) or RestoreIn()
        return await _change(
            request, contexts, memory_id, lambda m: m.restore(data.reason),
            in_body=data.expected_version,
        )  # fmt: skip

    @post(
        "/{memory_id:uuid}/reinforce", guards=[WRITE_MEMORY], status_code=200,
        responses=problems(404, 409, 422), response_headers=COMMAND_HEADERS,
    )  # fmt: skip
    async def reinforce(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        memory_id: UUID,
        contexts: Contexts,
        data: ReinforceIn | None = None,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[MemoryRef]:
        """Explicit feedback: a value in [-1, 1] (default 1) changes the stability."""
        data = await strict_body(request, ReinforceIn) or ReinforceIn()
        value = data.value
        return await _change(
            request, contexts, memory_id, lambda m: m.feedback(value),
            agent_scope=_scope(request), in_body=data.expected_version,
        )  # fmt: skip

    @get("/agents", guards=[READ_MEMORY], responses=problems())
    async def agents(
        self,
        request: Request[Any, Any, Any],
        limit: Limit = DEFAULT_LIMIT,
        cursor: PageCursor = None,
        wait: WaitFor = None,
    ) -> AgentPage:
        """Every agent with memories, by id: its memories per status and when it last
        recorded one. An agent's key lists its own agent alone."""
        await wait_for(request, wait)
        raw = decode_cursor(cursor)
        if raw is not None and not isinstance(raw, str):
            raise ProblemError(
                400,
                "cursor is not one this API returned",
                errors=[{"field": "cursor", "source": "query", "message": "invalid cursor"}],
            )
        scope = _scope(request)
        async with snapshot(request) as conn:
            rows = await views.agents(conn, only=scope, after=raw, limit=limit + 1)
        items = [AgentSummary(**dict(r)) for r in rows[:limit]]
        next_cursor = encode_cursor(items[-1].agent_id) if len(rows) > limit else None
        return AgentPage(items=items, next_cursor=next_cursor)

    @get("/agents/{agent_id:str}", guards=[READ_MEMORY], responses=problems())
    async def graph(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        agent_id: str,
        contexts: Contexts,
        min_strength: Annotated[
            # Litestar drops a zero bound of an optional parameter from the schema
            float | None, Parameter(ge=0.0, le=1.0, schema_extra={"minimum": 0.0})
        ] = None,
        include_invalidated: bool = False,
        limit: Annotated[int, Parameter(ge=1, le=MAX_GRAPH)] = 500,
        as_of: Instant = None,
        wait: WaitFor = None,
    ) -> GraphOut:
        """The agent's knowledge graph: entities and memories (with strength) as nodes;
        relations, mentions and supersessions as edges; ``as_of`` as it was then."""
        instants(request, "as_of")
        await wait_for(request, wait)
        _check_agent(request, agent_id)
        if as_of is not None:
            moment = aware(as_of)
            memories = await self._memories_as_of(
                request, contexts, agent_id, moment, include_invalidated
            )
            memories = [
                m for m in memories if min_strength is None or m["strength"] >= min_strength
            ]
            memories.sort(key=lambda m: (-m["strength"], str(m["id"])))
            graph = build_graph(memories[:limit])
            return GraphOut(agent_id, graph["nodes"], graph["edges"], moment)
        now = datetime.now(UTC)
        async with snapshot(request) as conn:
            memories = await views.graph_rows(
                conn,
                agent_id=agent_id,
                now=now,
                min_strength=min_strength,
                include_invalidated=include_invalidated,
                limit=limit,
            )
        for m in memories:
            m["strength_components"] = to_builtins(strength_out(row_strength(m, now)))
        graph = build_graph(memories)
        return GraphOut(agent_id, graph["nodes"], graph["edges"])

    async def _memories_as_of(
        self,
        request: Request[Any, Any, Any],
        contexts: Contexts,
        agent_id: str,
        moment: datetime,
        include_invalidated: bool,
    ) -> list[dict[str, Any]]:
        async with request.app.state.pool.acquire() as conn:
            ids = [
                r["id"]
                for r in await conn.fetch(
                    f"SELECT id FROM {tables.MEMORIES} WHERE agent_id = $1 AND created_at <= $2",
                    agent_id,
                    moment,
                )
            ]
        found = await anyio.to_thread.run_sync(contexts.memory.as_of, ids, moment)
        memories = []
        for memory, document in found:
            if memory.erased or (memory.invalidated and not include_invalidated):
                continue
            doc = document or {}
            memories.append(
                {
                    "id": memory.id,
                    "kind": memory.kind,
                    "status": memory.status,
                    "strength": memory.strength(moment).strength,
                    "strength_components": to_builtins(strength_out(memory.strength(moment))),
                    "importance": memory.importance,
                    "created_at": memory.created_on,
                    "supersedes": memory.supersedes,
                    "superseded_by": memory.superseded_by,
                    "entities": doc.get("entities", []),
                    "relations": doc.get("relations", []),
                    "content": doc.get("content"),
                }
            )
        return memories

    @get("/agents/{agent_id:str}/timeline", guards=[READ_MEMORY], responses=problems())
    async def timeline(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        agent_id: str,
        start: Instant = None,
        end: Instant = None,
        bucket: Literal["day", "week"] = "day",
        include_invalidated: bool = True,
        limit: Annotated[int, Parameter(ge=1, le=MAX_TIMELINE)] = 100,
        cursor: PageCursor = None,
        wait: WaitFor = None,
    ) -> TimelineOut:
        """Memories in time order with their lifecycle marks, and counts per bucket."""
        instants(request, "start", "end")
        await wait_for(request, wait)
        _check_agent(request, agent_id)
        after = None
        raw = decode_cursor(cursor)
        if raw is not None:
            try:
                after = (datetime.fromisoformat(raw[0]), UUID(raw[1]))
            except (TypeError, ValueError, IndexError, KeyError):
                raise ProblemError(400, "cursor is not one this API returned") from None
        start_at = None if start is None else aware(start)
        end_at = None if end is None else aware(end)
        now = datetime.now(UTC)
        async with snapshot(request) as conn:
            rows = await views.timeline(
                conn,
                agent_id=agent_id,
                start=start_at,
                end=end_at,
                include_invalidated=include_invalidated,
                limit=limit + 1,
                after=after,
            )
            counts = await views.timeline_counts(
                conn, agent_id=agent_id, bucket=bucket, start=start_at, end=end_at
            )
        items = [
            TimelineItem(
                id=r["id"],
                kind=r["kind"],
                status=r["status"],
                importance=r["importance"],
                occurred_at=r["occurred_at"],
                created_at=r["created_at"],
                label=None if r["content"] is None else r["content"][:LABEL],
                strength=strength_out(row_strength(r, now)),
                marks=[TimelineMark(m["mark"], _instant(m["at"]), m["detail"]) for m in r["marks"]],
            )
            for r in rows[:limit]
        ]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor([last["occurred_at"].isoformat(), str(last["id"])])
        return TimelineOut(
            agent_id=agent_id,
            bucket=bucket,
            items=items,
            counts=[TimelineCount(**dict(c)) for c in counts],
            next_cursor=next_cursor,
        )

    @post(
        "/agents/{agent_id:str}/forget", guards=[WRITE], status_code=200,
        responses=problems(409, 422), response_headers=[COMMAND_HEADERS[0], COMMAND_HEADERS[2]],
    )  # fmt: skip
    async def forget(
        self,
        request: Request[Any, Any, Any],
        agent_id: str,
        data: ForgetIn,
        contexts: Contexts,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ForgetOut]:
        """List (``dry_run``) or invalidate the agent's active memories created before
        ``older_than`` and/or no stronger than ``max_strength``: at most ``limit`` a run,
        weakest first; ``next_cursor`` continues (same strengths as the first run)."""
        data = await strict_body(request, ForgetIn) or data
        if data.older_than is None and data.max_strength is None:
            raise ProblemError(
                400,
                "name older_than, max_strength or both",
                errors=[{"field": "body", "source": "body", "message": "no criterion"}],
            )
        now, after = datetime.now(UTC), None
        raw = decode_cursor(data.cursor)
        if raw is not None:
            try:
                now = datetime.fromisoformat(raw[0])
                after = (float(raw[1]), UUID(raw[2]))
            except (TypeError, ValueError, IndexError, KeyError):
                raise ProblemError(400, "cursor is not one this API returned") from None
        idem = await idempotency(request, idempotency_key)
        async with snapshot(request) as conn:
            rows = await views.forget_candidates(
                conn,
                agent_id=agent_id,
                now=now,
                older_than=None if data.older_than is None else aware(data.older_than),
                max_strength=data.max_strength,
                limit=data.limit + 1,
                after=after,
            )
        page = [ForgetCandidate(r["id"], r["created_at"], r["strength"]) for r in rows]
        next_cursor = None
        if len(page) > data.limit:
            page = page[: data.limit]
            last = page[-1]
            next_cursor = encode_cursor([now.isoformat(), last.strength, str(last.id)])
        if data.dry_run:
            body = ForgetOut(dry_run=True, count=len(page), items=page, next_cursor=next_cursor)
            return Response(body)
        by_id = {c.id: c for c in page}

        def respond(changed: list[Memory]) -> CommandResponse:
            items = [by_id[m.id] for m in changed]
            out = ForgetOut(dry_run=False, count=len(items), items=items, next_cursor=next_cursor)
            return 200, to_builtins(out)

        return await run_command(
            request,
            lambda: contexts.memory.forget(list(by_id), data.reason, respond, idem=idem),
        )


def _instant(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
