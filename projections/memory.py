"""The read models of agent memory: the projection of the ``memory`` log.

- ``memories``: one row per memory with its text unsealed (``content``, ``tags``,
  ``source``), a full-text vector over content and tags, its status and the strength
  components (stability, anchor, importance, access and feedback counts), which
  ``domain.memory.strength.SQL_STRENGTH`` turns into a strength at query time.
- ``memory_entities`` and ``memory_relations``: what each memory declared, for the graph.
- ``memory_lifecycle``: one mark per event (created, reinforced, invalidated, restored,
  erased) with who (principal and correlation id) and why, never the memory's text: the
  timeline, its counts, and the event history a memory's detail lists.
- ``memory_words``: the vocabulary partial-word search expands into.

A batch is folded in memory in log order: memories recorded in it are written once, in
their final state (an erased one without text), memories recorded earlier get one
set-based UPDATE. Keys come in one query and the text is unsealed here; erasure clears
the text and deletes the entities and relations in the projector's transaction. The
projection never touches a key: destroying it is the erase command's job
(``application.memory``), and a memory whose key is gone is simply shown without text.
Rows are found through primary keys only, which a rebuild's fresh tables have from
the start (their other indexes come once loaded).

The queries are in ``projections.memory_queries`` and the search in
``projections.memory_search``.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

import asyncpg
import msgspec

from domain.memory.sealing import unseal
from domain.memory.strength import (
    Curve,
    Reinforcement,
    initial_stability,
    step,
)
from infrastructure.memory_keys import fetch_keys
from projections.events import Event

log = logging.getLogger(__name__)

MEMORIES = "rm_memories"
ENTITIES = "rm_memory_entities"
RELATIONS = "rm_memory_relations"
LIFECYCLE = "rm_memory_lifecycle"

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode

# The columns a memory is read back with (all but the search vector).
COLUMNS = (
    "id", "agent_id", "kind", "importance", "occurred_at", "created_at", "created_by",
    "status", "content", "tags", "source", "supersedes", "superseded_by", "invalidated_at",
    "invalidated_by", "invalidation_reason", "erased_at", "erased_by", "stability_days",
    "anchor_at", "accesses", "feedback", "last_access_at", "version", "updated_at",
)  # fmt: skip
# What the fold changes on a memory recorded in an earlier batch.
_CHANGING = (
    "status", "superseded_by", "invalidated_at", "invalidated_by", "invalidation_reason",
    "erased_at", "erased_by", "stability_days", "anchor_at", "accesses", "feedback",
    "last_access_at", "version", "updated_at",
)  # fmt: skip
_RECORD_TYPES = (
    "id uuid, agent_id text, kind text, importance float8, occurred_at timestamptz, "
    "created_at timestamptz, created_by text, status text, content text, tags text[], "
    "source text, supersedes uuid, superseded_by uuid, invalidated_at timestamptz, "
    "invalidated_by text, invalidation_reason text, erased_at timestamptz, erased_by text, "
    "stability_days float8, anchor_at timestamptz, accesses integer, feedback integer, "
    "last_access_at timestamptz, version integer, updated_at timestamptz"
)
# The search vector: content and tags, English stemming; none once the text is gone.
_SEARCH_VECTOR = (
    "CASE WHEN r.content IS NULL THEN NULL "
    "ELSE to_tsvector('english', r.content || ' ' || array_to_string(r.tags, ' ')) END"
)
_MARKS = {
    "Memory.Reinforced": "reinforced",
    "Memory.Invalidated": "invalidated",
    "Memory.Restored": "restored",
    "Memory.Erased": "erased",
}


def _split(table: str) -> tuple[str | None, str]:
    schema, _, name = table.rpartition(".")
    return (schema or None), name


@dataclass(slots=True)
class _Memory:
    """A memory's row while a batch is folded (``COLUMNS``, plus what the fold needs)."""

    id: UUID
    agent_id: str
    status: str
    superseded_by: UUID | None
    invalidated_at: datetime | None
    invalidated_by: str | None
    invalidation_reason: str | None
    erased_at: datetime | None
    erased_by: str | None
    stability_days: float
    anchor_at: datetime
    accesses: int
    feedback: int
    last_access_at: datetime | None
    version: int
    updated_at: datetime
    # Only for a memory recorded in this batch:
    kind: str = ""
    importance: float = 0.0
    occurred_at: datetime | None = None
    created_at: datetime | None = None
    created_by: str = ""
    supersedes: UUID | None = None
    sealed: str = ""
    document: dict[str, Any] = field(default_factory=dict)
    erased_now: bool = False  # erased in this batch: clear the text written before

    def changes(self) -> dict[str, Any]:
        return {"id": self.id, "erase": self.erased_now, **{c: getattr(self, c) for c in _CHANGING}}

    def row(self) -> dict[str, Any]:
        doc = self.document
        return {
            "id": self.id, "agent_id": self.agent_id, "kind": self.kind,
            "importance": self.importance, "occurred_at": self.occurred_at,
            "created_at": self.created_at, "created_by": self.created_by,
            "content": doc.get("content"), "tags": doc.get("tags", []),
            "source": doc.get("source", ""), "supersedes": self.supersedes,
            **{c: getattr(self, c) for c in _CHANGING},
        }  # fmt: skip


