"""The training worker: claim a queued run, train it with JAX, record every fact as an event.

One worker trains one run at a time; run more workers to train more at once. For each
claimed run (see ``application.ports.JobQueue`` and ``infrastructure.job_queue`` for leases):

1. The run's state in the log decides: an ended run is released; a run asked to stop
   before it started is stopped; a run past ``max_attempts`` is failed with the reason;
   otherwise ``Started`` is recorded with the attempt and why (first start, or taken
   over from a worker whose lease expired).
2. The dataset's rows are read from the artifact store and checked against the hash
   the run pinned, then trained in chunks of jitted steps.
3. A heartbeat thread (``application.lease_heartbeat``) renews the lease and watches
   the run's version: a version the worker did not write means a ``StopRequested`` (or
   a takeover), noticed at the next chunk. A lost lease stops the worker writing at once.
4. Each metric point is a ``MetricsRecorded`` event; the early-stopping check rides on
   each epoch's point, and the ending event (``Completed``, ``EarlyStopped`` with the
   rule and the values compared, ``Stopped``, or ``Failed`` with the reason) names the
   artifact of the kept weights, stored by content hash before the event.

The same claim loop serves the other kinds of job of the queue: ``handlers`` maps a
kind (``prediction``) to what runs one leased job of it
(``application.prediction_worker.PredictionJobs``), so one worker process — the one
``make run`` starts — trains models and makes forecasts.

The work is split in four modules: this one (the claim loop and one run's course),
``application.run_recorder`` (the thread that saves the run's events in order, and
notices foreign writes), ``application.run_tracker`` (what the run has reached: best
epoch, early stopping, the ending's summary; no I/O) and
``application.lease_heartbeat`` (the lease renewal thread).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from application.lease_heartbeat import LeaseHeartbeat
from application.ports import (
    ArtifactIntegrityError,
    JobQueue,
    Lease,
    MetricPoint,
    Trainer,
    TrainerFactory,
    TrainingData,
)
from application.retry import run_until_stopped
from application.run_recorder import Abandon, RunRecorder
from application.run_tracker import Fail, RunTracker
from application.training import MODEL_MEDIA_TYPE, TrainingApplication
from domain.artifacts import content_hash
from domain.metadata import acting_as
from domain.ml.features import load_dataset, to_arrays
from domain.ml.hyperparameters import EarlyStopping, Hyperparameters
from domain.ml.runs import COMPLETED, EARLY_STOPPED, STOPPED, TrainingRun

__all__ = ["Abandon", "Fail", "TrainingWorker", "tune_process", "worker_name"]

log = logging.getLogger(__name__)


def tune_process() -> None:
    """Settings for a process that trains: a short GIL switch interval, so the training
    loop gets the GIL back within half a millisecond of the event recorder taking it
    (at the default 5 ms, the compiled steps idle while it waits). Measured by
    ``benchmarks/training.py``."""
    sys.setswitchinterval(0.0005)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 10_000}"


class TrainingWorker:
    def __init__(  # noqa: PLR0913
        self,
        training: TrainingApplication,
        queue: JobQueue,
        trainer: TrainerFactory,
        *,
        name: str | None = None,
        max_attempts: int = 3,
        heartbeat_seconds: float = 1.0,
        poll_seconds: float = 0.5,
        handlers: Mapping[str, Callable[[Lease], None]] | None = None,
    ) -> None:
        self.training = training
        self.queue = queue
        self.trainer = trainer
        self.name = name or worker_name()
        self.max_attempts = max_attempts
        self.heartbeat_seconds = heartbeat_seconds
        self.poll_seconds = poll_seconds
        self.handlers = dict(handlers or {})
        self.kinds = ("training", *self.handlers)

    # -- the loop -------------------------------------------------------------------------

    def run(self, stopping: threading.Event) -> None:
        """Claim and train runs until ``stopping`` is set (checked between runs)."""
        what = f"worker {self.name}: claim or run"
        while not stopping.is_set():
            # A failure (the database went away) is retried with backoff; the claim is
            # re-read from the queue, so the loop resumes where it was.
            worked = run_until_stopped(log, what, stopping, self.run_once)
            if not worked:
                stopping.wait(self.poll_seconds)

    def run_once(self) -> bool:
        """Claim one job and take it to its end; False when nothing was claimable."""
        self.queue.sync()
        lease = self.queue.claim(self.name, self.kinds)
        if lease is None:
            return False
        if lease.kind != "training":
            self.handlers[lease.kind](lease)
            return True
        with acting_as(f"worker:{self.name}", f"training-job:{lease.run_id}"):
            try:
                self._process(lease)
            except Abandon as exc:
                log.warning("worker %s abandons %s: %s", self.name, lease.run_id, exc)
                return True
        self.queue.release(lease)
        return True

    # -- one run --------------------------------------------------------------------------

    def _save(self, run: TrainingRun) -> None:
        self.training.save(run)

    def _reload(self, run_id: Any) -> TrainingRun:
        return self.training.get_run(run_id)

    def _process(self, lease: Lease) -> None:
        run = self._reload(lease.run_id)
        if run.finished:
            return
        if run.stop_requested:  # asked to stop while its previous worker was gone
            run.end(STOPPED, run.attempt, reason=run.stop_reason)
            self._save(run)
            return
        if run.attempt >= self.max_attempts:
            run.fail(
                f"gave up after {run.attempt} attempt(s): the lease of worker {run.worker} "
                "expired while it trained (the worker stopped or was killed)",
                run.attempt,
            )
            self._save(run)
            return
        attempt = run.attempt + 1
        reason = (
            "first attempt"
            if run.attempt == 0
            else f"restarted: the lease of worker {run.worker} expired during attempt {run.attempt}"
        )
        run.start(self.name, attempt, reason)
        self._save(run)
        try:
            self._train(run, attempt, lease)
        except Fail as exc:
            run = self._reload(run.id)
            if not run.finished and run.attempt == attempt:
                run.fail(str(exc), attempt)
                self._save(run)

    def _data(self, run: TrainingRun) -> TrainingData:
        try:
            payload = self.training.artifacts.get(run.dataset_hash)
        except ArtifactIntegrityError as exc:
            raise Fail(str(exc)) from None
        if payload is None:
            raise Fail(f"the rows of dataset {run.dataset_id} ({run.dataset_hash}) are missing")
        if content_hash(payload) != run.dataset_hash:
            raise Fail(f"the rows of dataset {run.dataset_id} do not match their hash")
        frame = load_dataset(payload)
        x_train, y_train, x_val, y_val = to_arrays(frame, run.feature_columns)
        return TrainingData(x_train, y_train, x_val, y_val)

    def _points(
        self, trainer: Trainer, epochs: int, every: int | None, recorder: RunRecorder
    ) -> Iterator[MetricPoint]:
        """The trainer's points, until the end, a stop request, or a reason to abandon."""
        for epoch in range(1, epochs + 1):
            for item in trainer.run_epoch(epoch, every_steps=every):
                recorder.check()
                if recorder.stop_requested:
                    return
                if item is not None:
                    yield item

    def _train(self, run: TrainingRun, attempt: int, lease: Lease) -> None:
        hp = Hyperparameters(**run.hyperparameters)
        rule = EarlyStopping(**run.early_stopping) if run.early_stopping else None
        trainer = self.trainer(run.model_type, hp, self._data(run))
        track = RunTracker(trainer, rule)
        with (
            LeaseHeartbeat(self.queue, lease, self.heartbeat_seconds) as beat,
            RunRecorder(self.training, run, attempt, beat) as recorder,
        ):
            for point in self._points(trainer, hp.epochs, run.record_every_steps, recorder):
                recorder.put(track.point(point))
                if track.stop:
                    break
            recorder.drain()
            fields: dict[str, Any]
            if recorder.stop_requested:
                ending, fields = STOPPED, {}
            elif track.stop:
                assert track.monitor is not None
                decision = track.monitor.decision()
                ending = EARLY_STOPPED
                fields = {"decision": decision, "reason": decision["explanation"]}
            else:
                ending, fields = COMPLETED, {"reason": f"trained all {hp.epochs} epochs"}
            artifact = (
                self.training.artifacts.put(trainer.export(), MODEL_MEDIA_TYPE)
                if track.keep_weights()
                else None
            )
            recorder.end(ending, {**track.summary(artifact), **fields})
