"""Agent memory: batch recording, projection and search latency, against baselines of the same run.

Run: ``.venv/bin/python -m benchmarks.memory`` (``--help`` for the knobs). PostgreSQL
comes from ``AIMM_DATABASE_URL`` when set, else the embedded server is started; the
benchmark works in a fresh database that it drops at the end.

The memories: about 20-40 words each, drawn with Zipf-like weights from a fixed vocabulary of
trading words, with one or two cashtags (``$AAPL``: recognised as ticker entities), now
and then a stock phrase ("short squeeze"), 1-3 tags, a varied kind, importance and
source, sometimes an occurred time, a declared entity or a relation; spread over 100
agents. Batch ``i`` is the same in every run with the same ``--seed``.

(a) Recording: ``--memories`` memories, in batches of 1,000 from ``--threads`` threads,
    through ``MemoryApplication.record`` (what ``POST /api/v1/memory/batch`` calls:
    parse each memory, seal it under a key of its own, write the keys, one ``save()``),
    against direct ``save()`` calls of the same kind of ``Memory`` aggregates — built with
    ``Memory.record`` from drafts parsed and text sealed before the clock starts: no
    parsing, sealing or key vault in the timed part — on the same application and events
    table, with the same threads and batch size, over a ``--baseline`` sample. The two
    alternate in slices, so both see the same table size and the same noise; the input
    is generated (``--round-size`` memories at a time) before the clocks start. The
    baseline's events are deleted afterwards: the read models and searches see exactly
    ``--memories`` memories.
(b) Projection: ``aimm projector`` (every read model, as ``aimm dev`` runs it) started as
    a process and timed until every projection of the memory log has reached its head.
    Then ``VACUUM ANALYZE`` of the memory read models (what autovacuum would get to), so
    the search plans do not depend on when autovacuum last ran.
(c) Search: aimm under uvicorn (the projector still running beside it) answers
    ``GET /api/v1/memory/search?q=…&limit=20`` (viewer key) for a fixed, seeded set of
    queries — frequent and rarer words, a partial word, a ticker, a quoted phrase, an
    exclusion; each with and without ``agent_id`` — sent by one httpx client, one at a
    time; against the very same query (``projections.memory_search.search``) with the same
    parameters on a plain asyncpg connection. Search hits reinforce the memories they
    return (access events saved after the response, then projected): that is part of the
    endpoint and stays on. After a warm-up the two sides alternate in blocks over every
    query (shuffled), for ``--repeat`` rounds or as many as fit in ``--search-seconds``;
    p50 and p95 per query, and over all requests of each side. Each query also shows
    how many memories match it: the search scores every match to pick its 20.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx

from application.memory import MAX_BATCH, MemoryApplication
from benchmarks.common import free_port, fresh_database, postgres_server, service_env, start, stop
from domain.memory.memory import KINDS, Draft, Memory, parse_memory
from domain.memory.sealing import new_key, seal
from domain.metadata import acting_as
from infrastructure import keys
from infrastructure.postgres import eventsourcing_env
from infrastructure.schema import migrate
from infrastructure.wiring import postgres_ports
from projections import memory as views
from projections import memory_search

GOAL_RECORD = 0.7
GOAL_SEARCH_RATIO = 2.0
GOAL_SEARCH_P95_MS = 50.0
AGENTS = tuple(f"agent-{i:03d}" for i in range(100))
# Most frequent first: word i is drawn with weight 1 / (i + 1) ** ZIPF.
VOCABULARY = tuple(
    """
    price market trade position volume trend earnings risk signal support resistance
    momentum volatility breakout rally selloff guidance revenue margin dividend yield
    spread liquidity hedge exposure leverage portfolio allocation rebalance drawdown
    benchmark sector rotation inflation rates treasury bond credit default inflow outflow
    buyback acquisition merger downgrade upgrade analyst consensus estimate forecast beat
    miss surprise quarter annual outlook demand supply inventory shipment backlog order
    semiconductor software cloud retail energy crude natural utilities financials banks
    insurance healthcare biotech pharma approval trial regulator lawsuit settlement tariff
    currency dollar euro yen emerging frontier commodity gold silver copper wheat futures
    options calls puts strike expiry premium implied skew gamma delta theta vega straddle
    collar covered assignment rollover contango backwardation basis arbitrage pairs
    correlation beta alpha sharpe sortino variance regression factor quality growth value
    smallcap midcap megacap index etf flows sentiment positioning crowded squeeze
    capitulation reversal consolidation accumulation distribution divergence overbought
    oversold gap pullback retracement fibonacci moving average crossover macd stochastic
    bollinger vwap orderbook bid ask slippage execution algo latency fill partial limit
    stop trailing target entry exit scaling pyramid conviction thesis catalyst narrative
    headline rumor filing insider lockup ipo spinoff restructuring bankruptcy covenant
    refinancing maturity coupon duration convexity curve steepening flattening inversion
    recession expansion payrolls unemployment consumer confidence housing starts permits
    manufacturing services pmi stimulus tightening easing hawkish dovish minutes testimony
    """.split()
)
ZIPF = 0.7
PHRASES = (
    "short squeeze", "earnings beat", "guidance cut", "rate hike", "stop loss",
    "volume spike", "yield curve", "dead cat bounce", "golden cross", "profit taking",
    "margin call", "risk off", "price target", "free cash flow", "record high",
)  # fmt: skip
TICKERS = (
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "BRK.B", "JPM", "V", "XOM",
    "UNH", "JNJ", "WMT", "PG", "MA", "HD", "CVX", "LLY", "ABBV", "KO", "PEP", "AVGO",
    "COST", "MRK", "BAC", "ORCL", "AMD", "NFLX", "CRM", "INTC", "DIS", "CSCO", "ADBE",
    "QCOM", "TXN", "IBM", "GS", "MS", "CAT", "BA", "NKE", "SBUX", "SPY", "QQQ", "IWM",
)  # fmt: skip
TAGS = (
    "earnings", "macro", "technical", "risk", "sentiment", "options", "fx", "rates",
    "news", "momentum", "value", "execution", "watchlist", "thesis", "review",
)  # fmt: skip
SOURCES = ("market-feed", "news-reader", "backtest", "chat", "research-note", "")
ORGANISATIONS = ("Federal Reserve", "ECB", "SEC", "OPEC", "Treasury", "Bank of Japan")
PREDICATES = ("outperforms", "lags", "correlates with", "hedges", "leads")
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

Query = tuple[str, str, str | None]  # label, q, agent_id
Samples = dict[int, list[float]]  # seconds per request, by query
Slice = tuple[str, Callable[[Any], Any], list[Any]]  # side, work per batch, batches


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in (0, 1])."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def log(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------------------------------
# The memories


class Corpus:
    """Seeded synthetic memories as ``POST /api/v1/memory/batch`` would receive them."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.cum_weights = list(
            itertools.accumulate(1 / (i + 1) ** ZIPF for i in range(len(VOCABULARY)))
        )

    def batch(self, name: str, index: int, size: int) -> list[dict[str, Any]]:
        """Batch ``index`` of stream ``name``: the same for the same seed, in any order."""
        rng = random.Random(f"{self.seed}:{name}:{index}")
        return [self.memory(rng) for _ in range(size)]

    def memory(self, rng: random.Random) -> dict[str, Any]:
        words = rng.choices(VOCABULARY, cum_weights=self.cum_weights, k=rng.randint(18, 36))
        tickers = rng.sample(TICKERS, rng.randint(1, 2))
        for ticker in tickers:
            words.insert(rng.randrange(len(words) + 1), f"${ticker}")
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words) + 1), rng.choice(PHRASES))
        content = " ".join(words)
        raw: dict[str, Any] = {
            "agent_id": rng.choice(AGENTS),
            "content": content[0].upper() + content[1:] + ".",
            "kind": rng.choices(KINDS, weights=(6, 2, 1, 1))[0],
            "importance": round(rng.betavariate(2, 3), 2),
            "tags": rng.sample(TAGS, rng.randint(1, 3)),
            "source": rng.choice(SOURCES),
        }
        if rng.random() < 0.5:
            moment = EPOCH + timedelta(seconds=rng.randrange(300 * 86400))
            raw["occurred_at"] = moment.isoformat()
        if rng.random() < 0.1:
            raw["entities"] = [{"name": rng.choice(ORGANISATIONS), "type": "organization"}]
        if rng.random() < 0.05:
            raw["relations"] = [
                {"subject": f"${tickers[0]}", "predicate": rng.choice(PREDICATES),
                 "object": f"${rng.choice(TICKERS)}"}
            ]  # fmt: skip
        return raw


