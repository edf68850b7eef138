"""The Model aggregate: a registered LLM or ML model and its descriptive details."""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from domain.base import Aggregate
from domain.errors import ConflictError, DomainError, NotFoundError
from domain.metadata import EventMeta
from domain.registry.versions import (
    ACTIVE,
    ARCHIVED,
    ENVIRONMENTS,
    STAGING,
    Deployment,
    MetricsRecord,
    ModelVersion,
)

ModelKind = Literal["llm", "ml"]
MODEL_KINDS: tuple[str, ...] = ("llm", "ml")

# Names are identifiers people type and paste into pipelines: lower-case letters,
# digits and - _ . /, starting with a letter or digit, at most 100 characters.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._/-]{0,99}$")
MAX_TAGS = 32
MAX_TAG_LENGTH = 64


class InvalidModelError(DomainError):
    """A model's details break a registry rule."""


def normalise_tags(tags: list[str]) -> list[str]:
    """Tags are case-insensitive, unique and kept in a stable (sorted) order."""
    cleaned = sorted({t.strip().lower() for t in tags if t.strip()})
    if len(cleaned) > MAX_TAGS:
        raise InvalidModelError(f"at most {MAX_TAGS} tags are allowed")
    for tag in cleaned:
        if len(tag) > MAX_TAG_LENGTH:
            raise InvalidModelError(f"tag {tag[:20]!r}… is longer than {MAX_TAG_LENGTH}")
    return cleaned


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise InvalidModelError(
            "name must be 1-100 characters of a-z, 0-9, '.', '_', '-', '/' "
            "and start with a letter or digit"
        )
    return name


