"""Read model of registered models (``rm_models``) and the queries the API serves from it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from uuid import UUID

import asyncpg
import msgspec

from projections.events import Event

COLUMNS = (
    "id",
    "name",
    "kind",
    "task",
    "description",
    "owner",
    "tags",
    "version",
    "position",
    "created_at",
    "updated_at",
    "created_by",
)


# Where the fold keeps each column in a row of COLUMNS.
_TASK, _DESCRIPTION, _OWNER, _TAGS, _VERSION, _POSITION, _UPDATED_AT = (
    COLUMNS.index(c)
    for c in ("task", "description", "owner", "tags", "version", "position", "updated_at")
)


_encode_json = msgspec.json.Encoder().encode


def split_table(table: str) -> tuple[str | None, str]:
    schema, _, name = table.rpartition(".")
    return (schema or None), name


class RegistryModels:
    name: ClassVar[str] = "registry_models"
    contexts: ClassVar[tuple[str, ...]] = ("registry",)
    tables: ClassVar[Mapping[str, Sequence[str]]] = {
        "models": (
            """
            CREATE TABLE {models} (
                id uuid PRIMARY KEY,
                name text NOT NULL UNIQUE,
                kind text NOT NULL,
                task text NOT NULL,
                description text NOT NULL,
                owner text NOT NULL,
                tags text[] NOT NULL,
                version integer NOT NULL,
                position bigint NOT NULL,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                created_by text NOT NULL
            ) WITH (fillfactor = 70)
            """,
            "CREATE INDEX ON {models} (kind, name)",
            "CREATE INDEX ON {models} USING gin (tags)",
        ),
    }

    async def apply(
        self, conn: asyncpg.Connection, tables: Mapping[str, str], events: Sequence[Event]
    ) -> None:
        # Fold the batch in memory, one list per row: a model registered in this batch is
        # written once with its final state (COPY); older ones get one UPDATE row each.
        new: dict[UUID, list[Any]] = {}  # rows in COLUMNS order
        # task, description, owner, tags (None: unchanged), version, position, updated_at
        changed: dict[UUID, list[Any]] = {}
        for e in events:
            kind = e.type
            if not kind.startswith("Model."):
                continue
            if kind == "Model.Registered":
                d = e.data
                new[e.aggregate_id] = [
                    e.aggregate_id,
                    d["name"],
                    d["kind"],
                    d["task"],
                    d["description"],
                    d["owner"],
                    d["tags"],
                    e.version,
                    e.position,
                    e.timestamp,
                    e.timestamp,
                    e.meta.get("principal", "unknown"),
                ]
                continue
            # Details, or versions, deployments, metrics: the model's version (its ETag)
            # moves on either way.
            row = new.get(e.aggregate_id)
            if row is not None:
                if kind == "Model.DetailsUpdated":
                    d = e.data
                    row[_TASK], row[_DESCRIPTION] = d["task"], d["description"]
                    row[_OWNER], row[_TAGS] = d["owner"], d["tags"]
                row[_VERSION] = e.version
                row[_POSITION] = e.position
                row[_UPDATED_AT] = e.timestamp
                continue
            change = changed.get(e.aggregate_id)
            if change is None:
                change = changed[e.aggregate_id] = [None, None, None, None, 0, 0, None]
            if kind == "Model.DetailsUpdated":
                d = e.data
                change[0:4] = d["task"], d["description"], d["owner"], d["tags"]
            change[4:7] = e.version, e.position, e.timestamp
        table = tables["models"]
        if new:
            schema, name = split_table(table)
            await conn.copy_records_to_table(
                name, schema_name=schema, columns=COLUMNS, records=list(new.values())
            )
        if changed:
            # One set-based UPDATE for the whole batch, its rows sent as one JSON document:
            # msgspec encodes it in C, where asyncpg would encode eight arrays element by
            # element in Python (and a rebuild is bound by the read side's Python time).
            rows = [
                {
                    "id": model_id,
                    "task": c[0],
                    "description": c[1],
                    "owner": c[2],
                    "tags": c[3],
                    "version": c[4],
                    "position": c[5],
                    "updated_at": c[6],
                }
                for model_id, c in changed.items()
            ]
            await conn.execute(
                f"UPDATE {table} AS m SET task = coalesce(c.task, m.task), "
                "description = coalesce(c.description, m.description), "
                "owner = coalesce(c.owner, m.owner), tags = coalesce(c.tags, m.tags), "
                "version = c.version, position = c.position, updated_at = c.updated_at "
                "FROM json_to_recordset($1::text::json) AS c(id uuid, task text, "
                "description text, owner text, tags text[], version integer, position bigint, "
                "updated_at timestamptz) WHERE m.id = c.id",
                _encode_json(rows).decode(),
            )


async def list_models(  # noqa: PLR0913
    conn: asyncpg.Connection,
    *,
    kind: str | None,
    tag: str | None,
    q: str | None,
    after_name: str | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Models ordered by name, after the cursor's name, filtered; ``limit`` rows."""
    return await conn.fetch(
        f"SELECT {', '.join(COLUMNS)} FROM rm_models "
        "WHERE ($1::text IS NULL OR kind = $1) "
        "AND ($2::text IS NULL OR tags @> ARRAY[$2::text]) "
        "AND ($3::text IS NULL OR name ILIKE '%' || $3 || '%' OR task ILIKE '%' || $3 || '%' "
        "     OR description ILIKE '%' || $3 || '%') "
        "AND ($4::text IS NULL OR name > $4) "
        "ORDER BY name LIMIT $5",
        kind,
        tag.lower() if tag else None,
        q,
        after_name,
        limit,
    )


async def get_model(conn: asyncpg.Connection, model_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {', '.join(COLUMNS)} FROM rm_models WHERE id = $1", model_id
    )