def search_queries(seed: int) -> list[Query]:
    """(label, q, agent_id): each query shape without and with an agent filter."""
    rng = random.Random(f"{seed}:queries")
    frequent = rng.sample(VOCABULARY[:15], 2)
    rarer = rng.sample(VOCABULARY[15:], 3)
    long_word = rng.choice([w for w in VOCABULARY[15:] if len(w) >= 9])
    first, second = rng.sample(VOCABULARY[:40], 2)
    shapes = [
        *((f"word (frequent) {w}", w) for w in frequent),
        *((f"word {w}", w) for w in rarer),
        (f"partial {long_word[:6]}", long_word[:6]),
        ("ticker", f"${rng.choice(TICKERS)}"),
        ("phrase", f'"{rng.choice(PHRASES)}"'),
        ("exclusion", f"{first} -{second}"),
    ]
    agent = rng.choice(AGENTS)
    return [(label, q, None) for label, q in shapes] + [
        (f"{label} +agent", q, agent) for label, q in shapes
    ]


# ---------------------------------------------------------------------------------------
# (a) recording


def _no_body(memories: list[Memory]) -> tuple[int, Any]:
    return 201, None


def record_batch(app: MemoryApplication, raws: list[dict[str, Any]]) -> int:
    """The command path of ``POST /api/v1/memory/batch`` after the HTTP layer."""
    with acting_as("benchmark", "memory-benchmark"):
        drafts = [parse_memory(raw, f"memories[{i}].") for i, raw in enumerate(raws)]
        app.record(drafts, respond=_no_body)
    return len(drafts)


