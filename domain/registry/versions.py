"""A model version's state inside the Model aggregate: status, deployments, metrics, lineage.

Status (F11.1.2): ``staging`` when registered or explicitly staged (a candidate),
``active`` while deployed to at least one environment, ``archived`` once replaced in
every environment it was active in, or archived explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ENVIRONMENTS: tuple[str, ...] = ("production", "staging")
STAGING, ACTIVE, ARCHIVED = "staging", "active", "archived"
STATUSES: tuple[str, ...] = (STAGING, ACTIVE, ARCHIVED)


@dataclass
class MetricsRecord:
    metrics: dict[str, float]
    recorded_at: str
    recorded_by: str
    source: str


@dataclass
class ModelVersion:
    version: int
    artifact: str
    framework: str
    parameters: dict[str, Any]
    lineage: dict[str, Any]
    description: str
    created_at: str
    created_by: str
    status: str = STAGING
    environments: list[str] = field(default_factory=list)
    metrics_history: list[MetricsRecord] = field(default_factory=list)

    @property
    def metrics(self) -> dict[str, float]:
        """The latest recorded metrics (the history keeps every record)."""
        return self.metrics_history[-1].metrics if self.metrics_history else {}


@dataclass
class Deployment:
    """One entry of an environment's history: which version became active, from which."""

    sequence: int
    action: str  # "deploy" or "rollback"
    environment: str
    version: int
    previous_version: int | None
    reason: str
    at: str
    by: str
