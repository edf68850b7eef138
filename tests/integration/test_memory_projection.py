"""The memory read models against real PostgreSQL, fed with real Memory events.

Events come from the ``Memory`` aggregate saved by the memory application on the test
database, with their keys in the vault, under a test clock (event timestamps are the
clock's), so strengths, buckets and orders are exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from eventsourcing.persistence import OperationalError

from application.contexts import Contexts
from domain.base import Aggregate
from domain.claims import IdempotencyRecord, UniqueClaim
from domain.memory.memory import Memory, parse_memory
from domain.memory.sealing import new_key, seal
from domain.memory.strength import strength_at
from domain.metadata import acting_as
from infrastructure.memory_keys import PostgresKeyVault, fetch_keys
from infrastructure.postgres import create_pool, eventsourcing_env
from infrastructure.schema import migrate
from infrastructure.wiring import build_contexts
from projections import memory_queries as views
from projections.memory import MemoryViews
from projections.memory_graph import build_graph
from projections.memory_search import search
from projections.projector import Projector
from projections.rebuild import rebuild

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
AGENT = "agent-1"


@dataclass
class Clock:
    now: datetime = T0

    def advance(self, by: timedelta) -> datetime:
        self.now += by
        return self.now


@dataclass
class World:
    """The memory application, its key vault and the projector, on one test database."""

    contexts: Contexts
    vault: PostgresKeyVault
    pool: asyncpg.Pool
    conn: asyncpg.Connection
    clock: Clock
    projector: Projector
    sealed: dict[UUID, str] = field(default_factory=dict)

    def record(
        self, content: str, *, principal: str = "writer", agent: str = AGENT, **raw: Any
    ) -> UUID:
        """Record a memory the way the application does: key first, then the event."""
        draft = parse_memory({"agent_id": agent, "content": content, **raw})
        memory_id, key = uuid4(), new_key()
        sealed = seal(key, memory_id, draft.document)
        with acting_as(principal, f"corr-{memory_id}"):
            memory = Memory.record(memory_id, draft, sealed, self.clock.now)
        self.vault.put_many([(memory_id, key)])
        self.contexts.memory.save(memory)
        self.sealed[memory_id] = sealed
        return memory_id

    def act(
        self, memory_id: UUID, action: Callable[[Memory], object], principal: str = "op"
    ) -> None:
        memory = self.memory(memory_id)
        with acting_as(principal, f"corr-{uuid4()}"):
            action(memory)
        self.contexts.memory.save(memory)

    def erase(self, memory_id: UUID, reason: str, principal: str = "dpo") -> None:
        """Erase through the command, which destroys the key (the projection does not)."""
        with acting_as(principal, f"corr-{uuid4()}"):
            self.contexts.memory.erase(memory_id, reason, lambda m: (200, {"id": str(m.id)}))

    def memory(self, memory_id: UUID) -> Memory:
        memory = self.contexts.memory.repository.get(memory_id)
        assert isinstance(memory, Memory)
        return memory

    async def project(self) -> None:
        await self.projector.catch_up()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Every event gets the test clock's time as its timestamp."""
    fixed = Clock()
    monkeypatch.setattr(Aggregate.Event, "create_timestamp", staticmethod(lambda: fixed.now))
    return fixed


@pytest.fixture
async def world(database_url: str, clock: Clock) -> AsyncIterator[World]:
    await migrate(database_url)
    contexts = await asyncio.to_thread(build_contexts, eventsourcing_env(database_url))
    pool = await create_pool(database_url, max_size=4)
    conn = await asyncpg.connect(database_url)
    try:
        vault = PostgresKeyVault(contexts.memory.recorder.datastore)
        # Small batches: a memory's events are split across batches and mixed with others'.
        projector = Projector(pool, [MemoryViews()], batch_size=3)
        await projector.setup()
        yield World(contexts, vault, pool, conn, clock, projector)
    finally:
        await conn.close()
        await pool.close()
        contexts.close()


def ids(rows: list[Any]) -> list[UUID]:
    return [r["id"] for r in rows]


