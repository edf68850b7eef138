"""Registry context: register models and their versions, record metrics, deploy, roll back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from application.base import (
    SNAPSHOT_INTERVAL,
    CommandResult,
    ContextApplication,
    Idempotency,
    Response,
    StoredResponse,
)
from domain.claims import UniqueClaim
from domain.errors import DuplicateNameError
from domain.registry.model import Model
from domain.registry.versions import Deployment

MODEL_NAME_SCOPE = "registry/model-name"
T = TypeVar("T")


class RegistryApplication(ContextApplication):
    name = "registry"
    snapshotting_intervals = {Model: SNAPSHOT_INTERVAL}

    def register_model(  # noqa: PLR0913
        self,
        *,
        name: str,
        kind: str,
        task: str,
        description: str,
        owner: str,
        tags: list[str],
        idem: Idempotency | None = None,
        respond: Callable[[Model], Response],
    ) -> CommandResult[StoredResponse]:
        replay = self.idempotent_replay(idem)
        if replay is not None:
            return replay
        model = Model.register(
            name=name, kind=kind, task=task, description=description, owner=owner, tags=tags
        )
        claim = UniqueClaim.claim(MODEL_NAME_SCOPE, model.name, str(model.id))
        return self.save_command(
            [model, claim],
            idem,
            lambda: respond(model),
            lambda: DuplicateNameError(f"a model named {model.name!r} already exists"),
        )

    def change_model(
        self,
        model_id: UUID,
        act: Callable[[Model], T],
        respond: Callable[[Model, T], Response],
        *,
        expected_version: int | None = None,
        idem: Idempotency | None = None,
    ) -> CommandResult[StoredResponse]:
        return self.change_aggregate(
            lambda: self.get_model(model_id),
            act,
            respond,
            expected_version=expected_version,
            idem=idem,
        )

    def update_model(  # noqa: PLR0913
        self,
        model_id: UUID,
        *,
        expected_version: int | None,
        task: str | None = None,
        description: str | None = None,
        owner: str | None = None,
        tags: list[str] | None = None,
        idem: Idempotency | None = None,
        respond: Callable[[Model], Response],
    ) -> CommandResult[StoredResponse]:
        return self.change_model(
            model_id,
            lambda m: m.update_details(task=task, description=description, owner=owner, tags=tags),
            lambda m, _: respond(m),
            expected_version=expected_version,
            idem=idem,
        )

    def register_version(  # noqa: PLR0913
        self,
        model_id: UUID,
        *,
        artifact: str,
        framework: str,
        parameters: dict[str, Any],
        metrics: dict[str, float],
        lineage: dict[str, Any],
        description: str,
        expected_version: int | None = None,
        idem: Idempotency | None = None,
        respond: Callable[[Model, int], Response],
    ) -> CommandResult[StoredResponse]:
        return self.change_model(
            model_id,
            lambda m: m.register_version(
                artifact=artifact,
                framework=framework,
                parameters=parameters,
                metrics=metrics,
                lineage=lineage,
                description=description,
            ),
            respond,
            expected_version=expected_version,
            idem=idem,
        )

    def record_metrics(  # noqa: PLR0913
        self,
        model_id: UUID,
        version: int,
        metrics: dict[str, float],
        source: str,
        *,
        expected_version: int | None = None,
        idem: Idempotency | None = None,
        respond: Callable[[Model, None], Response],
    ) -> CommandResult[StoredResponse]:
        return self.change_model(
            model_id,
            lambda m: m.record_metrics(version, metrics, source),
            respond,
            expected_version=expected_version,
            idem=idem,
        )

    def deploy(  # noqa: PLR0913
        self,
        model_id: UUID,
        version: int,
        environment: str,
        reason: str,
        *,
        expected_version: int | None = None,
        idem: Idempotency | None = None,
        respond: Callable[[Model, Deployment], Response],
    ) -> CommandResult[StoredResponse]:
        return self.change_model(
            model_id,
            lambda m: m.deploy(version, environment, reason),
            respond,
            expected_version=expected_version,
            idem=idem,
        )

    def rollback(  # noqa: PLR0913
        self,
        model_id: UUID,
        environment: str,
        version: int | None,
        reason: str,
        *,
        expected_version: int | None = None,
        idem: Idempotency | None = None,
        respond: Callable[[Model, Deployment], Response],
    ) -> CommandResult[StoredResponse]:
        return self.change_model(
            model_id,
            lambda m: m.rollback(environment, version, reason),
            respond,
            expected_version=expected_version,
            idem=idem,
        )

    def set_status(  # noqa: PLR0913
        self,
        model_id: UUID,
        version: int,
        status: str,
        reason: str,
        *,
        expected_version: int | None = None,
        idem: Idempotency | None = None,
        respond: Callable[[Model, None], Response],
    ) -> CommandResult[StoredResponse]:
        """Stage (a candidate again) or archive a version that is not active."""
        act: Callable[[Model], None] = (
            (lambda m: m.stage(version, reason))
            if status == "staging"
            else (lambda m: m.archive(version, reason))
        )
        return self.change_model(
            model_id, act, respond, expected_version=expected_version, idem=idem
        )

    def get_model(self, model_id: UUID) -> Model:
        return self.load(model_id, Model, "model")

    def get_model_as_of(self, model_id: UUID, as_of: datetime) -> Model:
        """The model as it was at ``as_of`` (replayed from its events)."""
        self.get_model(model_id)  # 404 for an unknown id before asking about its past
        aggregate, _ = self.replay_as_of(model_id, as_of)
        assert isinstance(aggregate, Model)
        return aggregate