def _recorded(e: Event) -> _Memory:
    d = e.data
    importance = float(d["importance"])
    supersedes = d.get("supersedes")
    return _Memory(
        id=e.aggregate_id,
        agent_id=d["agent_id"],
        status="active",
        superseded_by=None,
        invalidated_at=None,
        invalidated_by=None,
        invalidation_reason=None,
        erased_at=None,
        erased_by=None,
        stability_days=initial_stability(importance),
        anchor_at=e.timestamp,
        accesses=0,
        feedback=0,
        last_access_at=None,
        version=e.version,
        updated_at=e.timestamp,
        kind=d["kind"],
        importance=importance,
        occurred_at=datetime.fromisoformat(d["occurred_at"]),
        created_at=e.timestamp,
        created_by=e.meta.get("principal", "unknown"),
        supersedes=None if supersedes is None else UUID(supersedes),
        sealed=d["sealed"],
    )


def _fold(m: _Memory, e: Event) -> dict[str, Any]:
    """Apply a lifecycle event to ``m``; returns the detail of its lifecycle mark."""
    d, by = e.data, e.meta.get("principal", "unknown")
    m.version, m.updated_at = e.version, e.timestamp
    if e.type == "Memory.Reinforced":
        source, value = d["source"], float(d["value"])
        # a step uses neither the importance nor the recording time: only what the row has
        c = step(
            Curve(m.importance, m.anchor_at, m.stability_days, m.anchor_at, m.accesses, m.feedback),
            Reinforcement(e.timestamp, source, value),
        )  # fmt: skip
        m.stability_days, m.anchor_at = c.stability_days, c.anchor_at
        m.accesses, m.feedback = c.accesses, c.feedback
        if source == "access":
            m.last_access_at = e.timestamp
        return {"source": source, "value": value, "by": by}
    if e.type == "Memory.Invalidated":
        superseded_by = d.get("superseded_by")
        if m.status != "erased":
            m.status = "invalidated"
            m.superseded_by = None if superseded_by is None else UUID(superseded_by)
            m.invalidated_at, m.invalidated_by = e.timestamp, by
            m.invalidation_reason = d["reason"]
        return {"reason": d["reason"], "by": by, "superseded_by": superseded_by}
    if e.type == "Memory.Restored":
        if m.status != "erased":
            # As the aggregate: active again, no successor; the last invalidation stays.
            m.status, m.superseded_by = "active", None
        return {"reason": d["reason"], "by": by}
    # Memory.Erased
    m.status, m.erased_at, m.erased_by, m.erased_now = "erased", e.timestamp, by, True
    m.document = {}
    return {"reason": d["reason"], "by": by}


