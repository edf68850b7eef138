"""Registry context: register models and change their details."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from application.base import CommandResult, ContextApplication, Idempotency, Response, StoredResponse
from domain.claims import UniqueClaim
from domain.errors import DuplicateNameError
from domain.registry.model import Model

MODEL_NAME_SCOPE = "registry/model-name"


class RegistryApplication(ContextApplication):
    name = "registry"

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

    def update_model(  # noqa: PLR0913
        self,
        model_id: UUID,
        *,
        expected_version: int | None,
        task: str | None = None,
        description: str | None = None,
        owner: str | None = None,
        tags: list[str] | None = None,
        respond: Callable[[Model], Response],
    ) -> CommandResult[StoredResponse]:
        model = self.get_model(model_id)
        self.check_expected_version(model, expected_version)
        if not model.update_details(task=task, description=description, owner=owner, tags=tags):
            position = self.recorder.max_notification_id() or 0
            status, body = respond(model)
            return CommandResult(self.name, position, StoredResponse(status, body))
        return self.save_command(
            [model],
            None,
            lambda: respond(model),
            lambda: self.version_conflict(model_id, expected_version),
        )

    def get_model(self, model_id: UUID) -> Model:
        return self.load(model_id, Model, "model")
