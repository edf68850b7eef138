"""Keyword search over the memory read model (``projections.memory``).

``search`` finds, ranks and pages the memories matching a query (see its docstring for
the two steps and the scoring). Snippets are safe to show as HTML: ``ts_headline``
marks the matched words with two private-use sentinels over the raw text (from which
any such characters were removed first), the result is HTML-escaped, and only then
are the sentinels replaced by ``<mark>`` and ``</mark>``: those are the only markup a
snippet can hold, whatever the memory's text contains (``<img onerror=…>``,
``</mark><script>``).

Paging: ``after`` is the (score, id) of the last hit of the previous page, and ``now``
must be the instant of the first page (the cursor carries both), so every page ranks
with the same strengths and the keyset order (score descending, id) is stable while
the memories do not change. Only the RANKED best text matches are scored, so paging
ends after at most RANKED hits.
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from domain.memory.strength import SQL_STRENGTH
from projections.memory import HIT_COLUMNS, MEMORIES, VISIBLE, WORDS, words_of

# A web-search operator: a quoted phrase, OR, or an exclusion. With one, the query is
# taken as written (an expansion could bring back what ``-word`` excluded).
_OPERATORS = re.compile(r"\"|(?:^|\s)-\S|\sor\s", re.IGNORECASE)
# Highlight sentinels (Unicode private use): removed from the text before ts_headline,
# so only ts_headline's own marks become <mark> once the text is escaped.
START_SEL, STOP_SEL = "\ue000", "\ue001"
_HEADLINE = f"StartSel={START_SEL}, StopSel={STOP_SEL}"
# Ranking reads this many of the most recent matches at most, so a word that half the
# memories contain costs what a rare one does (see search()).
CANDIDATES = 1000
# ... and scores the best RANKED of them by text rank with their strength.
RANKED = 200
EXPANSIONS = 5


def uses_operators(q: str) -> bool:
    """Whether ``q`` uses web-search syntax (then it is searched as written)."""
    return _OPERATORS.search(q) is not None


def safe_snippet(headline: str | None) -> str:
    """A ts_headline made with the sentinels, as HTML: the text escaped, marks as <mark>."""
    if not headline:
        return ""
    escaped = html.escape(headline, quote=True)
    return escaped.replace(START_SEL, "<mark>").replace(STOP_SEL, "</mark>")


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
       in HTML-escaped text (``safe_snippet``). A word in a fifth of all memories thus
       costs about what a rare one does; the price is that its older matches are not
       ranked.

    Only the filters given become SQL conditions, and the plan is made for these
    values (``plan_cache_mode = force_custom_plan``): a plan cached for another agent or
    another word's frequency can be a hundred times slower. ``start``/``end`` bound
    ``occurred_at``: start inclusive, end exclusive. ``criteria`` are the keyword
    arguments of ``search_statement``; ``after`` pages (see the module).

    Returns dicts: the hit's columns, its score parts and its safe ``snippet``.
    """
    if not criteria["q"].strip():
        return []
    async with conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        sql, args = await search_statement(conn, **criteria)
        rows = await conn.fetch(sql, *args)
    return [{**dict(r), "snippet": safe_snippet(r["snippet"])} for r in rows]


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
    after: tuple[float, UUID] | None = None,
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
    where = ["m.search @@ q.query", VISIBLE.format(flag="$4")]
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
    page = ""
    if after is not None:
        args += [after[0], after[1]]
        n = len(args)
        page = f"WHERE s.score < ${n - 1}::float8 OR (s.score = ${n - 1} AND s.id > ${n}::uuid) "
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
        "ranked AS (SELECT * FROM (SELECT r.*, r.relevance * (0.5 + 0.5 * r.strength) "
        f"AS score FROM (SELECT {HIT_COLUMNS}, b.text_rank, $3::float8 AS trigram, "
        f"b.text_rank + 0.5 * $3::float8 AS relevance, {strength} AS strength "
        f"FROM best b JOIN {MEMORIES} m ON m.id = b.id) r) s {page}"
        "ORDER BY s.score DESC, s.id LIMIT $5) "
        "SELECT h.*, ts_headline('english', "
        f"translate(h.content, '{START_SEL}{STOP_SEL}', ''), {query}, '{_HEADLINE}') "
        "AS snippet "
        "FROM ranked h ORDER BY h.score DESC, h.id"
    )
    return sql, args
