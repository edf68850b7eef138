"""Agent memory resource: /api/v1/memory (F11.3.1–F11.3.5).

Who may do what: agents (an ``agent`` key, bound to one agent id) write, reinforce and
read their own agent's memories only — another agent's memory is 404 to them, and
naming another agent is 403; viewers, operators and auditors read all; operators and
admins write for any agent, invalidate, restore, erase and forget.

Search hits reinforce the memories they return (each at most once an hour) after the
response is sent, as the searching principal; ranking uses the strength before that.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import anyio.to_thread
import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.background_tasks import BackgroundTask
from litestar.params import Parameter

from api.auth import WRITE, allow
from api.commands import idempotency, principal_of, run_command, to_builtins
from api.consistency import wait_for
from api.controllers.models import WaitFor, aware
from api.errors import ProblemError
from api.memory_schemas import (
    ForgetCandidate,
    ForgetIn,
    ForgetOut,
    GraphOut,
    HistoryEntry,
    Invalidation,
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
from api.pagination import decode_cursor, encode_cursor
from application.base import Response as CommandResponse
from application.contexts import Contexts
from domain.errors import InvalidFieldsError
from domain.memory.memory import KINDS, Draft, Memory, parse_memory
from domain.memory.strength import Curve, Strength, strength_at
from domain.metadata import acting_as
from projections import memory as views
from projections.memory_graph import build_graph

READ_MEMORY = allow("viewer", "operator", "auditor", "agent")
WRITE_MEMORY = allow("operator", "agent")
MAX_SEARCH = 100
MAX_TIMELINE = 500
MAX_GRAPH = 2000
LABEL = 80


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
            errors += exc.errors
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
            if memory.invalidated
            else None
        ),
        strength=strength_out(memory.strength(as_of or datetime.now(UTC))),
        version=memory.version,
        history=_history(events),
        as_of=as_of,
    )


async def _change(
    request: Request[Any, Any, Any],
    contexts: Contexts,
    memory_id: UUID,
    act: Any,
    agent_scope: str | None = None,
) -> Response[Any]:
    """Run one change of a memory as a command; answers with the memory's reference."""
    idem = await idempotency(request)
    return await run_command(
        request,
        lambda: contexts.memory.change(
            memory_id, act, _respond_ref(200), agent_scope=agent_scope, idem=idem
        ),
    )


