"""Request and response bodies of the agent-memory endpoints (msgspec Structs).

Requests are typed and decoded strictly (``api.contract.strict_body``: a
string where the schema says a number or a boolean is a 400 naming that field). Every
rule ``domain.memory.memory.parse_memory`` checks is declared here too, so the OpenAPI
document says what the API refuses: lengths, counts, ranges, kinds, the agent id's
pattern, and non-blank text (``NON_BLANK``: at least one non-space character). A
memory's rules are declared for the document only (``documented``) and checked by
``parse_memory``, which names every bad field at once (in a batch,
``memories[i].field``) where the decoder would stop at the first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from msgspec import Meta, Struct

from domain.memory.memory import (
    AGENT_PATTERN,
    KINDS,
    MAX_CONTENT,
    MAX_ENTITIES,
    MAX_NAME,
    MAX_RELATIONS,
    MAX_TAGS,
    NON_BLANK,
)


def documented(**schema: Any) -> Meta:
    """JSON Schema for the OpenAPI document only: ``parse_memory`` enforces it."""
    return Meta(extra_json_schema={"extra": schema})


def text_rule(limit: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": limit, "pattern": NON_BLANK}


Reason = Annotated[str, Meta(max_length=1000)]
Name = Annotated[str, documented(**text_rule(MAX_NAME))]
AgentId = Annotated[str, documented(pattern=AGENT_PATTERN.pattern)]
Kind = Literal["observation", "fact", "reflection", "plan"]
Version = Annotated[int, Meta(ge=1, le=10**18 - 1)]
LIMIT = Annotated[int, Meta(ge=1, le=500, description="page size, 1-500 (default 50)")]
CURSOR = Annotated[str, Meta(min_length=1, max_length=2000, pattern=r"^[A-Za-z0-9_-]+$")]


class EntityIn(Struct, forbid_unknown_fields=True):
    name: Name
    type: Annotated[str, documented(**text_rule(50))] = "concept"


class RelationIn(Struct, forbid_unknown_fields=True):
    subject: Name
    predicate: Name
    object: Name


class MemoryIn(Struct, forbid_unknown_fields=True):
    """``kind`` observation (default), fact, reflection or plan; ``importance`` 0-1
    (default 0.5); content up to 10,000 characters; up to 50 entities, 50 relations
    and 20 tags; ``supersedes`` invalidates an older memory of the same agent."""

    agent_id: AgentId
    content: Annotated[str, documented(**text_rule(MAX_CONTENT))]
    kind: Annotated[str, documented(enum=list(KINDS))] = "observation"
    importance: Annotated[float, documented(minimum=0.0, maximum=1.0)] = 0.5
    entities: Annotated[list[EntityIn], documented(maxItems=MAX_ENTITIES)] = []
    relations: Annotated[list[RelationIn], documented(maxItems=MAX_RELATIONS)] = []
    source: Annotated[str, documented(maxLength=MAX_NAME)] = ""
    occurred_at: datetime | None = None
    tags: Annotated[list[str], documented(maxItems=MAX_TAGS, items=text_rule(64))] = []
    supersedes: UUID | None = None


class MemoryBatch(Struct, forbid_unknown_fields=True):
    memories: Annotated[list[MemoryIn], Meta(min_length=1, max_length=1000)]


class StrengthOut(Struct):
    strength: float
    retention: float
    importance: float
    stability_days: float
    age_days: float
    days_since_reinforced: float
    accesses: int
    feedback: int
    as_of: datetime


class MemoryRef(Struct):
    """What a command answers: no memory text (the log keeps responses; see README)."""

    id: UUID
    agent_id: str
    status: str
    version: int
    strength: StrengthOut


class MemoryRefs(Struct):
    items: list[MemoryRef]


class Invalidation(Struct):
    reason: str
    superseded_by: UUID | None


class HistoryEntry(Struct):
    version: int
    type: str
    at: datetime
    principal: str
    correlation_id: str | None
    detail: dict[str, Any]


class MemoryOut(Struct):
    id: UUID
    agent_id: str
    kind: str
    importance: float
    occurred_at: datetime
    created_at: datetime
    status: str
    content: str | None  # None once erased
    entities: list[dict[str, str]]
    relations: list[dict[str, str]]
    tags: list[str]
    source: str | None
    supersedes: UUID | None
    invalidation: Invalidation | None
    strength: StrengthOut
    version: int
    history: list[HistoryEntry]
    as_of: datetime | None = None


class ReinforceIn(Struct, forbid_unknown_fields=True):
    """Explicit feedback: -1 (wrong, weaken) to 1 (useful, strengthen)."""

    value: Annotated[float, Meta(ge=-1.0, le=1.0)] = 1.0
    expected_version: Version | None = None


class RestoreIn(Struct, forbid_unknown_fields=True):
    reason: Reason = ""
    expected_version: Version | None = None


class ForgetIn(Struct, forbid_unknown_fields=True):
    """At least one of ``older_than`` and ``max_strength``. A run invalidates (or with
    ``dry_run`` lists) at most ``limit`` memories, weakest first; ``next_cursor`` (set
    when more match) continues where it stopped, with the strengths of the first run."""

    older_than: datetime | None = None
    max_strength: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None
    dry_run: bool = False
    reason: Reason = "forgotten in bulk"
    limit: LIMIT = 50
    cursor: CURSOR | None = None


class ForgetCandidate(Struct):
    id: UUID
    created_at: datetime
    strength: float


class ForgetOut(Struct):
    """``count``: how many this run invalidated (or, dry, would): ``len(items)``."""

    dry_run: bool
    count: int
    items: list[ForgetCandidate]
    next_cursor: str | None


class ScoreParts(Struct):
    score: float
    relevance: float
    text_rank: float
    trigram: float
    strength: float


class SearchHit(Struct):
    id: UUID
    agent_id: str
    kind: str
    importance: float
    occurred_at: datetime
    created_at: datetime
    status: str
    tags: list[str]
    source: str
    snippet: str
    score: ScoreParts
    strength: StrengthOut


class SearchPage(Struct):
    items: list[SearchHit]
    query: str
    next_cursor: str | None


class GraphOut(Struct):
    agent_id: str
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    as_of: datetime | None = None


class TimelineMark(Struct):
    mark: str
    at: datetime
    detail: dict[str, Any]


class TimelineItem(Struct):
    id: UUID
    kind: str
    status: str
    importance: float
    occurred_at: datetime
    created_at: datetime
    label: str | None
    strength: StrengthOut
    marks: list[TimelineMark]


class TimelineCount(Struct):
    bucket: datetime
    created: int
    reinforced: int
    invalidated: int
    restored: int
    erased: int


class AgentSummary(Struct):
    agent_id: str
    memories: int
    active: int
    invalidated: int
    erased: int
    last_recorded_at: datetime


class AgentPage(Struct):
    items: list[AgentSummary]
    next_cursor: str | None


class TimelineOut(Struct):
    agent_id: str
    bucket: Literal["day", "week"]
    items: list[TimelineItem]
    counts: list[TimelineCount]
    next_cursor: str | None