async def test_search_ranks_the_best_keyword_match_first_then_the_stronger(world: World) -> None:
    three = world.record("Rate hike expected: a rate hike is priced in, then another rate hike")
    one = world.record("A rate hike is possible this year, analysts say")
    strong = world.record("Liquidity dried up in small caps", importance=0.9)
    weak = world.record("Liquidity dried up in small caps", importance=0.2)
    world.record("The weather was fine all week", importance=1.0)
    await world.project()
    now = T0 + HOUR

    hits = await search(world.conn, q="rate hike", now=now)
    assert ids(hits) == [three, one]
    assert hits[0]["text_rank"] > hits[1]["text_rank"] > 0
    assert hits[0]["strength"] == pytest.approx(hits[1]["strength"])

    hits = await search(world.conn, q="liquidity", now=now)
    assert ids(hits) == [strong, weak]
    assert hits[0]["text_rank"] == pytest.approx(hits[1]["text_rank"])
    assert hits[0]["strength"] > hits[1]["strength"]
    for h in hits:
        assert h["relevance"] == pytest.approx(h["text_rank"] + 0.5 * h["trigram"])
        assert h["score"] == pytest.approx(h["relevance"] * (0.5 + 0.5 * h["strength"]))
        assert h["snippet"].startswith("<mark>Liquidity</mark> dried up")
        assert (h["agent_id"], h["kind"], h["status"]) == (AGENT, "observation", "active")
    assert await search(world.conn, q="liquidity", now=now, agent_id="agent-2") == []
    assert await search(world.conn, q="liquidity", now=now, kind="plan") == []
    assert ids(await search(world.conn, q="liquidity", now=now, limit=1)) == [strong]


async def test_partial_words_match_by_trigram_and_operators_are_full_text_only(
    world: World,
) -> None:
    vol = world.record("Implied volatility spiked after the earnings call")
    bonds = world.record("Bond markets rallied while equity markets fell")
    equity = world.record("Equity markets rallied on strong earnings")
    phrase = world.record("The rate hike surprised nobody")
    apart = world.record("A hike in the rate of inflation")
    await world.project()
    now = T0 + HOUR

    assert ids(await search(world.conn, q="volatil", now=now)) == [vol]
    # "volati" and the misspelt "volatilty" are no word of any memory: each is expanded
    # to the vocabulary's "volatility" (prefix, trigram similarity), then matched.
    for partial in ("volati", "volatilty"):
        (hit,) = await search(world.conn, q=partial, now=now)
        assert hit["id"] == vol
        assert hit["text_rank"] > 0
        assert 0.3 < hit["trigram"] < 1
        assert hit["relevance"] == pytest.approx(hit["text_rank"] + 0.5 * hit["trigram"])
        assert "<mark>volatility</mark>" in hit["snippet"]
    (exact,) = await search(world.conn, q="volatility", now=now)
    assert exact["trigram"] == 0

    assert set(ids(await search(world.conn, q="markets", now=now))) == {bonds, equity}
    # The bond memory matches "markets" by trigram too: an exclusion must not let it back.
    assert ids(await search(world.conn, q="markets -bond", now=now)) == [equity]
    assert set(ids(await search(world.conn, q="rate hike", now=now))) == {phrase, apart}
    (hit,) = await search(world.conn, q='"rate hike"', now=now)
    assert hit["id"] == phrase
    assert hit["trigram"] == 0
    assert "<mark>rate</mark> <mark>hike</mark>" in hit["snippet"]
    assert set(ids(await search(world.conn, q="volatility or bond", now=now))) == {
        vol,
        bonds,
    }
    assert await search(world.conn, q="   ", now=now) == []


