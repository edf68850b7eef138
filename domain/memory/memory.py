"""The Memory aggregate: one thing an agent observed or concluded, and its lifecycle.

A memory belongs to one agent and has a ``kind`` (observation, fact, reflection,
plan), an ``importance`` in [0, 1], when it ``occurred`` and, sealed under its own key
(``domain.memory.sealing``), its text: ``content``, ``entities`` (name, type),
``relations`` (subject, predicate, object), ``tags`` and ``source``.

Tickers in the content become entities of type ``ticker`` (the rule, applied to the
content only): a cashtag — ``$`` then 1-5 capital letters, optionally ``.`` and 1-2
more (``$AAPL``, ``$BRK.B``) — or an exchange prefix ``NASDAQ:``, ``NYSE:``, ``AMEX:``,
``LSE:`` or ``TSX:`` before such a symbol (``NYSE:IBM``). Bare capitalised words are
not taken (``CEO``, ``USA`` and ``AI`` would be false positives); declare those as
entities. Entity identity within an agent's graph is the name, compared case-blind,
and the type.

Lifecycle events, each with who and why in its metadata: ``Recorded``, ``Reinforced``
(an access by a search hit, at most once an hour, or explicit feedback), ``Invalidated``
(a reason, and the successor when a newer memory supersedes it), ``Restored``,
``Erased`` (the key is destroyed: the sealed text can no longer be read anywhere).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from domain.base import Aggregate
from domain.errors import ConflictError, InvalidFieldsError
from domain.memory.strength import (
    ACCESS_INTERVAL_SECONDS,
    Curve,
    Reinforcement,
    Strength,
    curve,
    strength_at,
)

KINDS: tuple[str, ...] = ("observation", "fact", "reflection", "plan")
# Text is blank when it holds nothing but white space, as Python's str.strip() and as the
# OpenAPI document's (ECMAScript) regular expressions each count it: the union of both,
# written out so the same pattern means the same thing in both dialects.
NON_BLANK = (
    r"[^\t\n\v\f\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a"
    r"\u2028\u2029\u202f\u205f\u3000\ufeff]"
)
_NON_BLANK = re.compile(NON_BLANK)

AGENT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$")
MAX_CONTENT = 10_000
MAX_ENTITIES = 50
MAX_RELATIONS = 50
MAX_TAGS = 20
MAX_NAME = 200
TICKER_PATTERN = re.compile(
    r"(?:\$|\b(?:NASDAQ|NYSE|AMEX|LSE|TSX):)([A-Z]{1,5}(?:\.[A-Z]{1,2})?)\b"
)


class MemoryErasedError(ConflictError):
    """The memory was erased: its text is gone and it takes no more changes (409)."""


class MemoryStateError(ConflictError):
    """The command does not fit the memory's state (restore an active memory...)."""


def recognise_tickers(content: str) -> list[str]:
    """Tickers named in the content, in order of first mention (see the module rule)."""
    seen: dict[str, None] = {}
    for match in TICKER_PATTERN.finditer(content):
        seen.setdefault(match.group(1), None)
    return list(seen)


@dataclass(frozen=True)
class Draft:
    """A checked memory before it is sealed and recorded."""

    agent_id: str
    kind: str
    importance: float
    occurred_at: datetime | None
    supersedes: UUID | None
    document: dict[str, Any] = field(default_factory=dict)  # the text to seal


def _text(
    raw: Any, name: str, errors: list[dict[str, str]], limit: int = MAX_NAME, *, empty: bool = False
) -> str:
    if not isinstance(raw, str):
        errors.append({"field": name, "message": "must be text"})
        return ""
    value = raw.strip()
    if not _NON_BLANK.search(raw) and not empty:
        errors.append({"field": name, "message": "must not be empty"})
    elif len(raw) > limit:  # as written, as the OpenAPI document's maxLength counts
        errors.append({"field": name, "message": f"must be at most {limit} characters"})
    elif "\x00" in value:
        errors.append({"field": name, "message": "must not contain NUL characters"})
    return value


