"""Read models of agent memory, and the searches, graph, timeline and forgetting they serve.

- ``memories``: one row per memory with its text unsealed (``content``, ``tags``,
  ``source``), a full-text vector over content and tags, its status and the strength
  components (stability, anchor, importance, access and feedback counts), which
  ``domain.memory.strength.SQL_STRENGTH`` turns into a strength at query time.
- ``memory_entities`` and ``memory_relations``: what each memory declared, for the graph.
- ``memory_lifecycle``: one mark per event (created, reinforced, invalidated, restored,
  erased) with who and why, never the memory's text: the timeline and its counts.

A batch is folded in memory in log order: memories recorded in it are written once, in
their final state (an erased one without text), memories recorded earlier get one
set-based UPDATE. Keys come in one query and the text is unsealed here; erasure clears
the text, deletes the entities, relations and the key in the projector's transaction.
Rows are found through primary keys only, which a rebuild's fresh tables have from
the start (their other indexes come once loaded).
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
    SQL_STRENGTH,
    Curve,
    Reinforcement,
    initial_stability,
    step,
)
from infrastructure.memory_keys import destroy_keys, fetch_keys
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
        erased: list[UUID] = []
        for e in mine:
            if e.type == "Memory.Recorded":
                m = new[e.aggregate_id] = _recorded(e)
                detail: dict[str, Any] = {
                    "kind": m.kind, "importance": m.importance, "by": m.created_by,
                    "supersedes": None if m.supersedes is None else str(m.supersedes),
                }  # fmt: skip
                marks.append((m.id, m.agent_id, e.timestamp, "created", detail, e.version))
                continue
            mark = _MARKS.get(e.type)
            found = new.get(e.aggregate_id) or changed.get(e.aggregate_id)
            if mark is None or found is None:
                if mark is not None:
                    log.warning("%s of unknown memory %s skipped", e.type, e.aggregate_id)
                continue
            detail = _fold(found, e)
            marks.append((found.id, found.agent_id, e.timestamp, mark, detail, e.version))
            if mark == "erased":
                erased.append(found.id)
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
            ("memory_id", "agent_id", "at", "mark", "detail", "version"),
            [(*r[:4], _encode(r[4]).decode(), r[5]) for r in marks],
        )  # fmt: skip
        if erased:
            await destroy_keys(conn, erased)


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


# -- queries ---------------------------------------------------------------------------

# A web-search operator: a quoted phrase, OR, or an exclusion. With one, the query is
# taken as written (an expansion could bring back what ``-word`` excluded).
_OPERATORS = re.compile(r"\"|(?:^|\s)-\S|\sor\s", re.IGNORECASE)
_HEADLINE = "StartSel=<mark>, StopSel=</mark>"
_WORD = re.compile(r"[a-z][a-z0-9]{2,}")
WORDS = "rm_memory_words"
# Ranking reads this many of the most recent matches at most, so a word that half the
# memories contain costs what a rare one does (see search()).
CANDIDATES = 1000
# ... and scores the best RANKED of them by text rank with their strength.
RANKED = 200
EXPANSIONS = 5


def words_of(text: str) -> list[str]:
    """Words as the vocabulary keeps them: lower case, a letter then 2+ letters or digits."""
    return _WORD.findall(text.lower())


def uses_operators(q: str) -> bool:
    """Whether ``q`` uses web-search syntax (then it is searched as written)."""
    return _OPERATORS.search(q) is not None


_HIT_COLUMNS = (
    "m.id, m.agent_id, m.kind, m.importance, m.occurred_at, m.created_at, m.status, "
    "m.content, m.tags, m.source, m.supersedes, m.superseded_by, m.stability_days, "
    "m.anchor_at, m.accesses, m.feedback"
)
_VISIBLE = "(m.status = 'active' OR ({flag} AND m.status = 'invalidated'))"


async def _expand(conn: asyncpg.Connection, tokens: list[str]) -> tuple[str, float]:
    """The query's words, each OR-ed with up to EXPANSIONS vocabulary words that are
    trigram-similar to it or start with it ("volatil" → volatility, volatile), AND-ed
    together as to_tsquery text; and the similarity of the closest expansion of a word
    the vocabulary does not hold as such (0 when every word is in it)."""
    rows = await conn.fetch(
        "SELECT t.token, e.word, e.sim FROM unnest($1::text[]) AS t(token) "
        "CROSS JOIN LATERAL (SELECT w.word, similarity(w.word, t.token)::float8 AS sim "
        f"FROM {WORDS} w WHERE w.word % t.token OR w.word LIKE t.token || '%' "
        f"ORDER BY sim DESC, w.word LIMIT {EXPANSIONS}) e",
        tokens,
    )
    terms: dict[str, set[str]] = {t: {t} for t in tokens}
    exact: set[str] = set()
    closest = 0.0
    for r in rows:
        terms[r["token"]].add(r["word"])
        if r["word"] == r["token"]:
            exact.add(r["token"])
    for r in rows:
        if r["token"] not in exact:
            closest = max(closest, r["sim"])
    text = " & ".join("(" + " | ".join(sorted(terms[t])) + ")" for t in tokens)
    return text, closest


async def search(conn: asyncpg.Connection, **criteria: Any) -> list[asyncpg.Record]:
    """Memories matching ``q``, best first, in two steps, both through the GIN index of
    the search vectors:

    1. The query: with web-search syntax (quoted phrases, OR, -exclusions) it is taken
       as written (``websearch_to_tsquery``). Otherwise each word is expanded with the
       vocabulary words trigram-similar to it or starting with it (``rm_memory_words``,
       a trigram index over the distinct words of all memories), so partial and
       misspelt words match whole ones; ``trigram`` is the similarity of the closest
       such expansion (the same for every hit; 0 when every word matched as such).
    2. The CANDIDATES most recent matches are ranked by ``text_rank`` (ts_rank_cd,
       normalised rank/(rank+1)); the best RANKED of those are scored: ``relevance`` =
       text_rank + 0.5 × trigram, ``strength`` at ``now``, ``score`` = relevance ×
       (0.5 + 0.5 × strength); a ``snippet`` marks the matched words with <mark>…</mark>
       (content not escaped). A word in a fifth of all memories thus costs about what
       a rare one does; the price is that its older matches are not ranked.

    Only the filters given become SQL conditions, and the plan is made for these
    values (``plan_cache_mode = force_custom_plan``): a plan cached for another agent or
    another word's frequency can be a hundred times slower. ``start``/``end`` bound
    ``occurred_at``: start inclusive, end exclusive. ``criteria`` are the keyword
    arguments of ``search_statement``.
    """
    if not criteria["q"].strip():
        return []
    async with conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        sql, args = await search_statement(conn, **criteria)
        return await conn.fetch(sql, *args)


async def search_statement(  # noqa: PLR0913
    conn: asyncpg.Connection,
    *,
    q: str,
    now: datetime,
    agent_id: str | None = None,
    kind: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    include_invalidated: bool = False,
    limit: int = 20,
) -> tuple[str, list[Any]]:
    """The SQL and arguments ``search`` runs (the words expanded already)."""
    tokens = list(dict.fromkeys(words_of(q)))
    trigram = 0.0
    if uses_operators(q) or not tokens:
        query, text = "websearch_to_tsquery('english', $2)", q
    else:
        text, trigram = await _expand(conn, tokens)
        query = "to_tsquery('english', $2)"
    args: list[Any] = [now, text, trigram, include_invalidated, limit]
    where = ["m.search @@ q.query", _VISIBLE.format(flag="$4")]
    for column, op, value in (
        ("agent_id", "=", agent_id),
        ("kind", "=", kind),
        ("occurred_at", ">=", start),
        ("occurred_at", "<", end),
    ):
        if value is not None:
            args.append(value)
            where.append(f"m.{column} {op} ${len(args)}")
    strength = SQL_STRENGTH.format(t="m", now="$1::timestamptz")
    # The query is written out in each place (not taken from a CTE) so the planner
    # sees its words and their frequency: for a frequent word it walks the newest
    # memories backwards (an index-only scan: the index holds the search vectors) and
    # stops at CANDIDATES matches; for a rare one it reads the few matches from the GIN
    # index. Only the RANKED best by text rank are then read whole and scored.
    sql = (
        f"WITH candidates AS (SELECT m.id, m.created_at, m.search FROM {MEMORIES} m "
        f"WHERE {' AND '.join(where).replace('q.query', query)} "
        f"ORDER BY m.created_at DESC LIMIT {CANDIDATES}), best AS ("
        f"SELECT c.id, ts_rank_cd(c.search, {query}, 32)::float8 AS text_rank "
        f"FROM candidates c ORDER BY text_rank DESC, c.created_at DESC LIMIT {RANKED}), "
        "ranked AS (SELECT r.*, r.relevance * (0.5 + 0.5 * r.strength) AS score FROM ("
        f"SELECT {_HIT_COLUMNS}, b.text_rank, $3::float8 AS trigram, "
        f"b.text_rank + 0.5 * $3::float8 AS relevance, {strength} AS strength "
        f"FROM best b JOIN {MEMORIES} m ON m.id = b.id) r "
        "ORDER BY score DESC, r.id LIMIT $5) "
        "SELECT h.*, "
        f"ts_headline('english', h.content, {query}, '{_HEADLINE}') AS snippet "
        "FROM ranked h ORDER BY h.score DESC, h.id"
    )
    return sql, args


async def get_memory(conn: asyncpg.Connection, memory_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {', '.join(COLUMNS)} FROM {MEMORIES} WHERE id = $1", memory_id
    )


async def entities_of(conn: asyncpg.Connection, memory_ids: Sequence[UUID]) -> list[asyncpg.Record]:
    """(memory_id, name, type) of the memories, in each memory's declared order."""
    return await conn.fetch(
        f"SELECT memory_id, name, type FROM {ENTITIES} WHERE memory_id = ANY($1::uuid[]) "
        "ORDER BY memory_id, n",
        list(memory_ids),
    )