async def test_invalidated_memories_leave_search_and_graph_until_restored(world: World) -> None:
    copper = world.record(
        "Copper inventories are falling", entities=[{"name": "Copper", "type": "commodity"}]
    )
    await world.project()
    now = T0 + HOUR

    async def found(include_invalidated: bool = False) -> tuple[list[UUID], list[UUID]]:
        hits = await search(
            world.conn, q="copper", now=now, include_invalidated=include_invalidated
        )
        rows = await views.graph_rows(
            world.conn, agent_id=AGENT, now=now, include_invalidated=include_invalidated
        )
        return ids(hits), ids(rows)

    assert await found() == ([copper], [copper])
    world.clock.advance(HOUR)
    world.act(copper, lambda m: m.invalidate("contradicted by the exchange report"), "auditor-1")
    await world.project()
    assert await found() == ([], [])
    assert await found(include_invalidated=True) == ([copper], [copper])
    row = await views.get_memory(world.conn, copper)
    assert row is not None
    assert (row["status"], row["invalidated_at"], row["invalidated_by"]) == (
        "invalidated",
        T0 + HOUR,
        "auditor-1",
    )
    assert row["invalidation_reason"] == "contradicted by the exchange report"

    world.clock.advance(HOUR)
    world.act(copper, lambda m: m.restore("the report was wrong"))
    await world.project()
    assert await found() == ([copper], [copper])
    row = await views.get_memory(world.conn, copper)
    assert row is not None
    assert (row["status"], row["superseded_by"], row["version"]) == ("active", None, 3)


async def database_occurrences(conn: asyncpg.Connection, word: str) -> set[tuple[str, str]]:
    """Every (table, column) of every user table in the database holding ``word`` in
    any case: text, arrays, json and tsvector through their text form, bytea as bytes."""
    columns = await conn.fetch(
        "SELECT format('%I.%I', n.nspname, c.relname) AS tbl, a.attname AS col, "
        "a.atttypid = 'bytea'::regtype AS is_bytes "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid "
        "WHERE c.relkind IN ('r', 'p', 'm') AND a.attnum > 0 AND NOT a.attisdropped "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
    )
    assert len(columns) > 50  # every table was found, not just a few
    found = set()
    for c in columns:
        value = f"encode(t.\"{c['col']}\", 'escape')" if c["is_bytes"] else f't."{c["col"]}"::text'
        hit = await conn.fetchval(
            f"SELECT EXISTS (SELECT FROM {c['tbl']} t WHERE {value} ILIKE $1)", f"%{word}%"
        )
        if hit:
            found.add((c["tbl"], c["col"]))
    return found


async def test_erasure_leaves_no_trace_of_the_text_anywhere_in_the_database(
    world: World,
) -> None:
    word = "quokkaflux"
    secret = world.record(
        f"The {word} desk moved its book to Zurich; Quokkaflux Holdings paid the fee",
        entities=[{"name": "Quokkaflux Holdings", "type": "company"}],
        relations=[{"subject": "Quokkaflux Holdings", "predicate": "paid", "object": "fee"}],
        tags=[word, "desk"],
        source=f"{word}-feed",
    )
    kept = world.record("The Zurich desk kept its book", entities=[{"name": "Zurich"}])
    await world.project()
    world.clock.advance(HOUR)
    world.act(secret, lambda m: m.access(world.clock.now), "searcher")
    await world.project()
    before = await database_occurrences(world.conn, word)
    assert {
        ("public.rm_memories", "content"),
        ("public.rm_memories", "tags"),
        ("public.rm_memories", "source"),
        ("public.rm_memories", "search"),
        ("public.rm_memory_entities", "name"),
        ("public.rm_memory_relations", "subject"),
    } <= before
    assert ids(await search(world.conn, q=word, now=world.clock.now)) == [secret]

    world.clock.advance(HOUR)
    world.erase(secret, "right to erasure request 17")
    # Recorded and erased in one batch: its text never reaches the read model.
    brief = world.record(f"A {word} note erased at once", tags=[word])
    world.erase(brief, "recorded by mistake")
    await world.project()

    assert await database_occurrences(world.conn, word) == set()
    for memory_id in (secret, brief):
        row = await world.conn.fetchrow(
            "SELECT status, content, tags, source, search, erased_at, erased_by "
            "FROM rm_memories WHERE id = $1",
            memory_id,
        )
        assert tuple(row) == ("erased", None, [], "", None, world.clock.now, "dpo")
        # The sealed text is still in the log; nothing can open it any more.
        stored = await world.conn.fetchval(
            "SELECT count(*) FROM memory_events WHERE originator_id = $1 "
            "AND position(convert_to($2, 'UTF8') IN state) > 0",
            memory_id,
            world.sealed[memory_id],
        )
        assert stored == 1
    assert set(await fetch_keys(world.conn, [secret, brief, kept])) == {kept}
    assert await views.entities_of(world.conn, [secret, brief]) == []
    assert await views.relations_of(world.conn, [secret, brief]) == []
    assert [r["name"] for r in await views.entities_of(world.conn, [kept])] == ["Zurich"]
    assert await search(world.conn, q=word, now=world.clock.now) == []
    graph = await views.graph_rows(world.conn, agent_id=AGENT, now=world.clock.now)
    assert ids(graph) == [kept]
    marks = await world.conn.fetch(
        "SELECT mark, detail FROM rm_memory_lifecycle WHERE memory_id = $1 ORDER BY version",
        secret,
    )
    assert [m["mark"] for m in marks] == ["created", "reinforced", "erased"]
    assert '"reason": "right to erasure request 17"' in marks[-1]["detail"]


