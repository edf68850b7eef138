"""Request and response bodies of the agent-memory endpoints (msgspec Structs).

Requests are typed (a wrong type is a 400 naming that field); bounds and the other
rules are checked by ``domain.memory.memory.parse_memory``, which names every bad
field at once (in a batch, as ``memories[i].field``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from msgspec import Meta, Struct

Reason = Annotated[str, Meta(max_length=1000)]


class EntityIn(Struct, forbid_unknown_fields=True):
    name: str
    type: str = "concept"


class RelationIn(Struct, forbid_unknown_fields=True):
    subject: str
    predicate: str
    object: str


class MemoryIn(Struct, forbid_unknown_fields=True):
    """``kind`` observation (default), fact, reflection or plan; ``importance`` 0-1
    (default 0.5); content up to 10,000 characters; up to 50 entities, 50 relations
    and 20 tags; ``supersedes`` invalidates an older memory of the same agent."""

    agent_id: str
    content: str
    kind: str = "observation"
    importance: float = 0.5
    entities: list[EntityIn] = []
    relations: list[RelationIn] = []
    source: str = ""
    occurred_at: datetime | None = None
    tags: list[str] = []
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


class RestoreIn(Struct, forbid_unknown_fields=True):
    reason: Reason = ""


class ForgetIn(Struct, forbid_unknown_fields=True):
    older_than: datetime | None = None
    max_strength: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None
    dry_run: bool = False
    reason: Reason = "forgotten in bulk"


class ForgetCandidate(Struct):
    id: UUID
    created_at: datetime
    strength: float


class ForgetOut(Struct):
    dry_run: bool
    count: int
    items: list[ForgetCandidate]


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


class TimelineOut(Struct):
    agent_id: str
    bucket: Literal["day", "week"]
    items: list[TimelineItem]
    counts: list[TimelineCount]
    next_cursor: str | None