def save_directly(app: MemoryApplication, batch: list[tuple[Draft, str]]) -> list[UUID]:
    """The baseline: the same aggregates, saved with no parsing, sealing or key vault."""
    with acting_as("benchmark", "memory-benchmark"):
        now = datetime.now(UTC)
        memories = [Memory.record(uuid4(), draft, sealed, now) for draft, sealed in batch]
        app.save(*memories)
    return [m.id for m in memories]


def prepare_direct(raws: list[dict[str, Any]]) -> list[tuple[Draft, str]]:
    prepared = []
    for raw in raws:
        draft = parse_memory(raw)
        prepared.append((draft, seal(new_key(), uuid4(), draft.document)))
    return prepared


def timed(pool: ThreadPoolExecutor, work: Callable[[Any], Any], items: list[Any]) -> float:
    """Seconds to run ``work`` over ``items`` on the pool, inputs prepared beforehand."""
    # The prepared inputs are many long-lived objects: keep the cyclic collector from
    # scanning them over and over while the clock runs (a server would not hold them).
    gc.collect()
    gc.freeze()
    try:
        started = time.perf_counter()
        list(pool.map(work, items))
        return time.perf_counter() - started
    finally:
        gc.unfreeze()


def sizes(total: int, batch: int) -> list[int]:
    return [min(batch, total - start) for start in range(0, total, batch)]