async def test_sql_strength_equals_the_domain_strength(world: World) -> None:
    clock = world.clock
    slow = world.record("Central bank minutes due Wednesday", importance=0.7)
    fast = world.record("Coffee machine on floor 3 is broken", importance=0.1)
    await world.project()  # the reinforcements below fold into rows of earlier batches
    clock.advance(2 * HOUR)
    world.act(slow, lambda m: m.access(clock.now), "searcher")
    clock.advance(DAY)
    world.act(slow, lambda m: m.feedback(0.5), "agent-1")
    world.act(fast, lambda m: m.feedback(-0.9), "agent-1")
    await world.project()
    clock.advance(DAY)
    world.act(slow, lambda m: m.feedback(-0.4), "agent-1")  # no new anchor
    world.act(fast, lambda m: m.access(clock.now), "searcher")
    world.act(fast, lambda m: m.access(clock.now), "searcher")  # within the hour: nothing
    await world.project()

    for memory_id, reinforcements in ((slow, (1, 2)), (fast, (1, 1))):
        memory = world.memory(memory_id)
        curve = memory.curve()
        row = await views.get_memory(world.conn, memory_id)
        assert row is not None
        assert (row["accesses"], row["feedback"]) == reinforcements
        assert row["stability_days"] == curve.stability_days
        assert row["anchor_at"] == curve.anchor_at
        assert row["created_at"] == curve.recorded_at
        for now in (T0 - DAY, T0, clock.now, clock.now + 3 * DAY, clock.now + 40 * DAY):
            expected = strength_at(curve, now).strength
            (candidate,) = [
                r
                for r in await views.forget_candidates(world.conn, agent_id=AGENT, now=now)
                if r["id"] == memory_id
            ]
            assert candidate["strength"] == pytest.approx(expected, rel=1e-12)
            (graph_row,) = [
                r
                for r in await views.graph_rows(world.conn, agent_id=AGENT, now=now)
                if r["id"] == memory_id
            ]
            assert graph_row["strength"] == pytest.approx(expected, rel=1e-12)
    slow_row = await views.get_memory(world.conn, slow)
    assert slow_row is not None
    assert slow_row["anchor_at"] == T0 + 2 * HOUR + DAY  # the positive feedback
    assert slow_row["last_access_at"] == T0 + 2 * HOUR


