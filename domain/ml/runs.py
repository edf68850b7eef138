"""The TrainingRun aggregate: a training job from request to its end, one event per fact.

Life of a run::

    queued --Started--> running --MetricsRecorded...--> Completed      (status completed)
                                                    \\-> EarlyStopped   (early_stopped)
                                                    \\-> Stopped        (stopped, asked by a user)
                                                    \\-> Failed         (failed, with the reason)
    queued --Stopped--> stopped (nothing trained)      running --Started(attempt n+1)--> running

A worker holds a lease on the run while it trains (``infrastructure.job_queue``); when
the lease of a killed worker expires another worker starts the run again: a new
``Started`` with the next attempt and the reason, and the training begins afresh (the
seed makes it reproduce the same curve). Metric points carry their attempt, and only
the current attempt may record: a worker that lost its lease cannot write.

A stop is asked with ``StopRequested``; the worker sees the run's version move within
its heartbeat, and records ``Stopped`` at the next chunk of steps. A queued run is
stopped at once. Every ending names its reason, and ``EarlyStopped`` carries the rule
and the values it compared (``domain.ml.early_stopping``).
"""

from __future__ import annotations

from typing import Any, Literal

from domain.base import Aggregate
from domain.errors import ConflictError, DomainError

QUEUED, RUNNING = "queued", "running"
COMPLETED, EARLY_STOPPED, STOPPED, FAILED = "completed", "early_stopped", "stopped", "failed"
STATUSES: tuple[str, ...] = (QUEUED, RUNNING, COMPLETED, EARLY_STOPPED, STOPPED, FAILED)
Status = Literal["queued", "running", "completed", "early_stopped", "stopped", "failed"]
TERMINAL: frozenset[str] = frozenset({COMPLETED, EARLY_STOPPED, STOPPED, FAILED})
# Finished runs whose model is registered in the registry (a stopped run is incomplete).
MAX_RECORD_EVERY_STEPS = 1_000_000
REGISTERED_ENDINGS: frozenset[str] = frozenset({COMPLETED, EARLY_STOPPED})


class RunFinishedError(ConflictError):
    """The run has already ended; it takes no more commands (HTTP 409)."""


class StaleAttemptError(ConflictError):
    """A worker wrote for an attempt the run has moved past (its lease was lost)."""