def split(items: Sequence[int], parts: int) -> list[Sequence[int]]:
    return [items[k * len(items) // parts : (k + 1) * len(items) // parts] for k in range(parts)]


def record_rounds(
    url: str, corpus: Corpus, memories: int, baseline: int, threads: int, round_size: int
) -> tuple[float, float, list[UUID]]:
    """Memories/s through ``record`` and by direct saves, and the baseline's memory ids.

    Both sides go in slices, alternately: a slice of the baseline is at least two batches
    per thread (so no thread idles for long at its end), and the batches of ``record``
    are spread over as many slices. A round generates the input of the slices that hold
    ``round_size`` memories of ours before their clocks start.
    """
    ours_sizes, direct_sizes = sizes(memories, MAX_BATCH), sizes(baseline, MAX_BATCH)
    slices = max(1, len(direct_sizes) // (2 * threads))
    ours_slices = split(range(len(ours_sizes)), slices)
    direct_slices = split(range(len(direct_sizes)), slices)
    per_round = max(1, round_size * slices // memories)
    app = MemoryApplication(env=eventsourcing_env(url, pool_size=threads), ports=postgres_ports())
    direct_ids: list[UUID] = []
    done = {"ours": 0, "direct": 0}
    seconds = {"ours": 0.0, "direct": 0.0}

    def run_ours(raws: list[dict[str, Any]]) -> int:
        return record_batch(app, raws)

    def run_direct(batch: list[tuple[Draft, str]]) -> None:
        direct_ids.extend(save_directly(app, batch))  # one call: atomic under the GIL

    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(threads) as pool:
            for first in range(0, slices, per_round):
                group = range(first, min(slices, first + per_round))
                inputs: list[Slice] = []
                for k in group:
                    ours = [corpus.batch("record", i, ours_sizes[i]) for i in ours_slices[k]]
                    direct = [
                        prepare_direct(corpus.batch("direct", i, direct_sizes[i]))
                        for i in direct_slices[k]
                    ]
                    pair: list[Slice] = [("ours", run_ours, ours), ("direct", run_direct, direct)]
                    inputs += pair if k % 2 == 0 else pair[::-1]  # neither always goes first
                for side, work, items in inputs:
                    seconds[side] += timed(pool, work, items)
                    done[side] += sum(len(b) for b in items)
                del inputs
                elapsed = time.perf_counter() - started
                eta = elapsed / max(1, done["ours"]) * (memories - done["ours"])
                rates = [done[k] / max(seconds[k], 1e-9) for k in ("ours", "direct")]
                log(f"  record() {done['ours']:,}/{memories:,} at {rates[0]:,.0f}/s; direct saves "
                    f"{done['direct']:,}/{baseline:,} at {rates[1]:,.0f}/s; "
                    f"{elapsed:,.0f} s so far, about {eta:,.0f} s to go")  # fmt: skip
    finally:
        app.close()
    return done["ours"] / seconds["ours"], done["direct"] / seconds["direct"], direct_ids


async def delete_events(url: str, ids: list[UUID], expected: int) -> int:
    """Delete the baseline's events; returns the memory log's head position."""
    conn = await asyncpg.connect(url)
    try:
        for start_at in range(0, len(ids), 10_000):
            await conn.execute(
                "DELETE FROM memory_events WHERE originator_id = ANY($1::uuid[])",
                ids[start_at : start_at + 10_000],
            )
        await conn.execute("VACUUM ANALYZE memory_events")
        count = await conn.fetchval("SELECT count(*) FROM memory_events")
        if count != expected:
            raise RuntimeError(f"the memory log holds {count} events, not {expected}")
        return int(await conn.fetchval("SELECT max(notification_id) FROM memory_events"))
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------
# (b) projection


def start_projector(env: dict[str, str], errors: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "projector"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=errors,
    )


async def wait_projected(
    url: str, head: int, total: int, proc: subprocess.Popen[bytes], started: float
) -> float:
    """Seconds from ``started`` until every projection of the memory log reached ``head``."""
    conn = await asyncpg.connect(url)
    try:
        shown = started
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the projector exited with {proc.returncode}")
            low = await conn.fetchval(
                "SELECT min(position) FROM aimm_projection_positions WHERE context = 'memory'"
            )
            now = time.perf_counter()
            if low is not None and low >= head:
                return now - started
            if now - shown >= 10:
                shown = now
                done = await conn.fetchval(
                    "SELECT count(*) FROM memory_events WHERE notification_id <= $1", low or 0
                )
                rate = done / (now - started)
                eta = (total - done) / rate if rate else float("inf")
                log(f"  projected {done:,}/{total:,} memories in {now - started:,.0f} s "
                    f"({rate:,.0f}/s), about {eta:,.0f} s to go")  # fmt: skip
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def vacuum_read_models(url: str) -> float:
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        for table in (views.MEMORIES, views.ENTITIES, views.RELATIONS, views.LIFECYCLE):
            await conn.execute(f"VACUUM ANALYZE {table}")
        return time.perf_counter() - started
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------
# (c) search


async def search_latencies(
    url: str, base: str, key: str, queries: list[Query], args: Any
) -> tuple[Samples, Samples, dict[int, int]]:
    """Seconds per request of each query over HTTP and bare SQL, and its matches."""
    http: Samples = {i: [] for i in range(len(queries))}
    bare: Samples = {i: [] for i in range(len(queries))}
    matches: dict[int, int] = {}
    conn = await asyncpg.connect(url)
    headers = {"Authorization": f"Bearer {key}"}
    try:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=600) as client:

            async def over_http(i: int) -> tuple[float, int]:
                _, q, agent = queries[i]
                params: dict[str, Any] = {"q": q, "limit": 20}
                if agent is not None:
                    params["agent_id"] = agent
                began = time.perf_counter()
                response = await client.get("/api/v1/memory/search", params=params)
                took = time.perf_counter() - began
                if response.status_code != 200:
                    raise RuntimeError(f"search {q!r}: {response.status_code} {response.text}")
                return took, len(response.json()["items"])

            async def over_sql(i: int) -> tuple[float, int]:
                _, q, agent = queries[i]
                began = time.perf_counter()
                rows = await memory_search.search(
                    conn, q=q, now=datetime.now(UTC), agent_id=agent, limit=20
                )
                return time.perf_counter() - began, len(rows)

            order = list(range(len(queries)))
            began = shown = time.perf_counter()
            for round_ in range(args.warmup):
                for i in order:
                    h, s = (await over_http(i))[1], (await over_sql(i))[1]
                    if h != s:
                        log(f"  note: {queries[i][1]!r} gave {h} hits over HTTP, {s} bare")
                    if time.perf_counter() - shown >= 30:
                        shown = time.perf_counter()
                        log(f"  warm-up round {round_ + 1}: {i + 1}/{len(queries)} queries "
                            f"({shown - began:,.0f} s)")  # fmt: skip
            log(f"  warmed up: {args.warmup} x {len(queries)} queries on each side "
                f"({time.perf_counter() - began:,.0f} s); counting their matches")  # fmt: skip
            for i, (_, q, agent) in enumerate(queries):
                matches[i] = await count_matches(conn, q, agent)
            rng = random.Random(f"{args.seed}:order")
            started = time.perf_counter()
            for rep in range(args.repeat):
                elapsed = time.perf_counter() - started
                if rep and elapsed / rep * (rep + 1) > args.search_seconds:
                    log(f"  stopped after {rep} rounds: another would pass --search-seconds "
                        f"{args.search_seconds:.0f}")  # fmt: skip
                    break
                rng.shuffle(order)
                sides = [(http, over_http), (bare, over_sql)]
                for samples, run in sides if rep % 2 == 0 else sides[::-1]:
                    for i in order:
                        samples[i].append((await run(i))[0])
                    # Let the last hits' reinforcement finish before the other side's block.
                    await asyncio.sleep(0.2)
                log(f"  search round {rep + 1}/{args.repeat} "
                    f"({time.perf_counter() - started:,.0f} s)")  # fmt: skip
    finally:
        await conn.close()
    return http, bare, matches


async def count_matches(conn: asyncpg.Connection, q: str, agent: str | None) -> int:
    """How many memories the search ranks to pick its 20: every match is scored."""
    fuzzy = not memory_search.uses_operators(q)
    return int(
        await conn.fetchval(
            f"SELECT count(*) FROM {views.MEMORIES} m, websearch_to_tsquery('english', $1) q "
            "WHERE (m.search @@ q OR ($3 AND $1 <% m.content)) AND m.status = 'active' "
            "AND ($2::text IS NULL OR m.agent_id = $2)",
            q,
            agent,
            fuzzy,
        )
    )


async def explain(url: str, q: str, agent: str | None) -> dict[str, list[str]]:
    """EXPLAIN ANALYZE of the statement ``views.search`` runs, with the same parameters
    and the same plan mode (a custom plan for these values)."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            sql, args = await memory_search.search_statement(
                conn, q=q, now=datetime.now(UTC), agent_id=agent
            )
            rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
        return {"custom": [r[0] for r in rows]}
    finally:
        await conn.close()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f}"


def report_search(
    queries: list[Query],
    http: Samples,
    bare: Samples,
    matches: dict[int, int],
) -> tuple[float, float]:
    log(f"  {'query':<34} {'q':<20} {'matches':>8} {'HTTP p50':>9} {'p95':>8} "
        f"{'SQL p50':>9} {'p95':>8}  (ms)")  # fmt: skip
    for i, (label, q, _) in enumerate(queries):
        log(f"  {label:<34} {q:<20} {matches[i]:>8,} {ms(percentile(http[i], 0.5))} "
            f"{ms(percentile(http[i], 0.95))}  {ms(percentile(bare[i], 0.5))} "
            f"{ms(percentile(bare[i], 0.95))}")  # fmt: skip
    every_http = [t for ts in http.values() for t in ts]
    every_bare = [t for ts in bare.values() for t in ts]
    http_p95, bare_p95 = percentile(every_http, 0.95), percentile(every_bare, 0.95)
    log(f"  all {len(every_http):,} requests per side:")
    log(f"    GET /api/v1/memory/search   p50 {ms(percentile(every_http, 0.5))} ms, "
        f"p95 {ms(http_p95)} ms")  # fmt: skip
    log(f"    bare search() on asyncpg    p50 {ms(percentile(every_bare, 0.5))} ms, "
        f"p95 {ms(bare_p95)} ms")  # fmt: skip
    return http_p95, bare_p95


# ---------------------------------------------------------------------------------------


async def set_up(url: str) -> str:
    await migrate(url)
    conn = await asyncpg.connect(url)
    try:
        key, _ = await keys.create_key(conn, roles=["viewer"], name="memory-benchmark")
        return key
    finally:
        await conn.close()


def record_phase(url: str, args: argparse.Namespace) -> int:
    """(a); returns the memory log's head once the baseline's events are gone."""
    log(f"(a) recording {args.memories:,} memories for {len(AGENTS)} agents in batches of "
        f"{MAX_BATCH:,} from {args.threads} threads; {args.baseline:,} saved directly")  # fmt: skip
    ours, direct, direct_ids = record_rounds(
        url, Corpus(args.seed), args.memories, args.baseline, args.threads, args.round_size
    )
    ratio = ours / direct
    log(f"  MemoryApplication.record (parse, seal, key vault, save) {ours:10,.0f} memories/s")
    log(f"  direct Application saves of the same aggregates      {direct:10,.0f} memories/s")
    log(f"  ratio {ratio:.3f} (goal >= {GOAL_RECORD}: "
        f"{'met' if ratio >= GOAL_RECORD else 'MISSED'})")  # fmt: skip
    log(f"  deleting the baseline's {len(direct_ids):,} events, then VACUUM ANALYZE of the log")
    return asyncio.run(delete_events(url, direct_ids, args.memories))


def project_phase(
    url: str, args: argparse.Namespace, head: int, projector: Callable[[], Any]
) -> None:
    """(b): wait for the projector process until it has projected the whole log."""
    log(f"(b) projecting {args.memories:,} memories with `aimm projector` (every read model)")
    started = time.perf_counter()
    took = asyncio.run(wait_projected(url, head, args.memories, projector(), started))
    log(f"  caught up in {took:,.1f} s: {args.memories / took:,.0f} memories/s "
        "(process start included)")  # fmt: skip
    took = asyncio.run(vacuum_read_models(url))
    log(f"  VACUUM ANALYZE of the memory read models: {took:.1f} s")


def search_verdict(
    url: str,
    args: argparse.Namespace,
    queries: list[Query],
    results: tuple[Samples, Samples, dict[int, int]],
) -> None:
    """(c)'s figures, the goals and, if asked, the plans of the slowest queries."""
    http, bare, matches = results
    http_p95, bare_p95 = report_search(queries, http, bare, matches)
    ratio = http_p95 / bare_p95
    met = ratio <= GOAL_SEARCH_RATIO and http_p95 * 1000 < GOAL_SEARCH_P95_MS
    log(f"  p95 ratio HTTP / bare {ratio:.2f} (goal <= {GOAL_SEARCH_RATIO} and HTTP p95 < "
        f"{GOAL_SEARCH_P95_MS:.0f} ms: {'met' if met else 'MISSED'})")  # fmt: skip
    if not args.explain:
        return
    # The slowest query, and the slowest with an agent filter.
    for subset in (range(len(queries)), [i for i, x in enumerate(queries) if x[2]]):
        slowest = max(subset, key=lambda i: percentile(bare[i], 0.5))
        label, q, agent = queries[slowest]
        for mode, lines in asyncio.run(explain(url, q, agent)).items():
            log(f"EXPLAIN ANALYZE, {mode} plan, of {label} ({q!r}, agent {agent}):")
            for line in lines:
                log(f"  {line}")


def run(url: str, args: argparse.Namespace) -> None:
    began = time.perf_counter()
    key = asyncio.run(set_up(url))
    head = record_phase(url, args)
    env = service_env(url)
    procs: list[subprocess.Popen[bytes]] = []
    queries = search_queries(args.seed)
    with tempfile.TemporaryFile() as errors:

        def projector() -> subprocess.Popen[bytes]:
            procs.append(start_projector(env, errors))
            return procs[-1]

        try:
            project_phase(url, args, head, projector)
            log(f"(c) search: {len(queries)} queries, up to {args.repeat} rounds per side "
                f"or {args.search_seconds:.0f} s, limit 20")  # fmt: skip
            port = free_port()
            procs.append(
                start(
                    [sys.executable, "-m", "api.cli", "serve"],
                    {**env, "AIMM_PORT": str(port)},
                    port,
                )
            )
            results = asyncio.run(
                search_latencies(url, f"http://127.0.0.1:{port}", key, queries, args)
            )
        except BaseException:
            errors.seek(0)
            tail = errors.read()[-3000:].decode(errors="replace")
            if tail:
                log(f"projector stderr:\n{tail}")
            raise
        finally:
            stop(procs)
    search_verdict(url, args, queries, results)
    log(f"whole run: {time.perf_counter() - began:,.0f} s")


class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The docstring as written, and every knob with its default."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_Help)
    parser.add_argument("--memories", type=int, default=1_000_000, help="memories to record")
    parser.add_argument(
        "--baseline", type=int, default=100_000, help="memories saved directly (the baseline)"
    )
    parser.add_argument("--threads", type=int, default=2, help="threads recording batches")
    parser.add_argument(
        "--round-size", type=int, default=100_000,
        help="memories recorded per round (each round's input is generated before its clock)",
    )  # fmt: skip
    parser.add_argument("--repeat", type=int, default=20, help="search rounds per side, at most")
    parser.add_argument(
        "--search-seconds", type=float, default=600,
        help="no further search round once the measured ones would pass this (min. 1 round)",
    )  # fmt: skip
    parser.add_argument("--warmup", type=int, default=1, help="warm-up rounds per side")
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument(
        "--explain", action="store_true", help="EXPLAIN ANALYZE the slowest search at the end"
    )
    args = parser.parse_args()
    if args.baseline < 1 or args.memories < 1:
        parser.error("--memories and --baseline must be at least 1")
    where = "AIMM_DATABASE_URL's server" if os.environ.get("AIMM_DATABASE_URL") else "embedded"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    log(f"PostgreSQL: {where}; {os.cpu_count()} CPUs, load average {load} at start")
    with postgres_server() as server, fresh_database(server) as url:
        run(url, args)


if __name__ == "__main__":
    main()