def _open(m: _Memory, keys: Mapping[UUID, bytes]) -> None:
    """Unseal ``m``'s text; without its key (erased later in the log) it has none."""
    key = keys.get(m.id)
    if key is None:
        return
    try:
        m.document = unseal(key, m.id, m.sealed)
    except ValueError:  # UnsealError, or sealed text that is not even base64
        # A tampered text or a mismatched key: shown without text rather than stopping
        # every projection of the memory log at this event.
        log.warning("memory %s: its key does not open its text", m.id)


class MemoryViews:
    name: ClassVar[str] = "memory"
    contexts: ClassVar[tuple[str, ...]] = ("memory",)
    tables: ClassVar[Mapping[str, Sequence[str]]] = {
        "memories": (
            """
            CREATE TABLE {memories} (
                id uuid PRIMARY KEY,
                agent_id text NOT NULL,
                kind text NOT NULL,
                importance double precision NOT NULL,
                occurred_at timestamptz NOT NULL,
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                status text NOT NULL CHECK (status IN ('active', 'invalidated', 'erased')),
                content text,
                tags text[] NOT NULL,
                source text NOT NULL,
                search tsvector,
                supersedes uuid,
                superseded_by uuid,
                invalidated_at timestamptz,
                invalidated_by text,
                invalidation_reason text,
                erased_at timestamptz,
                erased_by text,
                stability_days double precision NOT NULL,
                anchor_at timestamptz NOT NULL,
                accesses integer NOT NULL,
                feedback integer NOT NULL,
                last_access_at timestamptz,
                version integer NOT NULL,
                updated_at timestamptz NOT NULL
            ) WITH (fillfactor = 80)
            """,
            "CREATE INDEX ON {memories} USING gin (search)",
            # newest first, with what a search's first step reads: index-only scans
            "CREATE INDEX ON {memories} (created_at) INCLUDE (status, search)",
            "CREATE INDEX ON {memories} (agent_id, created_at, id) INCLUDE (status, search)",
            "CREATE INDEX ON {memories} (agent_id, occurred_at, id)",
            "CREATE INDEX ON {memories} (agent_id, status)",
        ),
        # ``n``: the place in the memory's list; (memory_id, n) finds a memory's rows.
        "memory_words": (
            """
            CREATE TABLE {memory_words} (
                word text PRIMARY KEY,
                memories integer NOT NULL
            )
            """,
            "CREATE INDEX ON {memory_words} USING gin (word gin_trgm_ops)",
        ),
        "memory_entities": (
            """
            CREATE TABLE {memory_entities} (
                memory_id uuid NOT NULL,
                n integer NOT NULL,
                agent_id text NOT NULL,
                name text NOT NULL,
                type text NOT NULL,
                PRIMARY KEY (memory_id, n)
            )
            """,
            "CREATE INDEX ON {memory_entities} (agent_id, lower(name), type)",
        ),
        "memory_relations": (
            """
            CREATE TABLE {memory_relations} (
                memory_id uuid NOT NULL,
                n integer NOT NULL,
                agent_id text NOT NULL,
                subject text NOT NULL,
                predicate text NOT NULL,
                object text NOT NULL,
                PRIMARY KEY (memory_id, n)
            )
            """,
            "CREATE INDEX ON {memory_relations} (agent_id, memory_id)",
        ),
        "memory_lifecycle": (
            """
            CREATE TABLE {memory_lifecycle} (
                memory_id uuid NOT NULL,
                agent_id text NOT NULL,
                at timestamptz NOT NULL,
                mark text NOT NULL,
                detail jsonb NOT NULL,
                version integer NOT NULL,
                correlation_id text,
                PRIMARY KEY (memory_id, version)
            )
            """,
            "CREATE INDEX ON {memory_lifecycle} (agent_id, at)",
        ),
    }

    async def apply(
        self, conn: asyncpg.Connection, tables: Mapping[str, str], events: Sequence[Event]
    ) -> None:
        mine = [e for e in events if e.type.startswith("Memory.")]
        if not mine:
            return
        new: dict[UUID, _Memory] = {}
        earlier = {e.aggregate_id for e in mine if e.type != "Memory.Recorded"}
        earlier -= {e.aggregate_id for e in mine if e.type == "Memory.Recorded"}
        changed = await _load(conn, tables["memories"], earlier)
        marks: list[tuple[Any, ...]] = []
        for e in mine:
            if e.type == "Memory.Recorded":
                m = new[e.aggregate_id] = _recorded(e)
                detail: dict[str, Any] = {
                    "agent_id": m.agent_id, "kind": m.kind, "importance": m.importance,
                    "occurred_at": e.data["occurred_at"], "by": m.created_by,
                    "supersedes": None if m.supersedes is None else str(m.supersedes),
                }  # fmt: skip
                marks.append((m.id, m.agent_id, e.timestamp, "created", detail, e.version, e))
                continue
            mark = _MARKS.get(e.type)
            found = new.get(e.aggregate_id) or changed.get(e.aggregate_id)
            if mark is None or found is None:
                if mark is not None:
                    log.warning("%s of unknown memory %s skipped", e.type, e.aggregate_id)
                continue
            detail = _fold(found, e)
            marks.append((found.id, found.agent_id, e.timestamp, mark, detail, e.version, e))
        readable = [m for m in new.values() if m.status != "erased"]
        keys = await fetch_keys(conn, [m.id for m in readable])
        for m in readable:
            _open(m, keys)
        vocabulary: Counter[str] = Counter()
        for m in readable:
            vocabulary.update(_vocabulary(m.document.get("content"), m.document.get("tags")))
        gone = [m.id for m in changed.values() if m.erased_now]
        for row in await conn.fetch(
            f"SELECT content, tags FROM {tables['memories']} WHERE id = ANY($1::uuid[])", gone
        ):
            vocabulary.subtract(_vocabulary(row["content"], row["tags"]))
        await _write_new(conn, tables, list(new.values()))
        await _write_changed(conn, tables, changed)
        await _write_words(conn, tables["memory_words"], vocabulary)
        await _copy(
            conn, tables["memory_lifecycle"],
            ("memory_id", "agent_id", "at", "mark", "detail", "version", "correlation_id"),
            [(*r[:4], _encode(r[4]).decode(), r[5], r[6].meta.get("correlation_id"))
             for r in marks],
        )  # fmt: skip