async def test_timeline_lists_memories_with_their_marks_and_counts_them_per_day(
    world: World,
) -> None:
    clock = world.clock
    first = world.record("First", occurred_at="2026-02-01T08:00:00+00:00")
    second = world.record("Second", occurred_at="2026-02-03T08:00:00+00:00")
    world.record("Someone else's", agent="agent-2")
    clock.advance(DAY)  # Tuesday
    world.act(first, lambda m: m.access(clock.now), "searcher")
    world.act(second, lambda m: m.invalidate("stale"))
    await world.project()
    clock.advance(DAY)  # Wednesday
    world.act(second, lambda m: m.restore("still true"))
    third = world.record("Third", occurred_at="2026-02-02T08:00:00+00:00")
    world.act(third, lambda m: m.erase("mistake"))
    world.act(first, lambda m: m.feedback(1.0), AGENT)
    clock.advance(7 * DAY)  # the next Wednesday
    world.act(first, lambda m: m.access(clock.now), "searcher")
    await world.project()

    def day(n: int) -> datetime:
        return datetime(2026, 3, 2 + n, tzinfo=UTC)

    counts = await views.timeline_counts(
        world.conn, agent_id=AGENT, bucket="day", start=None, end=None
    )
    assert [tuple(c) for c in counts] == [
        # bucket, created, reinforced, invalidated, restored, erased
        (day(0), 2, 0, 0, 0, 0),
        (day(1), 0, 1, 1, 0, 0),
        (day(2), 1, 1, 0, 1, 1),
        (day(9), 0, 1, 0, 0, 0),
    ]
    assert list(counts[0].keys()) == [
        "bucket", "created", "reinforced", "invalidated", "restored", "erased",
    ]  # fmt: skip
    weeks = await views.timeline_counts(
        world.conn, agent_id=AGENT, bucket="week", start=None, end=None
    )
    assert [tuple(c) for c in weeks] == [(day(0), 3, 2, 1, 1, 1), (day(7), 0, 1, 0, 0, 0)]
    between = await views.timeline_counts(
        world.conn, agent_id=AGENT, bucket="day", start=day(1), end=day(2)
    )
    assert [tuple(c) for c in between] == [(day(1), 0, 1, 1, 0, 0)]
    with pytest.raises(ValueError, match="bucket"):
        await views.timeline_counts(world.conn, agent_id=AGENT, bucket="hour", start=None, end=None)

    items = await views.timeline(world.conn, agent_id=AGENT)
    assert ids(items) == [first, third, second]  # by occurred_at
    assert [m["mark"] for m in items[0]["marks"]] == [
        "created",
        "reinforced",
        "reinforced",
        "reinforced",
    ]
    assert items[0]["marks"][1]["detail"] == {"source": "access", "value": 1.0, "by": "searcher"}
    assert items[1]["content"] is None
    assert [m["mark"] for m in items[1]["marks"]] == ["created", "erased"]
    assert items[2]["marks"][1]["detail"] == {"reason": "stale", "by": "op", "superseded_by": None}
    assert ids(await views.timeline(world.conn, agent_id=AGENT, include_invalidated=False)) == [
        first,
        second,
    ]
    page = await views.timeline(world.conn, agent_id=AGENT, limit=1)
    assert ids(page) == [first]
    after = (page[0]["occurred_at"], page[0]["id"])
    assert ids(await views.timeline(world.conn, agent_id=AGENT, limit=5, after=after)) == [
        third,
        second,
    ]
    window = await views.timeline(
        world.conn,
        agent_id=AGENT,
        start=datetime(2026, 2, 2, tzinfo=UTC),
        end=datetime(2026, 2, 3, 8, tzinfo=UTC),
    )
    assert ids(window) == [third]


