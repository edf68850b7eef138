"""Request and response bodies of the model registry (versions, deployments, lineage)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from msgspec import Meta, Struct

from api.schemas import ModelOut, Version

Environment = Literal["production", "staging"]
Reason = Annotated[str, Meta(max_length=1000)]
Ref = Annotated[str, Meta(min_length=1, max_length=200)]
MetricName = Annotated[str, Meta(min_length=1, max_length=100)]
Metrics = Annotated[dict[MetricName, float], Meta(max_length=200)]


class DatasetRef(Struct, forbid_unknown_fields=True):
    id: Ref
    hash: Ref


class Lineage(Struct, forbid_unknown_fields=True):
    dataset: DatasetRef | None = None
    training_run: Ref | None = None
    parent_version: Version | None = None
    base_model: Ref | None = None
    prompt_versions: Annotated[list[Ref], Meta(max_length=50)] = []


class VersionCreate(Struct, forbid_unknown_fields=True):
    artifact: Annotated[str, Meta(min_length=1, max_length=500)]
    framework: Annotated[str, Meta(max_length=100)] = ""
    parameters: dict[str, Any] = {}
    metrics: Metrics = {}
    lineage: Lineage = msgspec.field(default_factory=Lineage)
    description: Annotated[str, Meta(max_length=5000)] = ""
    expected_version: Version | None = None


class MetricsCreate(Struct, forbid_unknown_fields=True):
    metrics: Annotated[dict[MetricName, float], Meta(min_length=1, max_length=200)]
    source: Annotated[str, Meta(min_length=1, max_length=100)] = "evaluation"


class DeployRequest(Struct, forbid_unknown_fields=True):
    version: Version
    environment: Environment = "production"
    reason: Reason = ""
    expected_version: Version | None = None


class RollbackRequest(Struct, forbid_unknown_fields=True):
    environment: Environment = "production"
    version: Version | None = None
    reason: Reason = ""
    expected_version: Version | None = None


class StatusChange(Struct, forbid_unknown_fields=True):
    status: Literal["staging", "archived"] = "staging"
    reason: Reason = ""
    expected_version: Version | None = None


class MetricsOut(Struct):
    metrics: dict[str, float]
    source: str
    recorded_at: datetime
    recorded_by: str


class VersionOut(Struct):
    version: int
    status: str
    environments: list[str]
    artifact: str
    framework: str
    parameters: dict[str, Any]
    metrics: dict[str, float]
    metrics_history: list[MetricsOut]
    lineage: dict[str, Any]
    description: str
    created_at: datetime
    created_by: str


class ModelVersionDetail(VersionOut):
    """One version with the model it belongs to; ``model_version`` is the model
    aggregate's version (the ETag), ``version`` the version's number."""

    model_id: UUID
    model_version: int


class DeploymentOut(Struct):
    sequence: int
    action: str
    environment: str
    version: int
    previous_version: int | None
    reason: str
    deployed_at: datetime
    deployed_by: str


class DeploymentResult(Struct):
    model_id: UUID
    model_version: int
    deployment: DeploymentOut
    active: dict[str, int]


class ModelSummary(ModelOut):
    latest_version: int | None = None
    active: dict[str, int] = {}


class ModelSummaryPage(Struct):
    items: list[ModelSummary]
    next_cursor: str | None


class ModelDetail(ModelOut):
    latest_version: int | None
    active: dict[str, int]
    versions: list[VersionOut]
    deployments: list[DeploymentOut]
    as_of: datetime | None = None


class DeploymentPage(Struct):
    items: list[DeploymentOut]
    next_cursor: str | None


class ComparedValue(Struct):
    name: str
    values: dict[str, Any]
    differs: bool
    best_version: int | None = None


class VersionComparison(Struct):
    model_id: UUID
    versions: list[int]
    metrics: list[ComparedValue]
    parameters: list[ComparedValue]
    statuses: dict[str, str]


class LineageNode(Struct):
    id: str
    type: str
    label: str
    attributes: dict[str, Any] = {}


class LineageEdge(Struct):
    source: str
    target: str
    relation: str


class LineageGraph(Struct):
    model_id: UUID
    nodes: list[LineageNode]
    edges: list[LineageEdge]