def _vocabulary(content: str | None, tags: Sequence[str] | None) -> set[str]:
    """The distinct words of a memory's text, as partial-word search expands into them."""
    if content is None:
        return set()
    return set(words_of(content + " " + " ".join(tags or ())))


async def _write_words(conn: asyncpg.Connection, table: str, counts: Counter[str]) -> None:
    """Add each word's count of memories (negative for erased ones); a word no memory
    holds any more is deleted, so an erased memory leaves none of its words behind."""
    changes = {w: n for w, n in counts.items() if n}
    if not changes:
        return
    await conn.execute(
        f"INSERT INTO {table} AS w (word, memories) SELECT * FROM unnest($1::text[], "
        "$2::integer[]) ON CONFLICT (word) DO UPDATE SET memories = w.memories + "
        "excluded.memories",
        list(changes),
        list(changes.values()),
    )
    dropped = [w for w, n in changes.items() if n < 0]
    if dropped:
        await conn.execute(
            f"DELETE FROM {table} WHERE word = ANY($1::text[]) AND memories <= 0", dropped
        )


async def _load(conn: asyncpg.Connection, table: str, ids: set[UUID]) -> dict[UUID, _Memory]:
    """The changing state of memories recorded before this batch, by primary key."""
    if not ids:
        return {}
    rows = await conn.fetch(
        f"SELECT id, agent_id, {', '.join(_CHANGING)} FROM {table} WHERE id = ANY($1::uuid[])",
        list(ids),
    )
    return {r["id"]: _Memory(**dict(r)) for r in rows}


