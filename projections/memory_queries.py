"""Queries of the memory read model (``projections.memory``): one memory's detail, the
graph's rows, the agents, the timeline and its counts, and the candidates of a bulk forget.

Every function takes a connection; a caller that reads several of them for one response
runs them in one read-only repeatable-read transaction (``detail`` does so itself).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from domain.memory.strength import SQL_STRENGTH
from projections.memory import (
    COLUMNS,
    ENTITIES,
    HIT_COLUMNS,
    LIFECYCLE,
    MEMORIES,
    RELATIONS,
    VISIBLE,
)

_decode = msgspec.json.Decoder(dict[str, Any]).decode


async def get_memory(conn: asyncpg.Connection, memory_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {', '.join(COLUMNS)} FROM {MEMORIES} WHERE id = $1", memory_id
    )


async def detail(conn: asyncpg.Connection, memory_id: UUID) -> dict[str, Any] | None:
    """One memory as its detail shows it: its row, ``entities`` and ``relations`` in
    declared order, and ``lifecycle`` (one mark per event, in version order: mark, at,
    version, correlation_id, detail with ``by``), read in one read-only repeatable-read
    snapshot so the parts are never torn between two projector commits."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        row = await get_memory(conn, memory_id)
        if row is None:
            return None
        found: dict[str, Any] = dict(row)
        found["entities"] = [
            {"name": r["name"], "type": r["type"]} for r in await entities_of(conn, [memory_id])
        ]
        found["relations"] = [
            {"subject": r["subject"], "predicate": r["predicate"], "object": r["object"]}
            for r in await relations_of(conn, [memory_id])
        ]
        found["lifecycle"] = [
            {**dict(r), "detail": _decode(r["detail"])}
            for r in await conn.fetch(
                f"SELECT mark, at, version, correlation_id, detail FROM {LIFECYCLE} "
                "WHERE memory_id = $1 ORDER BY version",
                memory_id,
            )
        ]
    return found


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
        f"SELECT * FROM (SELECT {HIT_COLUMNS}, {strength} AS strength FROM {MEMORIES} m "
        f"WHERE m.agent_id = $1 AND {VISIBLE.format(flag='$3')}) s "
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
        f"SELECT {HIT_COLUMNS} FROM {MEMORIES} m WHERE m.agent_id = $1 "
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


async def agents(
    conn: asyncpg.Connection, *, only: str | None, after: str | None, limit: int
) -> list[asyncpg.Record]:
    """Each agent with memories, by id after ``after`` (``only``: that agent alone): how
    many memories it has in each status and when it last recorded one."""
    return await conn.fetch(
        "SELECT agent_id, count(*)::integer AS memories, "
        "count(*) FILTER (WHERE status = 'active')::integer AS active, "
        "count(*) FILTER (WHERE status = 'invalidated')::integer AS invalidated, "
        "count(*) FILTER (WHERE status = 'erased')::integer AS erased, "
        f"max(created_at) AS last_recorded_at FROM {MEMORIES} "
        "WHERE ($1::text IS NULL OR agent_id = $1) AND ($2::text IS NULL OR agent_id > $2) "
        "GROUP BY agent_id ORDER BY agent_id LIMIT $3",
        only,
        after,
        limit,
    )


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
    limit: int = 50,
    after: tuple[float, UUID] | None = None,
) -> list[asyncpg.Record]:
    """The agent's active memories created before ``older_than`` and no stronger than
    ``max_strength`` at ``now`` (each if given), weakest first (strength, then id), with
    their strength; ``after`` is the (strength, id) of the last one of a previous page
    computed at the same ``now``."""
    strength = SQL_STRENGTH.format(t="m", now="$2::timestamptz")
    return await conn.fetch(
        f"SELECT * FROM (SELECT m.id, m.agent_id, m.kind, m.importance, m.occurred_at, "
        "m.created_at, m.stability_days, m.anchor_at, m.accesses, m.feedback, "
        f"{strength} AS strength FROM {MEMORIES} m WHERE m.agent_id = $1 "
        "AND m.status = 'active' AND ($3::timestamptz IS NULL OR m.created_at < $3)) s "
        "WHERE ($4::float8 IS NULL OR s.strength <= $4) "
        "AND ($6::float8 IS NULL OR (s.strength, s.id) > ($6, $7::uuid)) "
        "ORDER BY s.strength, s.id LIMIT $5",
        agent_id,
        now,
        older_than,
        max_strength,
        limit,
        None if after is None else after[0],
        None if after is None else after[1],
    )