class MemoryController(Controller):
    path = "/api/v1/memory"
    tags = ["agent memory"]

    @post("/", guards=[WRITE_MEMORY], status_code=201)
    async def record(
        self, request: Request[Any, Any, Any], data: MemoryIn, contexts: Contexts
    ) -> Response[Any]:
        """Record a memory; its text is sealed under a key of its own."""
        _check_agent(request, data.agent_id)
        [draft] = _drafts([data], None)
        idem = await idempotency(request)

        def respond(memories: list[Memory]) -> CommandResponse:
            return 201, to_builtins(_ref(memories[0]))

        return await run_command(
            request,
            lambda: contexts.memory.record([draft], idem=idem, respond=respond),
            location=lambda body: f"{self.path}/{body['id']}",
        )

    @post("/batch", guards=[WRITE_MEMORY], status_code=201)
    async def record_batch(
        self, request: Request[Any, Any, Any], data: MemoryBatch, contexts: Contexts
    ) -> Response[Any]:
        """Record up to 1,000 memories in one transaction: all of them or none."""
        for item in data.memories:
            _check_agent(request, item.agent_id)
        drafts = _drafts(data.memories, "memories")
        idem = await idempotency(request)

        def respond(memories: list[Memory]) -> CommandResponse:
            return 201, to_builtins(MemoryRefs([_ref(m) for m in memories]))

        return await run_command(
            request, lambda: contexts.memory.record(drafts, idem=idem, respond=respond)
        )

    @get("/search", guards=[READ_MEMORY])
    async def search(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        contexts: Contexts,
        q: Annotated[str, Parameter(min_length=1, max_length=500)],
        agent_id: str | None = None,
        kind: Annotated[str | None, Parameter(description=", ".join(KINDS))] = None,
        start: datetime | None = None,
        end: datetime | None = None,
        include_invalidated: bool = False,
        limit: Annotated[int, Parameter(ge=1, le=MAX_SEARCH)] = 20,
        wait: WaitFor = None,
    ) -> Response[SearchPage]:
        """Keyword search: full-text (quoted phrases, OR, -exclusions) and trigram matches
        for partial words, ranked by relevance × (0.5 + 0.5 × strength)."""
        await wait_for(request, wait)
        scope = _scope(request)
        if scope is not None:
            if agent_id is not None and agent_id != scope:
                raise ProblemError(403, f"this key may only search agent {scope!r}")
            agent_id = scope
        if kind is not None and kind not in KINDS:
            raise ProblemError(400, f"kind must be one of {', '.join(KINDS)}")
        if not q.strip():
            raise ProblemError(400, "q must not be blank")
        now = datetime.now(UTC)
        async with request.app.state.pool.acquire() as conn:
            rows = await views.search(
                conn,
                q=q,
                now=now,
                agent_id=agent_id,
                kind=kind,
                start=None if start is None else aware(start),
                end=None if end is None else aware(end),
                include_invalidated=include_invalidated,
                limit=limit,
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
                snippet=r["snippet"] or "",
                score=ScoreParts(
                    score=r["score"],
                    relevance=r["relevance"],
                    text_rank=r["text_rank"],
                    trigram=r["trigram"],
                    strength=r["strength"],
                ),
                strength=strength_out(row_strength(r, now)),
            )
            for r in rows
        ]
        principal = principal_of(request).name
        correlation_id = request.scope["state"]["correlation_id"]

        async def reinforce() -> None:
            def run() -> None:
                with acting_as(principal, correlation_id):
                    contexts.memory.access([h.id for h in hits if h.status == "active"], now)

            await anyio.to_thread.run_sync(run)

        return Response(
            SearchPage(items=hits, query=q), background=BackgroundTask(reinforce) if hits else None
        )

    @get("/{memory_id:uuid}", guards=[READ_MEMORY])
    async def get_memory(
        self,
        request: Request[Any, Any, Any],
        memory_id: UUID,
        contexts: Contexts,
        as_of: datetime | None = None,
    ) -> MemoryOut:
        """The memory (its text unless erased), its strength and components, and its
        full event history; ``as_of`` replays it up to that time."""
        scope = _scope(request)

        def load() -> MemoryOut:
            memory, events = contexts.memory.history(memory_id, scope)
            if as_of is None:
                return memory_out(memory, contexts.memory.document(memory), events, None)
            moment = aware(as_of)
            found = contexts.memory.as_of([memory_id], moment)
            if not found:
                raise ProblemError(404, f"memory {memory_id} did not exist at {moment}")
            past, document = found[0]
            shown = [e for e in events if e.timestamp <= moment]
            return memory_out(past, document, shown, moment)

        return await anyio.to_thread.run_sync(load)

    @delete("/{memory_id:uuid}", guards=[WRITE], status_code=200)
    async def invalidate(
        self,
        request: Request[Any, Any, Any],
        memory_id: UUID,
        contexts: Contexts,
        reason: Annotated[str, Parameter(min_length=1, max_length=1000)],
        erase: bool = False,
    ) -> Response[Any]:
        """Invalidate (restorable), or with ``erase=true`` erase: the key is destroyed,
        the text is gone for good, the log keeps who erased it, when and why."""
        if erase:
            idem = await idempotency(request)
            return await run_command(
                request,
                lambda: contexts.memory.erase(memory_id, reason, _respond_ref(200), idem=idem),
            )
        return await _change(request, contexts, memory_id, lambda m: m.invalidate(reason))

    @post("/{memory_id:uuid}/restore", guards=[WRITE], status_code=200)
    async def restore(
        self,
        request: Request[Any, Any, Any],
        memory_id: UUID,
        contexts: Contexts,
        data: RestoreIn | None = None,
    ) -> Response[Any]:
        reason = data.reason if data is not None else ""
        return await _change(request, contexts, memory_id, lambda m: m.restore(reason))

    @post("/{memory_id:uuid}/reinforce", guards=[WRITE_MEMORY], status_code=200)
    async def reinforce(
        self,
        request: Request[Any, Any, Any],
        memory_id: UUID,
        contexts: Contexts,
        data: ReinforceIn | None = None,
    ) -> Response[Any]:
        """Explicit feedback: a value in [-1, 1] (default 1) changes the stability."""
        value = data.value if data is not None else 1.0
        return await _change(
            request, contexts, memory_id, lambda m: m.feedback(value), _scope(request)
        )

    @get("/agents/{agent_id:str}", guards=[READ_MEMORY])
    async def graph(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        agent_id: str,
        contexts: Contexts,
        min_strength: Annotated[float | None, Parameter(ge=0.0, le=1.0)] = None,
        include_invalidated: bool = False,
        limit: Annotated[int, Parameter(ge=1, le=MAX_GRAPH)] = 500,
        as_of: datetime | None = None,
        wait: WaitFor = None,
    ) -> GraphOut:
        """The agent's knowledge graph: entities and memories (with strength) as nodes;
        relations, mentions and supersessions as edges; ``as_of`` as it was then."""
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
        async with request.app.state.pool.acquire() as conn:
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
                    f"SELECT id FROM {views.MEMORIES} WHERE agent_id = $1 AND created_at <= $2",
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

    @get("/agents/{agent_id:str}/timeline", guards=[READ_MEMORY])
    async def timeline(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        agent_id: str,
        start: datetime | None = None,
        end: datetime | None = None,
        bucket: Literal["day", "week"] = "day",
        include_invalidated: bool = True,
        limit: Annotated[int, Parameter(ge=1, le=MAX_TIMELINE)] = 100,
        cursor: str | None = None,
        wait: WaitFor = None,
    ) -> TimelineOut:
        """Memories in time order with their lifecycle marks, and counts per bucket."""
        await wait_for(request, wait)
        _check_agent(request, agent_id)
        after = None
        raw = decode_cursor(cursor)
        if raw is not None:
            try:
                after = (datetime.fromisoformat(raw[0]), UUID(raw[1]))
            except (TypeError, ValueError, IndexError):
                raise ProblemError(400, "cursor is not one this API returned") from None
        start_at = None if start is None else aware(start)
        end_at = None if end is None else aware(end)
        now = datetime.now(UTC)
        async with request.app.state.pool.acquire() as conn:
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

    @post("/agents/{agent_id:str}/forget", guards=[WRITE], status_code=200)
    async def forget(
        self,
        request: Request[Any, Any, Any],
        agent_id: str,
        data: ForgetIn,
        contexts: Contexts,
    ) -> Response[Any]:
        """List (``dry_run``) or invalidate the agent's active memories created before
        ``older_than`` and/or no stronger than ``max_strength``."""
        if data.older_than is None and data.max_strength is None:
            raise ProblemError(
                400,
                "name older_than, max_strength or both",
                errors=[{"field": "body", "source": "body", "message": "no criterion"}],
            )
        now = datetime.now(UTC)
        async with request.app.state.pool.acquire() as conn:
            rows = await views.forget_candidates(
                conn,
                agent_id=agent_id,
                now=now,
                older_than=None if data.older_than is None else aware(data.older_than),
                max_strength=data.max_strength,
            )
        items = [ForgetCandidate(r["id"], r["created_at"], r["strength"]) for r in rows]
        headers = {}
        if not data.dry_run and items:
            principal = principal_of(request).name
            correlation_id = request.scope["state"]["correlation_id"]

            def run() -> tuple[list[UUID], int]:
                with acting_as(principal, correlation_id):
                    return contexts.memory.invalidate_many([i.id for i in items], data.reason)

            changed, position = await anyio.to_thread.run_sync(run)
            done = set(changed)
            items = [i for i in items if i.id in done]
            headers["Aimm-Position"] = f"memory:{position}"
        body = ForgetOut(dry_run=data.dry_run, count=len(items), items=items)
        return Response(to_builtins(body), headers=headers)


def _instant(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