class TrainingRun(Aggregate):
    class Requested(Aggregate.Created):
        dataset_id: str
        dataset_name: str
        dataset_hash: str
        feature_columns: list[str]
        target: str
        model_type: str
        model_name: str
        hyperparameters: dict[str, Any]
        early_stopping: dict[str, Any] | None
        record_every_steps: int | None

    class Started(Aggregate.Event):
        worker: str
        attempt: int
        reason: str

        def apply(self, run: TrainingRun) -> None:
            run.status = RUNNING
            run.attempt = self.attempt
            run.worker = self.worker

    class MetricsRecorded(Aggregate.Event):
        attempt: int
        point: dict[str, Any]

        def apply(self, run: TrainingRun) -> None:
            run.points += 1

    class StopRequested(Aggregate.Event):
        reason: str

        def apply(self, run: TrainingRun) -> None:
            run.stop_requested = True
            run.stop_reason = self.reason
            run.stop_requested_by = self.meta.get("principal", "unknown")

    class Ended(Aggregate.Event):
        """Common fields of every ending that trained something."""

        status: str
        reason: str
        epochs_run: int
        steps_run: int
        best_epoch: int | None
        best_metrics: dict[str, float]
        final_metrics: dict[str, float]
        artifact_hash: str | None
        artifact_epoch: int | None

        def apply(self, run: TrainingRun) -> None:
            run.status = self.status
            run.artifact_hash = self.artifact_hash

    class Completed(Ended):
        pass

    class EarlyStopped(Ended):
        decision: dict[str, Any]

    class Stopped(Ended):
        requested_by: str

    class Failed(Aggregate.Event):
        reason: str
        attempt: int

        def apply(self, run: TrainingRun) -> None:
            run.status = FAILED
            run.failure = self.reason

    def __init__(  # noqa: PLR0913
        self,
        dataset_id: str,
        dataset_name: str,
        dataset_hash: str,
        feature_columns: list[str],
        target: str,
        model_type: str,
        model_name: str,
        hyperparameters: dict[str, Any],
        early_stopping: dict[str, Any] | None,
        record_every_steps: int | None,
        meta: dict[str, str],
    ) -> None:
        self.dataset_id = dataset_id
        self.dataset_name = dataset_name
        self.dataset_hash = dataset_hash
        self.feature_columns = feature_columns
        self.target = target
        self.model_type = model_type
        self.model_name = model_name
        self.hyperparameters = hyperparameters
        self.early_stopping = early_stopping
        self.record_every_steps = record_every_steps
        self.status = QUEUED
        self.attempt = 0
        self.worker: str | None = None
        self.points = 0
        self.stop_requested = False
        self.stop_reason = ""
        self.stop_requested_by = ""
        self.artifact_hash: str | None = None
        self.failure: str | None = None

    @classmethod
    def request(cls, **fields: Any) -> TrainingRun:
        every = fields.get("record_every_steps")
        if every is not None and not 1 <= every <= MAX_RECORD_EVERY_STEPS:
            raise DomainError(f"record_every_steps must be between 1 and {MAX_RECORD_EVERY_STEPS}")
        return cls._create(cls.Requested, **fields)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def _check_open(self) -> None:
        if self.finished:
            raise RunFinishedError(f"training job {self.id} has already ended ({self.status})")

    def _check_attempt(self, attempt: int) -> None:
        self._check_open()
        if self.status != RUNNING or attempt != self.attempt:
            raise StaleAttemptError(
                f"attempt {attempt} of training job {self.id} is not the current one "
                f"({self.attempt})"
            )

    def start(self, worker: str, attempt: int, reason: str) -> None:
        self._check_open()
        if attempt <= self.attempt:
            raise StaleAttemptError(f"attempt {attempt} already started (now {self.attempt})")
        self.trigger_event(self.Started, worker=worker, attempt=attempt, reason=reason)

    def record(self, attempt: int, point: dict[str, Any]) -> None:
        self._check_attempt(attempt)
        self.trigger_event(self.MetricsRecorded, attempt=attempt, point=point)

    def request_stop(self, reason: str) -> bool:
        """Ask the run to stop; a queued run stops at once. False when already asked."""
        self._check_open()
        if self.stop_requested:
            return False
        self.trigger_event(self.StopRequested, reason=reason)
        if self.status == QUEUED:
            self.end(STOPPED, self.attempt, reason=reason)
        return True

    def end(self, status: str, attempt: int, **fields: Any) -> None:
        """Record the run's ending (completed, early_stopped or stopped)."""
        if status == STOPPED and self.status == QUEUED:
            self._check_open()
        else:
            self._check_attempt(attempt)
        values: dict[str, Any] = {
            "reason": "",
            "epochs_run": 0,
            "steps_run": 0,
            "best_epoch": None,
            "best_metrics": {},
            "final_metrics": {},
            "artifact_hash": None,
            "artifact_epoch": None,
            **fields,
        }
        if status == COMPLETED:
            self.trigger_event(self.Completed, status=status, **values)
        elif status == EARLY_STOPPED:
            self.trigger_event(self.EarlyStopped, status=status, **values)
        elif status == STOPPED:
            self.trigger_event(
                self.Stopped, status=status, requested_by=self.stop_requested_by, **values
            )
        else:
            raise ValueError(f"not an ending with results: {status}")

    def fail(self, reason: str, attempt: int) -> None:
        self._check_open()
        self.trigger_event(self.Failed, reason=reason, attempt=attempt)