def _entities(raw: Any, prefix: str, errors: list[dict[str, str]]) -> list[dict[str, str]]:
    if not isinstance(raw, list) or len(raw) > MAX_ENTITIES:
        errors.append({"field": prefix, "message": f"must be a list of at most {MAX_ENTITIES}"})
        return []
    out: dict[tuple[str, str], dict[str, str]] = {}  # one per name (case-blind) and type
    for i, item in enumerate(raw):
        where = f"{prefix}[{i}]"
        if not isinstance(item, dict):
            errors.append({"field": where, "message": "must be {name, type}"})
            continue
        name = _text(item.get("name"), f"{where}.name", errors)
        kind = _text(item.get("type", "concept"), f"{where}.type", errors, 50).lower()
        out.setdefault((name.lower(), kind), {"name": name, "type": kind})
    return list(out.values())


def _relations(raw: Any, prefix: str, errors: list[dict[str, str]]) -> list[dict[str, str]]:
    if not isinstance(raw, list) or len(raw) > MAX_RELATIONS:
        errors.append({"field": prefix, "message": f"must be a list of at most {MAX_RELATIONS}"})
        return []
    out = []
    for i, item in enumerate(raw):
        where = f"{prefix}[{i}]"
        if not isinstance(item, dict):
            errors.append({"field": where, "message": "must be {subject, predicate, object}"})
            continue
        out.append(
            {part: _text(item.get(part), f"{where}.{part}", errors)
             for part in ("subject", "predicate", "object")}
        )  # fmt: skip
    return out


def _instant(raw: Any, name: str, errors: list[dict[str, str]]) -> datetime | None:
    if raw is None:
        return None
    if isinstance(raw, datetime):
        moment = raw
    else:
        try:
            moment = datetime.fromisoformat(str(raw))
        except ValueError:
            errors.append({"field": name, "message": "must be an ISO 8601 timestamp"})
            return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_memory(raw: dict[str, Any], prefix: str = "") -> Draft:
    """A memory from a request mapping; every bad field is reported at once (HTTP 400)."""
    errors: list[dict[str, str]] = []
    known = {
        "agent_id", "content", "kind", "importance", "entities", "relations", "source",
        "occurred_at", "tags", "supersedes",
    }  # fmt: skip
    for name in sorted(set(raw) - known):
        errors.append({"field": prefix + name, "message": "is not a known field"})
    agent_id = raw.get("agent_id")
    if not isinstance(agent_id, str) or not AGENT_PATTERN.match(agent_id):
        errors.append(
            {"field": prefix + "agent_id",
             "message": "must be 1-100 characters of letters, digits and . _ : @ -"}
        )  # fmt: skip
    content = _text(raw.get("content"), prefix + "content", errors, MAX_CONTENT)
    kind = raw.get("kind", "observation")
    if kind not in KINDS:
        errors.append({"field": prefix + "kind", "message": f"must be one of {', '.join(KINDS)}"})
    importance = raw.get("importance", 0.5)
    if (
        isinstance(importance, bool)
        or not isinstance(importance, int | float)
        or not 0.0 <= importance <= 1.0
    ):
        errors.append({"field": prefix + "importance", "message": "must be between 0 and 1"})
        importance = 0.0
    entities = _entities(raw.get("entities", []), prefix + "entities", errors)
    relations = _relations(raw.get("relations", []), prefix + "relations", errors)
    tags_raw = raw.get("tags", [])
    tags: list[str] = []
    if not isinstance(tags_raw, list) or len(tags_raw) > MAX_TAGS:
        errors.append(
            {"field": prefix + "tags", "message": f"must be a list of at most {MAX_TAGS}"}
        )
    else:
        tags = sorted({_text(t, f"{prefix}tags[{i}]", errors, 64).lower()
                       for i, t in enumerate(tags_raw)})  # fmt: skip
    source = _text(raw.get("source", ""), prefix + "source", errors, MAX_NAME, empty=True)
    occurred_at = _instant(raw.get("occurred_at"), prefix + "occurred_at", errors)
    supersedes: UUID | None = None
    if raw.get("supersedes") is not None:
        try:
            supersedes = UUID(str(raw["supersedes"]))
        except ValueError:
            errors.append({"field": prefix + "supersedes", "message": "must be a memory id"})
    if errors:
        raise InvalidFieldsError(errors)
    declared = {(e["name"].lower(), e["type"]) for e in entities}
    for ticker in recognise_tickers(content):
        if (ticker.lower(), "ticker") not in declared:
            entities.append({"name": ticker, "type": "ticker"})
            declared.add((ticker.lower(), "ticker"))
    return Draft(
        agent_id=str(agent_id),
        kind=str(kind),
        importance=float(importance),
        occurred_at=occurred_at,
        supersedes=supersedes,
        document={
            "content": content,
            "entities": entities,
            "relations": relations,
            "tags": tags,
            "source": source,
        },
    )


