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
    "latest_version",
    "active",
)


# Where the fold keeps each column in a row of COLUMNS.
_TASK, _DESCRIPTION, _OWNER, _TAGS, _VERSION, _POSITION, _UPDATED_AT, _LATEST, _ACTIVE = (
    COLUMNS.index(c)
    for c in (
        "task",
        "description",
        "owner",
        "tags",
        "version",
        "position",
        "updated_at",
        "latest_version",
        "active",
    )
)
# The per-event changes the summaries need: newest version number, active per environment.
_ACTIVATIONS = ("Model.VersionDeployed", "Model.RolledBack")


_encode_json = msgspec.json.Encoder().encode


def split_table(table: str) -> tuple[str | None, str]:
    schema, _, name = table.rpartition(".")
    return (schema or None), name


_UPDATED_COLUMNS = [
    (c, COLUMNS.index(c))
    for c in (
        "task", "description", "owner", "tags", "version", "position", "updated_at",
        "latest_version", "active",
    )
]  # fmt: skip


def _fold(row: list[Any], e: Event) -> None:
    """Apply a model event after registration to a row (details, versions, deploys):
    the model's version, its ETag, moves on with every one of them."""
    if e.type == "Model.DetailsUpdated":
        d = e.data
        row[_TASK], row[_DESCRIPTION] = d["task"], d["description"]
        row[_OWNER], row[_TAGS] = d["owner"], d["tags"]
    elif e.type == "Model.VersionRegistered":
        row[_LATEST] = e.data["version"]
    elif e.type in _ACTIVATIONS:
        row[_ACTIVE][e.data["environment"]] = e.data["version"]
    row[_VERSION], row[_POSITION], row[_UPDATED_AT] = e.version, e.position, e.timestamp


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
                created_by text NOT NULL,
                latest_version integer,
                active jsonb NOT NULL
            ) WITH (fillfactor = 70)
            """,
            "CREATE INDEX ON {models} (kind, name)",
            "CREATE INDEX ON {models} USING gin (tags)",
        ),
    }

    async def apply(
        self, conn: asyncpg.Connection, tables: Mapping[str, str], events: Sequence[Event]
    ) -> None:
        # Fold the batch in memory, one list per row in COLUMNS order: a model registered
        # in this batch is written once with its final state (COPY); an older one gets one
        # UPDATE row whose None columns stay as they are.
        new: dict[UUID, list[Any]] = {}
        changed: dict[UUID, list[Any]] = {}
        for e in events:
            if not e.type.startswith("Model."):
                continue
            if e.type == "Model.Registered":
                d = e.data
                new[e.aggregate_id] = [
                    e.aggregate_id, d["name"], d["kind"], d["task"], d["description"],
                    d["owner"], d["tags"], e.version, e.position, e.timestamp, e.timestamp,
                    e.meta.get("principal", "unknown"), None, {},
                ]  # fmt: skip
                continue
            row = new.get(e.aggregate_id) or changed.get(e.aggregate_id)
            if row is None:
                row = changed[e.aggregate_id] = [None] * len(COLUMNS)
                row[_ACTIVE] = {}
            _fold(row, e)
        table = tables["models"]
        if new:
            schema, name = split_table(table)
            await conn.copy_records_to_table(
                name,
                schema_name=schema,
                columns=COLUMNS,
                records=[(*r[:_ACTIVE], _encode_json(r[_ACTIVE]).decode()) for r in new.values()],
            )
        if changed:
            # One set-based UPDATE for the whole batch, its rows sent as one JSON document:
            # msgspec encodes it in C, where asyncpg would encode eight arrays element by
            # element in Python (and a rebuild is bound by the read side's Python time).
            rows = [
                {"id": model_id, **{c: row[i] for c, i in _UPDATED_COLUMNS}}
                for model_id, row in changed.items()
            ]
            await conn.execute(
                f"UPDATE {table} AS m SET task = coalesce(c.task, m.task), "
                "description = coalesce(c.description, m.description), "
                "owner = coalesce(c.owner, m.owner), tags = coalesce(c.tags, m.tags), "
                "version = c.version, position = c.position, updated_at = c.updated_at, "
                "latest_version = coalesce(c.latest_version, m.latest_version), "
                "active = m.active || c.active "
                "FROM json_to_recordset($1::text::json) AS c(id uuid, task text, "
                "description text, owner text, tags text[], version integer, position bigint, "
                "updated_at timestamptz, latest_version integer, active jsonb) WHERE m.id = c.id",
                _encode_json(rows).decode(),
            )


async def get_model(conn: asyncpg.Connection, model_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {', '.join(COLUMNS)} FROM rm_models WHERE id = $1", model_id
    )