async def _copy(
    conn: asyncpg.Connection, table: str, columns: Sequence[str], records: list[tuple[Any, ...]]
) -> None:
    if records:
        schema, name = _split(table)
        await conn.copy_records_to_table(
            name, schema_name=schema, columns=list(columns), records=records
        )


async def _write_new(
    conn: asyncpg.Connection, tables: Mapping[str, str], memories: list[_Memory]
) -> None:
    """Memories recorded in this batch, in their final state; the search vector is made
    by the database from the same rows (one JSON document: msgspec encodes it in C)."""
    if not memories:
        return
    columns = ", ".join(COLUMNS)
    await conn.execute(
        f"INSERT INTO {tables['memories']} ({columns}, search) "
        f"SELECT {columns}, {_SEARCH_VECTOR} "
        f"FROM json_to_recordset($1::text::json) AS r({_RECORD_TYPES})",
        _encode([m.row() for m in memories]).decode(),
    )
    entities: list[tuple[Any, ...]] = []
    relations: list[tuple[Any, ...]] = []
    for m in memories:
        doc = m.document
        for n, x in enumerate(doc.get("entities", ())):
            entities.append((m.id, n, m.agent_id, x["name"], x["type"]))
        for n, x in enumerate(doc.get("relations", ())):
            relations.append((m.id, n, m.agent_id, x["subject"], x["predicate"], x["object"]))
    await _copy(
        conn, tables["memory_entities"], ("memory_id", "n", "agent_id", "name", "type"), entities
    )
    await _copy(
        conn, tables["memory_relations"],
        ("memory_id", "n", "agent_id", "subject", "predicate", "object"), relations,
    )  # fmt: skip


async def _write_changed(
    conn: asyncpg.Connection, tables: Mapping[str, str], changed: Mapping[UUID, _Memory]
) -> None:
    """One UPDATE for every memory recorded earlier; erasure clears its text and rows."""
    if not changed:
        return
    await conn.execute(
        f"UPDATE {tables['memories']} AS m SET "
        + ", ".join(f"{c} = r.{c}" for c in _CHANGING)
        + ", content = CASE WHEN r.erase THEN NULL ELSE m.content END, "
        "tags = CASE WHEN r.erase THEN '{}' ELSE m.tags END, "
        "source = CASE WHEN r.erase THEN '' ELSE m.source END, "
        "search = CASE WHEN r.erase THEN NULL ELSE m.search END "
        f"FROM json_to_recordset($1::text::json) AS r({_RECORD_TYPES}, erase boolean) "
        "WHERE m.id = r.id",
        _encode([m.changes() for m in changed.values()]).decode(),
    )
    gone = [m.id for m in changed.values() if m.erased_now]
    if gone:
        for logical in ("memory_entities", "memory_relations"):
            await conn.execute(
                f"DELETE FROM {tables[logical]} WHERE memory_id = ANY($1::uuid[])", gone
            )


# -- shared with the query modules -------------------------------------------------------

_WORD = re.compile(r"[a-z][a-z0-9]{2,}")
WORDS = "rm_memory_words"
# The columns a hit, graph or timeline row is read with.
HIT_COLUMNS = (
    "m.id, m.agent_id, m.kind, m.importance, m.occurred_at, m.created_at, m.status, "
    "m.content, m.tags, m.source, m.supersedes, m.superseded_by, m.stability_days, "
    "m.anchor_at, m.accesses, m.feedback"
)
# Active memories, and invalidated ones too when ``{flag}`` (a boolean SQL value) is true.
VISIBLE = "(m.status = 'active' OR ({flag} AND m.status = 'invalidated'))"


def words_of(text: str) -> list[str]:
    """Words as the vocabulary keeps them: lower case, a letter then 2+ letters or digits."""
    return _WORD.findall(text.lower())