class Memory(Aggregate):
    class Recorded(Aggregate.Created):
        agent_id: str
        kind: str
        importance: float
        occurred_at: str
        sealed: str
        supersedes: str | None

    class Reinforced(Aggregate.Event):
        source: str  # "access" or "feedback"
        value: float

        def apply(self, memory: Memory) -> None:
            memory.reinforcements.append(Reinforcement(self.timestamp, self.source, self.value))

    class Invalidated(Aggregate.Event):
        reason: str
        superseded_by: str | None

        def apply(self, memory: Memory) -> None:
            memory.invalidated = True
            memory.invalidation_reason = self.reason
            memory.superseded_by = self.superseded_by

    class Restored(Aggregate.Event):
        reason: str

        def apply(self, memory: Memory) -> None:
            memory.invalidated = False
            memory.superseded_by = None

    class Erased(Aggregate.Event):
        reason: str

        def apply(self, memory: Memory) -> None:
            memory.erased = True

    def __init__(  # noqa: PLR0913
        self,
        agent_id: str,
        kind: str,
        importance: float,
        occurred_at: str,
        sealed: str,
        supersedes: str | None,
        meta: dict[str, str],
    ) -> None:
        self.agent_id = agent_id
        self.kind = kind
        self.importance = importance
        self.occurred_at = occurred_at
        self.sealed = sealed
        self.supersedes = supersedes
        self.reinforcements: list[Reinforcement] = []
        self.invalidated = False
        self.invalidation_reason = ""
        self.superseded_by: str | None = None
        self.erased = False

    @classmethod
    def record(cls, memory_id: UUID, draft: Draft, sealed: str, now: datetime) -> Memory:
        return cls._create(
            cls.Recorded,
            id=memory_id,
            agent_id=draft.agent_id,
            kind=draft.kind,
            importance=draft.importance,
            occurred_at=(draft.occurred_at or now).isoformat(),
            sealed=sealed,
            supersedes=None if draft.supersedes is None else str(draft.supersedes),
        )

    @property
    def status(self) -> str:
        return "erased" if self.erased else "invalidated" if self.invalidated else "active"

    def curve(self, as_of: datetime | None = None) -> Curve:
        return curve(
            self.importance,
            self.created_on,
            (r for r in self.reinforcements if as_of is None or r.at <= as_of),
        )

    def strength(self, as_of: datetime) -> Strength:
        return strength_at(self.curve(as_of), as_of)

    def _check_not_erased(self) -> None:
        if self.erased:
            raise MemoryErasedError(f"memory {self.id} was erased")

    def access(self, at: datetime) -> bool:
        """A search hit: reinforce unless accessed within the hour (or not active)."""
        if self.erased or self.invalidated:
            return False
        last = max((r.at for r in self.reinforcements if r.source == "access"), default=None)
        if last is not None and (at - last).total_seconds() < ACCESS_INTERVAL_SECONDS:
            return False
        self.trigger_event(self.Reinforced, source="access", value=1.0)
        return True

    def feedback(self, value: float) -> None:
        self._check_not_erased()
        if self.invalidated:
            raise MemoryStateError(f"memory {self.id} is invalidated; restore it first")
        if not -1.0 <= value <= 1.0:
            raise InvalidFieldsError([{"field": "value", "message": "must be between -1 and 1"}])
        self.trigger_event(self.Reinforced, source="feedback", value=float(value))

    def invalidate(self, reason: str, superseded_by: UUID | None = None) -> bool:
        self._check_not_erased()
        if self.invalidated:
            return False
        self.trigger_event(
            self.Invalidated,
            reason=reason,
            superseded_by=None if superseded_by is None else str(superseded_by),
        )
        return True

    def restore(self, reason: str) -> None:
        self._check_not_erased()
        if not self.invalidated:
            raise MemoryStateError(f"memory {self.id} is not invalidated")
        self.trigger_event(self.Restored, reason=reason)

    def erase(self, reason: str) -> bool:
        if self.erased:
            return False
        self.trigger_event(self.Erased, reason=reason)
        return True