async def relations_of(
    conn: asyncpg.Connection, memory_ids: Sequence[UUID]
) -> list[asyncpg.Record]:
    """(memory_id, subject, predicate, object) of the memories, in declared order."""
    return await conn.fetch(
        f"SELECT memory_id, subject, predicate, object FROM {RELATIONS} "
        "WHERE memory_id = ANY($1::uuid[]) ORDER BY memory_id, n",
        list(memory_ids),
    )


async def graph_rows(  # noqa: PLR0913
    conn: asyncpg.Connection,
    *,
    agent_id: str,
    now: datetime,
    min_strength: float | None = None,
    include_invalidated: bool = False,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """The agent's memories for ``memory_graph.build_graph``, strongest first, each with
    its ``strength`` at ``now``, ``entities`` and ``relations``; never erased ones."""
    strength = SQL_STRENGTH.format(t="m", now="$2::timestamptz")
    rows = await conn.fetch(
        f"SELECT * FROM (SELECT {_HIT_COLUMNS}, {strength} AS strength FROM {MEMORIES} m "
        f"WHERE m.agent_id = $1 AND {_VISIBLE.format(flag='$3')}) s "
        "WHERE $4::float8 IS NULL OR s.strength >= $4 ORDER BY s.strength DESC, s.id LIMIT $5",
        agent_id,
        now,
        include_invalidated,
        min_strength,
        limit,
    )
    memories = {r["id"]: {**dict(r), "entities": [], "relations": []} for r in rows}
    ids = list(memories)
    for r in await entities_of(conn, ids):
        memories[r["memory_id"]]["entities"].append({"name": r["name"], "type": r["type"]})
    for r in await relations_of(conn, ids):
        memories[r["memory_id"]]["relations"].append(
            {"subject": r["subject"], "predicate": r["predicate"], "object": r["object"]}
        )
    return list(memories.values())


async def timeline(  # noqa: PLR0913
    conn: asyncpg.Connection,
    *,
    agent_id: str,
    start: datetime | None = None,
    end: datetime | None = None,
    include_invalidated: bool = True,
    limit: int = 100,
    after: tuple[datetime, UUID] | None = None,
) -> list[dict[str, Any]]:
    """The agent's memories by (occurred_at, id) after ``after``, each with its lifecycle
    ``marks`` (at, mark, detail, version) in order. ``start`` inclusive, ``end``
    exclusive, on occurred_at; without ``include_invalidated`` only active memories
    (with it, erased ones too: their marks, never their text)."""
    rows = await conn.fetch(
        f"SELECT {_HIT_COLUMNS} FROM {MEMORIES} m WHERE m.agent_id = $1 "
        "AND ($2 OR m.status = 'active') "
        "AND ($3::timestamptz IS NULL OR m.occurred_at >= $3) "
        "AND ($4::timestamptz IS NULL OR m.occurred_at < $4) "
        "AND ($5::timestamptz IS NULL OR (m.occurred_at, m.id) > ($5, $6::uuid)) "
        "ORDER BY m.occurred_at, m.id LIMIT $7",
        agent_id,
        include_invalidated,
        start,
        end,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    items = {r["id"]: {**dict(r), "marks": []} for r in rows}
    if items:
        for r in await conn.fetch(
            f"SELECT memory_id, at, mark, detail, version FROM {LIFECYCLE} "
            "WHERE memory_id = ANY($1::uuid[]) ORDER BY memory_id, version",
            list(items),
        ):
            items[r["memory_id"]]["marks"].append(
                {"at": r["at"], "mark": r["mark"], "detail": _decode(r["detail"]),
                 "version": r["version"]}
            )  # fmt: skip
    return list(items.values())


BUCKETS = ("day", "week")


async def timeline_counts(
    conn: asyncpg.Connection,
    *,
    agent_id: str,
    bucket: str,
    start: datetime | None,
    end: datetime | None,
) -> list[asyncpg.Record]:
    """Per ``bucket`` (UTC day, or ISO week from Monday) with any mark: how many memories
    were created, reinforced, invalidated, restored and erased (lifecycle marks in
    [start, end)); columns bucket, created, reinforced, invalidated, restored, erased."""
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}")
    counts = ", ".join(
        f"count(*) FILTER (WHERE mark = '{mark}')::integer AS {mark}"
        for mark in ("created", "reinforced", "invalidated", "restored", "erased")
    )
    return await conn.fetch(
        f"SELECT date_trunc($2, at, 'UTC') AS bucket, {counts} FROM {LIFECYCLE} "
        "WHERE agent_id = $1 AND ($3::timestamptz IS NULL OR at >= $3) "
        "AND ($4::timestamptz IS NULL OR at < $4) GROUP BY 1 ORDER BY 1",
        agent_id,
        bucket,
        start,
        end,
    )


async def forget_candidates(  # noqa: PLR0913
    conn: asyncpg.Connection,
    *,
    agent_id: str,
    now: datetime,
    older_than: datetime | None = None,
    max_strength: float | None = None,
    limit: int = 10000,
) -> list[asyncpg.Record]:
    """The agent's active memories created before ``older_than`` and no stronger than
    ``max_strength`` at ``now`` (each if given), weakest first, with their strength."""
    strength = SQL_STRENGTH.format(t="m", now="$2::timestamptz")
    return await conn.fetch(
        f"SELECT * FROM (SELECT m.id, m.agent_id, m.kind, m.importance, m.occurred_at, "
        "m.created_at, m.stability_days, m.anchor_at, m.accesses, m.feedback, "
        f"{strength} AS strength FROM {MEMORIES} m WHERE m.agent_id = $1 "
        "AND m.status = 'active' AND ($3::timestamptz IS NULL OR m.created_at < $3)) s "
        "WHERE $4::float8 IS NULL OR s.strength <= $4 ORDER BY s.strength, s.id LIMIT $5",
        agent_id,
        now,
        older_than,
        max_strength,
        limit,
    )