class Model(Aggregate):
    """A model of the platform, registered once under a unique name."""

    class Registered(Aggregate.Created):
        name: str
        kind: str
        task: str
        description: str
        owner: str
        tags: list[str]

    class DetailsUpdated(Aggregate.Event):
        task: str
        description: str
        owner: str
        tags: list[str]

        def apply(self, aggregate: Model) -> None:
            aggregate.task = self.task
            aggregate.description = self.description
            aggregate.owner = self.owner
            aggregate.tags = list(self.tags)

    def __init__(  # noqa: PLR0913
        self,
        name: str,
        kind: str,
        task: str,
        description: str,
        owner: str,
        tags: list[str],
        meta: EventMeta,
    ) -> None:
        self.created_by = meta.get("principal", "unknown")
        self.name = name
        self.kind = kind
        self.task = task
        self.description = description
        self.owner = owner
        self.tags = tags
        self.versions: dict[int, ModelVersion] = {}
        self.active: dict[str, int] = {}
        self.deployments: list[Deployment] = []

    @classmethod
    def register(  # noqa: PLR0913
        cls, *, name: str, kind: str, task: str, description: str, owner: str, tags: list[str]
    ) -> Model:
        if kind not in MODEL_KINDS:
            raise InvalidModelError(f"kind must be one of {', '.join(MODEL_KINDS)}")
        return cls._create(
            cls.Registered,
            name=check_name(name),
            kind=kind,
            task=task.strip(),
            description=description,
            owner=owner,
            tags=normalise_tags(tags),
        )

    def update_details(
        self,
        *,
        task: str | None = None,
        description: str | None = None,
        owner: str | None = None,
        tags: list[str] | None = None,
    ) -> bool:
        """Change descriptive details; returns False (and records nothing) if unchanged."""
        new = {
            "task": self.task if task is None else task.strip(),
            "description": self.description if description is None else description,
            "owner": self.owner if owner is None else owner,
            "tags": self.tags if tags is None else normalise_tags(tags),
        }
        if all(getattr(self, k) == v for k, v in new.items()):
            return False
        self.trigger_event(self.DetailsUpdated, **new)
        return True

    # -- versions -------------------------------------------------------------------

    class VersionRegistered(Aggregate.Event):
        version: int
        artifact: str
        framework: str
        parameters: dict[str, Any]
        metrics: dict[str, float]
        lineage: dict[str, Any]
        description: str

        def apply(self, aggregate: Model) -> None:
            at, by = self.timestamp.isoformat(), self.meta.get("principal", "unknown")
            entry = ModelVersion(
                version=self.version,
                artifact=self.artifact,
                framework=self.framework,
                parameters=dict(self.parameters),
                lineage=dict(self.lineage),
                description=self.description,
                created_at=at,
                created_by=by,
            )
            if self.metrics:
                entry.metrics_history.append(
                    MetricsRecord(dict(self.metrics), at, by, "registration")
                )
            aggregate.versions[self.version] = entry

    class MetricsRecorded(Aggregate.Event):
        version: int
        metrics: dict[str, float]
        source: str

        def apply(self, aggregate: Model) -> None:
            aggregate.versions[self.version].metrics_history.append(
                MetricsRecord(
                    dict(self.metrics),
                    self.timestamp.isoformat(),
                    self.meta.get("principal", "unknown"),
                    self.source,
                )
            )

    class VersionDeployed(Aggregate.Event):
        version: int
        environment: str
        previous_version: int | None
        reason: str

        def apply(self, aggregate: Model) -> None:
            aggregate._activate(self, "deploy")

    class RolledBack(Aggregate.Event):
        version: int
        environment: str
        previous_version: int | None
        reason: str

        def apply(self, aggregate: Model) -> None:
            aggregate._activate(self, "rollback")

    class VersionStaged(Aggregate.Event):
        version: int
        reason: str

        def apply(self, aggregate: Model) -> None:
            aggregate.versions[self.version].status = STAGING

    class VersionArchived(Aggregate.Event):
        version: int
        reason: str

        def apply(self, aggregate: Model) -> None:
            aggregate.versions[self.version].status = ARCHIVED

    def _activate(self, event: Model.VersionDeployed | Model.RolledBack, action: str) -> None:
        env = event.environment
        previous = self.active.get(env)
        if previous is not None and previous != event.version:
            replaced = self.versions[previous]
            replaced.environments = [e for e in replaced.environments if e != env]
            if not replaced.environments:
                replaced.status = ARCHIVED
        chosen = self.versions[event.version]
        if env not in chosen.environments:
            chosen.environments = sorted([*chosen.environments, env])
        chosen.status = ACTIVE
        self.active[env] = event.version
        self.deployments.append(
            Deployment(
                sequence=len(self.deployments) + 1,
                action=action,
                environment=env,
                version=event.version,
                previous_version=event.previous_version,
                reason=event.reason,
                at=event.timestamp.isoformat(),
                by=event.meta.get("principal", "unknown"),
            )
        )

    @property
    def latest_version(self) -> int | None:
        return max(self.versions) if self.versions else None

    def get_version(self, version: int) -> ModelVersion:
        try:
            return self.versions[version]
        except KeyError:
            raise NotFoundError(f"model {self.name!r} has no version {version}") from None

    def register_version(  # noqa: PLR0913
        self,
        *,
        artifact: str,
        framework: str,
        parameters: dict[str, Any],
        metrics: dict[str, float],
        lineage: dict[str, Any],
        description: str,
    ) -> int:
        """Add the next version (numbers are assigned in order, from 1)."""
        if not artifact.strip():
            raise InvalidModelError("a version needs an artifact (content hash or URI)")
        parent = lineage.get("parent_version")
        if parent is not None and parent not in self.versions:
            raise InvalidModelError(f"parent_version {parent} is not a version of this model")
        if lineage.get("prompt_versions") and self.kind != "llm":
            raise InvalidModelError("only llm models are used with prompt versions")
        version = (self.latest_version or 0) + 1
        self.trigger_event(
            self.VersionRegistered,
            version=version,
            artifact=artifact.strip(),
            framework=framework,
            parameters=parameters,
            metrics=check_metrics(metrics),
            lineage=lineage,
            description=description,
        )
        return version

    def record_metrics(self, version: int, metrics: dict[str, float], source: str) -> None:
        self.get_version(version)
        if not metrics:
            raise InvalidModelError("metrics must name at least one value")
        self.trigger_event(
            self.MetricsRecorded, version=version, metrics=check_metrics(metrics), source=source
        )

    def deploy(self, version: int, environment: str, reason: str) -> Deployment:
        """Make ``version`` the active one in ``environment`` (F11.1.5)."""
        self.get_version(version)
        check_environment(environment)
        current = self.active.get(environment)
        if current == version:
            raise ConflictError(f"version {version} is already active in {environment}")
        self.trigger_event(
            self.VersionDeployed,
            version=version,
            environment=environment,
            previous_version=current,
            reason=reason,
        )
        return self.deployments[-1]

    def rollback(self, environment: str, version: int | None, reason: str) -> Deployment:
        """Re-activate an earlier version of ``environment`` (by default the one before)."""
        check_environment(environment)
        current = self.active.get(environment)
        if current is None:
            raise InvalidModelError(
                f"nothing is deployed to {environment}, so nothing to roll back"
            )
        earlier = [d.version for d in self.deployments if d.environment == environment]
        if version is None:
            candidates = [v for v in reversed(earlier) if v != current]
            if not candidates:
                raise InvalidModelError(f"{environment} has no earlier version to roll back to")
            version = candidates[0]
        else:
            self.get_version(version)
            if version == current:
                raise ConflictError(f"version {version} is already active in {environment}")
            if version not in earlier:
                raise InvalidModelError(
                    f"version {version} was never active in {environment}; deploy it instead"
                )
        self.trigger_event(
            self.RolledBack,
            version=version,
            environment=environment,
            previous_version=current,
            reason=reason,
        )
        return self.deployments[-1]

    def stage(self, version: int, reason: str) -> None:
        """Mark a version as a staging candidate again (it must not be active)."""
        entry = self.get_version(version)
        if entry.status == ACTIVE:
            raise InvalidModelError(
                f"version {version} is active in {', '.join(entry.environments)}; "
                "deploy another version there first"
            )
        if entry.status == STAGING:
            raise ConflictError(f"version {version} is already staging")
        self.trigger_event(self.VersionStaged, version=version, reason=reason)

    def archive(self, version: int, reason: str) -> None:
        """Retire a version that is not active anywhere."""
        entry = self.get_version(version)
        if entry.status == ACTIVE:
            raise InvalidModelError(
                f"version {version} is active in {', '.join(entry.environments)}; "
                "deploy another version there first"
            )
        if entry.status == ARCHIVED:
            raise ConflictError(f"version {version} is already archived")
        self.trigger_event(self.VersionArchived, version=version, reason=reason)


def check_environment(environment: str) -> None:
    if environment not in ENVIRONMENTS:
        raise InvalidModelError(f"environment must be one of {', '.join(ENVIRONMENTS)}")


def check_metrics(metrics: dict[str, float]) -> dict[str, float]:
    for name, value in metrics.items():
        if not math.isfinite(value):
            raise InvalidModelError(f"metric {name!r} must be a finite number")
    return {name: float(value) for name, value in sorted(metrics.items())}
