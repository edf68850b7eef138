"""Read model of registered models (``rm_models``) and the queries the API serves from it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from typing import Any, ClassVar
from uuid import UUID

import asyncpg

from projections.events import Event

COLUMNS = (
    "id", "name", "kind", "task", "description", "owner", "tags",
    "version", "position", "created_at", "updated_at", "created_by",
)  # fmt: skip


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
            )
            """,
            "CREATE INDEX ON {models} (kind, name)",
            "CREATE INDEX ON {models} USING gin (tags)",
        ),
    }

    async def apply(
        self, conn: asyncpg.Connection, tables: Mapping[str, str], events: Sequence[Event]
    ) -> None:
        new: dict[UUID, dict[str, Any]] = {}
        changed: dict[UUID, dict[str, Any]] = {}
        for e in events:
            if e.type == "Model.Registered":
                d = e.data
                new[e.aggregate_id] = {
                    "id": e.aggregate_id, "name": d["name"], "kind": d["kind"],
                    "task": d["task"], "description": d["description"], "owner": d["owner"],
                    "tags": d["tags"], "version": e.version, "position": e.position,
                    "created_at": e.timestamp, "updated_at": e.timestamp,
                    "created_by": e.meta.get("principal", "unknown"),
                }  # fmt: skip
            elif e.type == "Model.DetailsUpdated":
                d = e.data
                row = new.get(e.aggregate_id) or changed.setdefault(e.aggregate_id, {})
                row.update(
                    task=d["task"], description=d["description"], owner=d["owner"],
                    tags=d["tags"], version=e.version, position=e.position,
                    updated_at=e.timestamp,
                )  # fmt: skip
        table = tables["models"]
        if new:
            schema, name = split_table(table)
            await conn.copy_records_to_table(
                name,
                schema_name=schema,
                columns=COLUMNS,
                records=[tuple(row[c] for c in COLUMNS) for row in new.values()],
            )
        if changed:
            await conn.executemany(
                f"UPDATE {table} SET task = $2, description = $3, owner = $4, tags = $5, "
                "version = $6, position = $7, updated_at = $8 WHERE id = $1",
                [
                    (
                        model_id, r["task"], r["description"], r["owner"], r["tags"],
                        r["version"], r["position"], r["updated_at"],
                    )  # fmt: skip
                    for model_id, r in changed.items()
                ],
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
    return await conn.fetchrow(f"SELECT {', '.join(COLUMNS)} FROM rm_models WHERE id = $1", model_id)