async def test_build_graph_draws_entities_relations_mentions_and_supersession(
    world: World,
) -> None:
    older = world.record(
        "$AAPL guided lower; supplier TSMC cut orders",
        importance=0.9,
        entities=[{"name": "Apple", "type": "company"}, {"name": "TSMC", "type": "company"}],
        relations=[
            {"subject": "TSMC", "predicate": "supplies", "object": "apple"},
            {"subject": "TSMC", "predicate": "located in", "object": "Taiwan"},
        ],
    )
    world.record(
        "TSMC raised capex",
        importance=0.5,
        entities=[{"name": "tsmc", "type": "company"}],
        relations=[{"subject": "tsmc", "predicate": "Supplies", "object": "Apple"}],
    )
    newer = world.record("Apple guidance restated", importance=0.3, supersedes=str(older))
    world.act(older, lambda m: m.invalidate("restated", superseded_by=newer))
    await world.project()

    rows = await views.graph_rows(
        world.conn, agent_id=AGENT, now=T0 + HOUR, include_invalidated=True
    )
    capex = rows[1]["id"]
    assert ids(rows) == [older, capex, newer]  # strongest first
    assert rows[0]["superseded_by"] == newer and rows[2]["supersedes"] == older
    graph = build_graph(rows)
    nodes = [(n["id"], n["label"], n.get("mentions"), n.get("status")) for n in graph["nodes"]]
    assert nodes == [
        ("entity:company:apple", "Apple", 2, None),
        ("entity:company:tsmc", "TSMC", 2, None),
        ("entity:concept:taiwan", "Taiwan", 1, None),
        ("entity:ticker:aapl", "AAPL", 1, None),
        *sorted(
            [
                (f"memory:{older}", "$AAPL guided lower; supplier TSMC cut orders", None,
                 "invalidated"),
                (f"memory:{capex}", "TSMC raised capex", None, "active"),
                (f"memory:{newer}", "Apple guidance restated", None, "active"),
            ]
        ),
    ]  # fmt: skip
    memory_node = next(n for n in graph["nodes"] if n["id"] == f"memory:{older}")
    assert memory_node["strength"] == rows[0]["strength"]
    assert (memory_node["type"], memory_node["kind"]) == ("memory", "observation")
    edges = [
        (e["type"], e["source"], e["target"], e["relation"], e.get("count"), e.get("memory"))
        for e in graph["edges"]
    ]
    m_old, m_capex, m_new = (f"memory:{i}" for i in (older, capex, newer))
    apple, tsmc = "entity:company:apple", "entity:company:tsmc"
    taiwan, aapl = "entity:concept:taiwan", "entity:ticker:aapl"
    assert sorted(edges) == sorted(
        [
            ("mentions", m_old, apple, "mentions", None, None),
            ("mentions", m_old, tsmc, "mentions", None, None),
            ("mentions", m_old, taiwan, "mentions", None, None),
            ("mentions", m_old, aapl, "mentions", None, None),
            ("mentions", m_capex, tsmc, "mentions", None, None),
            ("mentions", m_capex, apple, "mentions", None, None),
            ("relation", tsmc, apple, "supplies", 2, str(older)),
            ("relation", tsmc, taiwan, "located in", 1, str(older)),
            ("supersedes", m_new, m_old, "supersedes", None, None),
        ]
    )
    assert [e["id"] for e in graph["edges"]] == sorted(e["id"] for e in graph["edges"])
    supplies = next(e for e in graph["edges"] if e["relation"] == "supplies")
    assert supplies["memories"] == sorted([str(older), str(capex)])
    # Without the older memory, no supersession edge points out of the set.
    active = await views.graph_rows(world.conn, agent_id=AGENT, now=T0 + HOUR)
    assert [e for e in build_graph(active)["edges"] if e["type"] == "supersedes"] == []
    assert build_graph([]) == {"nodes": [], "edges": []}


async def test_forget_candidates_filter_by_age_and_strength(world: World) -> None:
    clock = world.clock
    weak = world.record("Lunch was pasta", importance=0.0)
    strong = world.record("Board approved the merger", importance=1.0)
    gone = world.record("Temporary note", importance=0.0)
    world.act(gone, lambda m: m.invalidate("obsolete"))
    world.record("Another agent's note", importance=0.0, agent="agent-2")
    clock.advance(5 * DAY)
    recent = world.record("Fresh trivia", importance=0.0)
    await world.project()
    now = T0 + 6 * DAY

    async def candidates(**filters: Any) -> list[UUID]:
        return ids(await views.forget_candidates(world.conn, agent_id=AGENT, now=now, **filters))

    assert await candidates() == [weak, recent, strong]  # weakest first
    assert await candidates(older_than=T0 + DAY) == [weak, strong]
    assert await candidates(max_strength=0.1) == [weak]
    assert await candidates(older_than=T0 + DAY, max_strength=0.9) == [weak, strong]
    assert await candidates(older_than=T0) == []
    assert await candidates(limit=1) == [weak]
    (row,) = await views.forget_candidates(world.conn, agent_id=AGENT, now=now, max_strength=0.1)
    assert row["strength"] == pytest.approx(0.5 * 2.718281828459045**-6)


