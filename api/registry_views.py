"""Assemble registry responses from read-model rows, or from a replayed aggregate (as_of).

The ``*_from_read_models`` functions read several tables; callers pass a connection in one
repeatable-read snapshot (``api.contract.snapshot``/``read_one``), so a response is never
torn between two projector commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from api.contract import jsonb
from api.registry_schemas import (
    DeploymentOut,
    MetricsOut,
    ModelDetail,
    ModelSummary,
    ModelVersionDetail,
    VersionOut,
)
from api.schemas import ModelOut
from domain.registry.model import Model
from domain.registry.versions import Deployment, ModelVersion
from projections import registry_models, registry_versions


def active_of(versions: Sequence[Any]) -> dict[str, int]:
    return {env: v["version"] for v in versions for env in v["environments"]}


def deployment_out(d: Deployment) -> DeploymentOut:
    return DeploymentOut(
        sequence=d.sequence,
        action=d.action,
        environment=d.environment,
        version=d.version,
        previous_version=d.previous_version,
        reason=d.reason,
        deployed_at=datetime.fromisoformat(d.at),
        deployed_by=d.by,
    )


def version_out(v: ModelVersion) -> VersionOut:
    return VersionOut(
        version=v.version,
        status=v.status,
        environments=list(v.environments),
        artifact=v.artifact,
        framework=v.framework,
        parameters=v.parameters,
        metrics=v.metrics,
        metrics_history=[
            MetricsOut(m.metrics, m.source, datetime.fromisoformat(m.recorded_at), m.recorded_by)
            for m in v.metrics_history
        ],
        lineage=v.lineage,
        description=v.description,
        created_at=datetime.fromisoformat(v.created_at),
        created_by=v.created_by,
    )


def model_out(model: Model) -> ModelOut:
    return ModelOut(
        id=model.id,
        name=model.name,
        kind=model.kind,
        task=model.task,
        description=model.description,
        owner=model.owner,
        tags=list(model.tags),
        version=model.version,
        created_at=model.created_on,
        updated_at=model.modified_on,
        created_by=model.created_by,
    )


def detail_from_aggregate(model: Model, as_of: datetime | None = None) -> ModelDetail:
    return ModelDetail(
        **msgspec.structs.asdict(model_out(model)),
        latest_version=model.latest_version,
        active=dict(model.active),
        versions=[version_out(v) for _, v in sorted(model.versions.items())],
        deployments=[deployment_out(d) for d in model.deployments],
        as_of=as_of,
    )


# The model's own columns; latest version and active map are derived per response type.
_MODEL_FIELDS = tuple(f for f in registry_models.COLUMNS if f in ModelOut.__struct_fields__)


def summary_from_row(row: Any) -> ModelSummary:
    return ModelSummary(
        **{f: row[f] for f in _MODEL_FIELDS},
        latest_version=row["latest_version"],
        active=jsonb(row["active"]),
    )


def deployment_from_row(row: Any) -> DeploymentOut:
    return DeploymentOut(**{f: row[f] for f in DeploymentOut.__struct_fields__})


def _version_from_row(v: Any, history: list[MetricsOut]) -> VersionOut:
    return VersionOut(
        version=v["version"],
        status=v["status"],
        environments=list(v["environments"]),
        artifact=v["artifact"],
        framework=v["framework"],
        parameters=jsonb(v["parameters"]),
        metrics=jsonb(v["metrics"]),
        metrics_history=history,
        lineage=jsonb(v["lineage"]),
        description=v["description"],
        created_at=v["created_at"],
        created_by=v["created_by"],
    )


def _histories(rows: Sequence[Any]) -> dict[int, list[MetricsOut]]:
    history: dict[int, list[MetricsOut]] = {}
    for m in rows:
        history.setdefault(m["version"], []).append(
            MetricsOut(jsonb(m["metrics"]), m["source"], m["recorded_at"], m["recorded_by"])
        )
    return history


async def detail_from_read_models(conn: asyncpg.Connection, model_id: UUID) -> ModelDetail | None:
    """The model's detail from four tables; ``conn`` must be in a snapshot."""
    model = await registry_models.get_model(conn, model_id)
    if model is None:
        return None
    versions = await registry_versions.versions_of(conn, model_id)
    history = _histories(await registry_versions.metrics_of(conn, model_id))
    deployments = await registry_versions.deployments_of(conn, model_id)
    return ModelDetail(
        **{f: model[f] for f in _MODEL_FIELDS},
        latest_version=versions[-1]["version"] if versions else None,
        active=active_of(versions),
        versions=[_version_from_row(v, history.get(v["version"], [])) for v in versions],
        deployments=[deployment_from_row(d) for d in deployments],
    )


async def version_detail_from_read_models(
    conn: asyncpg.Connection, model_id: UUID, version: int
) -> ModelVersionDetail | None:
    """One version with the model's version; ``conn`` must be in a snapshot."""
    model = await registry_models.get_model(conn, model_id)
    row = await registry_versions.version_of(conn, model_id, version)
    if model is None or row is None:
        return None
    history = _histories(await registry_versions.metrics_of(conn, model_id, [version]))
    out = _version_from_row(row, history.get(version, []))
    return ModelVersionDetail(
        **msgspec.structs.asdict(out), model_id=model_id, model_version=model["version"]
    )
