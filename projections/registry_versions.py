"""Read models of model versions, their metrics history and deployment history.

``model_versions`` holds each version's current status (staging, active, archived),
the environments it is active in and its latest metrics; ``model_metrics`` keeps every
metrics record; ``model_deployments`` keeps every deploy and rollback in order, with
who, when, why, and from which version to which. The active version of a model per
environment is the version whose ``environments`` contains it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from uuid import UUID

import asyncpg
import msgspec

from projections.events import Event
from projections.writer import OrderedWriter

_json = msgspec.json.Encoder()


def _jsonb(value: Any) -> str:
    return _json.encode(value).decode()


class RegistryVersions:
    name: ClassVar[str] = "registry_versions"
    contexts: ClassVar[tuple[str, ...]] = ("registry",)
    tables: ClassVar[Mapping[str, Sequence[str]]] = {
        "model_versions": (
            """
            CREATE TABLE {model_versions} (
                model_id uuid NOT NULL,
                version integer NOT NULL,
                status text NOT NULL,
                environments text[] NOT NULL,
                artifact text NOT NULL,
                framework text NOT NULL,
                parameters jsonb NOT NULL,
                metrics jsonb NOT NULL,
                lineage jsonb NOT NULL,
                description text NOT NULL,
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                updated_at timestamptz NOT NULL,
                PRIMARY KEY (model_id, version)
            )
            """,
            "CREATE INDEX ON {model_versions} (status, model_id)",
            "CREATE INDEX ON {model_versions} ((lineage->>'base_model'))",
        ),
        "model_metrics": (
            """
            CREATE TABLE {model_metrics} (
                model_id uuid NOT NULL,
                version integer NOT NULL,
                position bigint NOT NULL,
                metrics jsonb NOT NULL,
                source text NOT NULL,
                recorded_at timestamptz NOT NULL,
                recorded_by text NOT NULL,
                PRIMARY KEY (model_id, version, position)
            )
            """,
        ),
        "model_deployments": (
            """
            CREATE TABLE {model_deployments} (
                model_id uuid NOT NULL,
                sequence integer NOT NULL,
                action text NOT NULL,
                environment text NOT NULL,
                version integer NOT NULL,
                previous_version integer,
                reason text NOT NULL,
                deployed_at timestamptz NOT NULL,
                deployed_by text NOT NULL,
                correlation_id text,
                model_version integer NOT NULL,
                position bigint NOT NULL,
                PRIMARY KEY (model_id, sequence)
            )
            """,
            "CREATE INDEX ON {model_deployments} (model_id, environment, deployed_at)",
        ),
    }

    async def apply(
        self, conn: asyncpg.Connection, tables: Mapping[str, str], events: Sequence[Event]
    ) -> None:
        versions, metrics, deployments = (
            tables["model_versions"],
            tables["model_metrics"],
            tables["model_deployments"],
        )
        out = OrderedWriter()
        for e in events:
            d = e.data
            if e.type == "Model.VersionRegistered":
                out.add(
                    f"INSERT INTO {versions} (model_id, version, status, environments, artifact, "
                    "framework, parameters, metrics, lineage, description, created_at, created_by, "
                    "updated_at) VALUES ($1, $2, 'staging', ARRAY[]::text[], $3, $4, $5::jsonb, "
                    "$6::jsonb, "
                    "$7::jsonb, $8, $9, $10, $9)",
                    e.aggregate_id,
                    d["version"],
                    d["artifact"],
                    d["framework"],
                    _jsonb(d["parameters"]),
                    _jsonb(d["metrics"]),
                    _jsonb(d["lineage"]),
                    d["description"],
                    e.timestamp,
                    e.meta.get("principal", "unknown"),
                )
                if d["metrics"]:
                    self._metrics(out, metrics, e, "registration")
            elif e.type == "Model.MetricsRecorded":
                self._metrics(out, metrics, e, d["source"])
                out.add(
                    f"UPDATE {versions} SET metrics = $3::jsonb, updated_at = $4 "
                    "WHERE model_id = $1 AND version = $2",
                    e.aggregate_id,
                    d["version"],
                    _jsonb(d["metrics"]),
                    e.timestamp,
                )
            elif e.type in ("Model.VersionDeployed", "Model.RolledBack"):
                self._activate(out, versions, deployments, e)
            elif e.type in ("Model.VersionStaged", "Model.VersionArchived"):
                status = "staging" if e.type == "Model.VersionStaged" else "archived"
                out.add(
                    f"UPDATE {versions} SET status = $3, updated_at = $4 "
                    "WHERE model_id = $1 AND version = $2",
                    e.aggregate_id,
                    d["version"],
                    status,
                    e.timestamp,
                )
        await out.flush(conn)

    @staticmethod
    def _metrics(out: OrderedWriter, table: str, e: Event, source: str) -> None:
        out.add(
            f"INSERT INTO {table} (model_id, version, position, metrics, source, recorded_at, "
            "recorded_by) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)",
            e.aggregate_id,
            e.data["version"],
            e.position,
            _jsonb(e.data["metrics"]),
            source,
            e.timestamp,
            e.meta.get("principal", "unknown"),
        )

    @staticmethod
    def _activate(out: OrderedWriter, versions: str, deployments: str, e: Event) -> None:
        d = e.data
        env, previous = d["environment"], d["previous_version"]
        if previous is not None and previous != d["version"]:
            out.add(
                f"UPDATE {versions} SET environments = array_remove(environments, $3), "
                "status = CASE WHEN environments = ARRAY[$3]::text[] THEN 'archived' "
                "ELSE status END, updated_at = $4 WHERE model_id = $1 AND version = $2",
                e.aggregate_id,
                previous,
                env,
                e.timestamp,
            )
        out.add(
            f"UPDATE {versions} SET status = 'active', updated_at = $4, environments = "
            "(SELECT array_agg(DISTINCT x ORDER BY x) "
            "FROM unnest(array_append(environments, $3)) x) "
            "WHERE model_id = $1 AND version = $2",
            e.aggregate_id,
            d["version"],
            env,
            e.timestamp,
        )
        out.add(
            f"INSERT INTO {deployments} (model_id, sequence, action, environment, version, "
            "previous_version, reason, deployed_at, deployed_by, correlation_id, model_version, "
            "position) VALUES ($1, (SELECT count(*) + 1 FROM "
            f"{deployments} WHERE model_id = $1), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            e.aggregate_id,
            "rollback" if e.type == "Model.RolledBack" else "deploy",
            env,
            d["version"],
            previous,
            d["reason"],
            e.timestamp,
            e.meta.get("principal", "unknown"),
            e.meta.get("correlation_id"),
            e.version,
            e.position,
        )


VERSION_COLUMNS = (
    "version, status, environments, artifact, framework, parameters, metrics, lineage, "
    "description, created_at, created_by, updated_at"
)


async def versions_of(conn: asyncpg.Connection, model_id: UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {VERSION_COLUMNS} FROM rm_model_versions WHERE model_id = $1 ORDER BY version",
        model_id,
    )


async def version_of(
    conn: asyncpg.Connection, model_id: UUID, version: int
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {VERSION_COLUMNS} FROM rm_model_versions WHERE model_id = $1 AND version = $2",
        model_id,
        version,
    )


async def metrics_of(
    conn: asyncpg.Connection, model_id: UUID, versions: Sequence[int] | None = None
) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT version, metrics, source, recorded_at, recorded_by FROM rm_model_metrics "
        "WHERE model_id = $1 AND ($2::int[] IS NULL OR version = ANY($2)) "
        "ORDER BY version, position",
        model_id,
        list(versions) if versions is not None else None,
    )


async def deployments_of(
    conn: asyncpg.Connection,
    model_id: UUID,
    *,
    environment: str | None = None,
    after_sequence: int = 0,
    limit: int = 1000,
) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT sequence, action, environment, version, previous_version, reason, deployed_at, "
        "deployed_by, correlation_id, model_version FROM rm_model_deployments "
        "WHERE model_id = $1 AND ($2::text IS NULL OR environment = $2) AND sequence > $3 "
        "ORDER BY sequence LIMIT $4",
        model_id,
        environment,
        after_sequence,
        limit,
    )


async def derived_models(
    conn: asyncpg.Connection, model_id: UUID, name: str
) -> list[asyncpg.Record]:
    """Versions of other models whose lineage names this model (by id or name) as base."""
    return await conn.fetch(
        "SELECT v.model_id, v.version, m.name FROM rm_model_versions v "
        "JOIN rm_models m ON m.id = v.model_id "
        "WHERE v.lineage->>'base_model' IN ($1, $2) AND v.model_id <> $3 "
        "ORDER BY m.name, v.version",
        str(model_id),
        name,
        model_id,
    )


# Metric names that mean "lower is better"; any other metric is taken as higher-better.
LOWER_IS_BETTER = re.compile(r"(loss|error|mse|rmse|mae|mape|latency|perplexity|drawdown)", re.I)


def compare(
    versions: Sequence[int],
    metrics: Mapping[int, Mapping[str, float]],
    parameters: Mapping[int, Mapping[str, Any]],
) -> dict[str, list[dict[str, Any]]]:
    """Metrics and parameters side by side, each row marked when the versions differ;
    for metrics, the best version by the metric's direction (see ``LOWER_IS_BETTER``)."""

    def rows(table: Mapping[int, Mapping[str, Any]], rank: bool) -> list[dict[str, Any]]:
        names = sorted({name for v in versions for name in table.get(v, {})})
        out = []
        for name in names:
            values = {str(v): table.get(v, {}).get(name) for v in versions}
            present = [(v, table[v][name]) for v in versions if name in table.get(v, {})]
            differs = len(present) < len(versions) or len({_key(x) for _, x in present}) > 1
            row: dict[str, Any] = {"name": name, "values": values, "differs": differs}
            if rank and present:
                pick = min if LOWER_IS_BETTER.search(name) else max
                row["best_version"] = pick(present, key=lambda item: item[1])[0]
            out.append(row)
        return out

    return {"metrics": rows(metrics, True), "parameters": rows(parameters, False)}


def _key(value: Any) -> str:
    return msgspec.json.encode(value, order="sorted").decode()


async def list_summaries(  # noqa: PLR0913
    conn: asyncpg.Connection,
    *,
    kind: str | None,
    status: str | None,
    tag: str | None,
    q: str | None,
    after_name: str | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Models by name with their latest version and active version per environment;
    ``status`` keeps models having at least one version in that status."""
    return await conn.fetch(
        "SELECT id, name, kind, task, description, owner, tags, version, position, "
        "created_at, updated_at, created_by, latest_version, active FROM rm_models m "
        "WHERE ($1::text IS NULL OR m.kind = $1) "
        "AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM rm_model_versions s "
        "     WHERE s.model_id = m.id AND s.status = $2)) "
        "AND ($3::text IS NULL OR m.tags @> ARRAY[$3::text]) "
        "AND ($4::text IS NULL OR m.name ILIKE '%' || $4 || '%' OR m.task ILIKE '%' || $4 || '%' "
        "     OR m.description ILIKE '%' || $4 || '%') "
        "AND ($5::text IS NULL OR m.name > $5) "
        "ORDER BY m.name LIMIT $6",
        kind,
        status,
        tag.lower() if tag else None,
        q,
        after_name,
        limit,
    )