async def dump(conn: asyncpg.Connection) -> dict[str, list[str]]:
    """Every row of the memory read models, as text, in a fixed order."""
    return {
        table: [r[0] for r in await conn.fetch(f"SELECT t::text FROM {table} t ORDER BY t::text")]
        for table in (views.MEMORIES, views.ENTITIES, views.RELATIONS, views.LIFECYCLE)
    }


async def test_a_rebuild_gives_the_same_rows_as_small_live_batches(world: World) -> None:
    clock = world.clock
    memories = [
        world.record(
            f"Note {i} on $MSFT and rates",
            importance=i / 10,
            tags=[f"t{i}"],
            entities=[{"name": f"Desk {i % 3}", "type": "team"}],
            relations=[{"subject": f"Desk {i % 3}", "predicate": "covers", "object": "MSFT"}],
        )
        for i in range(8)
    ]
    # Other aggregates in the memory log are not memories: the projection skips them.
    other = [
        IdempotencyRecord.record(
            principal="p", key="k", fingerprint="f", status_code=201, response={"id": "x"}
        ),
        UniqueClaim.claim("memory", "something", str(memories[0])),
    ]
    world.contexts.memory.save(*other)
    for step, memory_id in enumerate(memories):
        clock.advance(HOUR)
        world.act(memory_id, lambda m: m.access(clock.now), "searcher")
        if step % 2:
            world.act(memory_id, lambda m: m.feedback(-0.5), AGENT)
        if step % 3 == 0:
            world.act(memory_id, lambda m: m.invalidate("checking"))
        if step == 3:
            world.act(memory_id, lambda m: m.restore("checked"))
        if step in (2, 5):
            world.act(memory_id, lambda m: m.erase("asked to"))
        if step == 4:
            await world.project()
    await world.project()
    live = await dump(world.conn)
    assert len(live[views.MEMORIES]) == 8
    assert len(live[views.ENTITIES]) == 12  # a desk and $MSFT each; none of the two erased

    result = await rebuild(world.pool, MemoryViews())
    assert result.events > 0
    assert await dump(world.conn) == live
    statuses = await world.conn.fetch(f"SELECT id, status FROM {views.MEMORIES}")
    assert (
        sorted(r["status"] for r in statuses)
        == ["active"] * 4 + ["erased"] * 2 + ["invalidated"] * 2
    )


async def test_the_projection_drops_an_erased_memorys_rows_but_never_touches_its_key(
    world: World,
) -> None:
    """Key destruction is the erase command's; the projection only drops rows."""
    memory_id = world.record("The Oslo desk note", entities=[{"name": "Oslo"}])
    await world.project()
    world.act(memory_id, lambda m: m.erase("straight to the log"), "dpo")  # not the command
    await world.project()
    row = await views.get_memory(world.conn, memory_id)
    assert row is not None
    assert (row["status"], row["content"]) == ("erased", None)
    assert await views.entities_of(world.conn, [memory_id]) == []
    assert set(await fetch_keys(world.conn, [memory_id])) == {memory_id}


async def test_erase_destroys_the_key_first_and_a_failed_save_is_completed_by_a_retry(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory_id = world.record("The Lima desk note")
    await world.project()
    app = world.contexts.memory

    def unavailable(*_: Any, **__: Any) -> Any:
        raise OperationalError("the database went away")

    monkeypatch.setattr(app, "save", unavailable)
    with pytest.raises(OperationalError):
        world.erase(memory_id, "erase me")
    # The key went first: the log's sealed text is unreadable although the save failed.
    assert await fetch_keys(world.conn, [memory_id]) == {}
    assert world.memory(memory_id).erased is False
    monkeypatch.undo()
    world.erase(memory_id, "erase me")  # the rule: a failed erasure is retried
    await world.project()
    assert world.memory(memory_id).erased is True
    row = await views.get_memory(world.conn, memory_id)
    assert row is not None
    assert (row["status"], row["content"]) == ("erased", None)
    world.erase(memory_id, "again")  # idempotent: nothing more is saved
    assert world.memory(memory_id).version == 2
