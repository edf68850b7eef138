"""Process manager: a finished training run registers a model version in the registry.

Built on eventsourcing's ``EventSourcedProjection``: it follows the training log and,
for each ``TrainingRun.Completed`` or ``EarlyStopped``, records the registry's new
events together with its position in the training log (``registry_tracking``) in one
transaction — so each run is registered exactly once, even when the process dies
between reading and writing, and several workers running it at once cannot double
register (the second one's tracking insert is refused and it resumes past the event).

The model is the run's ``model_name`` (created as an ``ml`` model on first use); the
version's artifact is the kept weights' hash, its metrics those of the kept epoch, and
its lineage names the dataset (id and content hash) and the training run. The events
carry ``principal = process:model-registrar``, the run's correlation id and, as the
causation id, the training event they react to. A stopped or failed run registers
nothing.
"""

from __future__ import annotations

import logging
import threading
from functools import singledispatchmethod
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.projection import EventSourcedProjection, EventSourcedProjectionRunner
from eventsourcing.utils import get_topic

from application.registry import MODEL_NAME_SCOPE
from application.retry import run_until_stopped
from application.training import TrainingApplication
from domain.claims import UniqueClaim, claim_id
from domain.metadata import acting_as
from domain.ml.runs import TrainingRun
from domain.registry.model import Model

log = logging.getLogger(__name__)

PRINCIPAL = "process:model-registrar"
TASKS = {"mlp_classifier": "classification", "mlp_regressor": "regression"}


class ModelRegistrar(EventSourcedProjection[UUID]):
    name = "registry"  # it writes the registry's log (and its own tracking table)
    topics = (get_topic(TrainingRun.Completed), get_topic(TrainingRun.EarlyStopped))

    _training: TrainingApplication | None = None

    @property
    def training(self) -> TrainingApplication:
        if self._training is None:
            self._training = TrainingApplication(env=dict(self.env))
        return self._training

    def close(self) -> None:
        if self._training is not None:
            self._training.close()
        super().close()

    @singledispatchmethod
    def policy(
        self, domain_event: DomainEventProtocol[UUID], processing_event: ProcessingEvent[UUID]
    ) -> None:
        """Events of other types need nothing."""

    @policy.register
    def _(self, event: TrainingRun.Ended, processing_event: ProcessingEvent[UUID]) -> None:
        if event.artifact_hash is None:
            return
        run = self.training.get_run(event.originator_id)
        causation = f"training:{event.originator_id}:{event.originator_version}"
        with acting_as(PRINCIPAL, event.meta.get("correlation_id", causation), causation):
            self._register(run, event, processing_event)

    def _model(self, run: TrainingRun) -> tuple[Model, list[Any]]:
        try:
            claim: Any = self.repository.get(claim_id(MODEL_NAME_SCOPE, run.model_name))
            model: Any = self.repository.get(UUID(claim.owner_id))
        except AggregateNotFoundError:
            model = Model.register(
                name=run.model_name,
                kind="ml",
                task=TASKS.get(run.model_type, ""),
                description=f"{run.model_type} trained by aimm on dataset {run.dataset_name}",
                owner="training",
                tags=["aimm-training", run.model_type],
            )
            return model, [model, UniqueClaim.claim(MODEL_NAME_SCOPE, model.name, str(model.id))]
        assert isinstance(model, Model)
        return model, [model]

    def _register(
        self, run: TrainingRun, event: TrainingRun.Ended, processing_event: ProcessingEvent[UUID]
    ) -> None:
        model, pending = self._model(run)
        if any(v.lineage.get("training_run") == str(run.id) for v in model.versions.values()):
            return  # registered already (by an earlier run of this process manager's log)
        kept_best = event.artifact_epoch is not None and event.artifact_epoch == event.best_epoch
        model.register_version(
            artifact=event.artifact_hash or "",
            framework="jax/optax",
            parameters={
                "model_type": run.model_type,
                "hyperparameters": run.hyperparameters,
                "early_stopping": run.early_stopping,
                "feature_columns": run.feature_columns,
                "target": run.target,
                "epochs_run": event.epochs_run,
                "artifact_epoch": event.artifact_epoch,
            },
            metrics=dict(event.best_metrics if kept_best else event.final_metrics),
            lineage={
                "dataset": {"id": run.dataset_id, "hash": run.dataset_hash},
                "training_run": str(run.id),
            },
            description=f"training job {run.id} ({event.status}): {event.reason}"[:5000],
        )
        processing_event.collect_events(*pending)


def run_registrar(env: dict[str, str], stopping: threading.Event) -> None:
    """Follow the training log until ``stopping`` is set; after any error (a concurrent
    write to the same model, the database going away) start again from the tracked
    position, with backoff (``application.retry``)."""

    def follow() -> None:
        with EventSourcedProjectionRunner(
            application_class=TrainingApplication, projection_class=ModelRegistrar, env=env
        ) as runner:
            while not stopping.is_set():
                if runner.is_interrupted.is_set():
                    raise RuntimeError("the registrar's runner stopped")
                runner.run_forever(timeout=0.5)

    run_until_stopped(log, "model registrar", stopping, follow)
