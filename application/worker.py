"""The training worker: claim a queued run, train it with JAX, record every fact as an event.

One worker trains one run at a time; run more workers to train more at once. For each
claimed run (see ``application.ports.JobQueue`` and ``infrastructure.job_queue`` for leases):

1. The run's state in the log decides: an ended run is released; a run asked to stop
   before it started is stopped; a run past ``max_attempts`` is failed with the reason;
   otherwise ``Started`` is recorded with the attempt and why (first start, or taken
   over from a worker whose lease expired).
2. The dataset's rows are read from the artifact store and checked against the hash
   the run pinned, then trained in chunks of jitted steps.
3. A heartbeat thread renews the lease and watches the run's version: a version the
   worker did not write means a ``StopRequested`` (or a takeover), noticed at the next
   chunk. A lost lease stops the worker writing at once.
4. Each metric point is a ``MetricsRecorded`` event; the early-stopping check rides on
   each epoch's point, and the ending event (``Completed``, ``EarlyStopped`` with the
   rule and the values compared, ``Stopped``, or ``Failed`` with the reason) names the
   artifact of the kept weights, stored by content hash before the event.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from eventsourcing.persistence import IntegrityError

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
from application.training import MODEL_MEDIA_TYPE, TrainingApplication
from domain.artifacts import content_hash
from domain.metadata import acting_as
from domain.ml.early_stopping import Check, Monitor
from domain.ml.features import load_dataset, to_arrays
from domain.ml.hyperparameters import EarlyStopping, Hyperparameters
from domain.ml.runs import COMPLETED, EARLY_STOPPED, STOPPED, TrainingRun

log = logging.getLogger(__name__)

METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


class Abandon(Exception):
    """This worker may no longer write for the run (lease lost or attempt superseded)."""


class Fail(Exception):
    """The run cannot go on; the message is the recorded reason."""


def tune_process() -> None:
    """Settings for a process that trains: a short GIL switch interval, so the training
    loop gets the GIL back within half a millisecond of the event recorder taking it
    (at the default 5 ms, the compiled steps idle while it waits). Measured by
    ``benchmarks/training.py``."""
    sys.setswitchinterval(0.0005)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 10_000}"


class _Heartbeat:
    """Renews the lease and notices versions of the run that another writer stored."""

    def __init__(self, queue: JobQueue, lease: Lease, interval: float) -> None:
        self.queue, self.lease, self.interval = queue, lease, interval
        self.known_version = 0
        self.lost = threading.Event()
        self.changed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        what = f"lease heartbeat for {self.lease.run_id}"
        while not self._stop.wait(self.interval):
            # While the database is away, retried with backoff (application.retry); a
            # lease that expired meanwhile and was taken over is lost when it is back.
            renewed = run_until_stopped(log, what, self._stop, self._renew)
            if renewed is False:
                self.lost.set()
                return

    def _renew(self) -> bool:
        if not self.queue.renew(self.lease):
            return False
        if self.queue.version_of(self.lease.run_id) > self.known_version:
            self.changed.set()
        return True


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
    ) -> None:
        self.training = training
        self.queue = queue
        self.trainer = trainer
        self.name = name or worker_name()
        self.max_attempts = max_attempts
        self.heartbeat_seconds = heartbeat_seconds
        self.poll_seconds = poll_seconds

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
        """Claim one run and take it to its end; False when nothing was claimable."""
        self.queue.sync()
        lease = self.queue.claim(self.name)
        if lease is None:
            return False
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
        self, trainer: Trainer, epochs: int, every: int | None, recorder: _Recorder
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
        track = _Tracker(trainer, rule)
        with (
            _Heartbeat(self.queue, lease, self.heartbeat_seconds) as beat,
            _Recorder(self.training, run, attempt, beat) as recorder,
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


class _Recorder:
    """Saves a run's events in a thread of its own, in order, while training goes on.

    Saving an event costs about as much as a small epoch of training. Done here, the
    next chunk of steps runs meanwhile (JAX releases the GIL), and points that arrive
    within ``FLUSH_SECONDS`` of the last save are saved together in one transaction
    (each stays its own event, stamped when it was recorded), so short epochs do not
    pay a transaction each; a point is stored at most ``FLUSH_SECONDS`` after the
    trainer produced it. This thread is the only one touching the run aggregate after
    its start: it notices (from a refused save, or the heartbeat) a version it did not
    write, reloads, re-applies what was not saved yet, and raises the ``stop_requested``
    or ``abandoned`` flag the training loop checks at every chunk.
    """

    FLUSH_SECONDS = 0.2

    def __init__(
        self, training: TrainingApplication, run: TrainingRun, attempt: int, beat: _Heartbeat
    ) -> None:
        self.training, self.run, self.attempt, self.beat = training, run, attempt, beat
        self.items: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.stop_requested = run.stop_requested
        self.abandoned: str | None = None
        self.error: BaseException | None = None
        self.unsaved: list[tuple[str, Any]] = []
        self.last_flush = time.monotonic()
        self._thread = threading.Thread(target=self._work, name="event-recorder", daemon=True)

    def __enter__(self) -> _Recorder:
        self.beat.known_version = self.run.version
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.items.put(("exit", None))
        self._thread.join()

    def put(self, point: dict[str, Any]) -> None:
        self.items.put(("point", point))

    def check(self) -> None:
        """Raise in the training loop what the recorder has found."""
        if self.error is not None:
            raise self.error
        if self.abandoned is not None:
            raise Abandon(self.abandoned)
        if self.beat.lost.is_set():
            raise Abandon("the lease was lost")

    def drain(self) -> None:
        """Wait until every point put so far is saved."""
        self.items.put(("flush", None))
        self.items.join()
        self.check()

    def end(self, ending: str, fields: dict[str, Any]) -> None:
        self.items.put(("end", (ending, fields)))
        self.items.put(("flush", None))
        self.items.join()
        self.check()

    def _work(self) -> None:
        while True:
            # Sleep until the next flush is due, or a while when nothing waits (a stop
            # request is still noticed through the heartbeat within that while).
            wait = self.FLUSH_SECONDS if self.unsaved else 0.5
            try:
                kind, payload = self.items.get(timeout=wait)
            except queue.Empty:
                kind, payload = "idle", None
            try:
                if self.abandoned is None and self.error is None:
                    if self.beat.changed.is_set() and not self.unsaved:
                        self._reload()
                    if kind in ("point", "end"):
                        self.unsaved.append((kind, payload))
                        self._act(kind, payload)
                    due = time.monotonic() - self.last_flush >= self.FLUSH_SECONDS
                    if self.unsaved and (due or kind in ("flush", "exit")):
                        self._flush()
            except Abandon as exc:
                self.abandoned = str(exc)
            except BaseException as exc:  # noqa: BLE001 - handed to the training loop
                self.error = exc
            finally:
                if kind != "idle":
                    self.items.task_done()
            if kind == "exit":
                return

    def _act(self, kind: str, payload: Any) -> None:
        run = self.run
        if kind == "point":
            run.record(self.attempt, payload)
            return
        ending, fields = payload
        if run.stop_requested:  # also a stop that arrived while the ending was prepared
            fields = {k: v for k, v in fields.items() if k != "decision"}
            ending, fields["reason"] = STOPPED, run.stop_reason
        run.end(ending, self.attempt, **fields)

    def _reload(self) -> None:
        self.beat.changed.clear()
        self.run = self.training.get_run(self.run.id)
        self.beat.known_version = self.run.version
        if self.run.attempt != self.attempt or self.run.finished:
            raise Abandon(f"the run moved on (attempt {self.run.attempt}, {self.run.status})")
        self.stop_requested = self.run.stop_requested

    def _flush(self) -> None:
        """Save the unsaved events in one transaction; on a conflict, reload and redo."""
        for _ in range(20):
            try:
                self.training.save(self.run)
            except IntegrityError:  # another writer (a stop request) came first
                self._reload()
                for kind, payload in self.unsaved:
                    self._act(kind, payload)
                continue
            self.unsaved.clear()
            self.last_flush = time.monotonic()
            self.beat.known_version = self.run.version
            return
        raise Abandon("the run kept changing under this worker")


class _Tracker:
    """What a run has reached: metric points, the best epoch (and its weights when the
    rule restores them), the early-stopping check, and the ending's summary.

    The best epoch is the early-stopping rule's (an improvement beyond ``min_delta`` on
    its monitor, as Keras keeps it); without a rule, the lowest ``val_loss``."""

    def __init__(self, trainer: Trainer, rule: EarlyStopping | None) -> None:
        self.trainer = trainer
        self.monitor = Monitor(rule) if rule else None
        self.best_name = rule.monitor if rule else "val_loss"
        self.restore_best = rule is not None and rule.restore_best_weights
        self.best: tuple[float, int, dict[str, float], Any] | None = None
        self.final: dict[str, float] = {}
        self.epochs_run = self.steps_run = 0
        self.stop = False

    def point(self, point: MetricPoint) -> dict[str, Any]:
        """The event payload of a point; updates the best epoch and the rule's check."""
        metrics = {m: float(getattr(point, m)) for m in METRICS}
        if not all(math.isfinite(v) for v in metrics.values()):
            raise Fail(f"training diverged at epoch {point.epoch}: {metrics}")
        self.steps_run = point.step
        record: dict[str, Any] = {
            "epoch": point.epoch,
            "step": point.step,
            "end_of_epoch": point.end_of_epoch,
            **metrics,
            "learning_rate": float(point.learning_rate),
            "duration_ms": round(float(point.duration_ms), 3),
        }
        if not point.end_of_epoch:
            return record
        self.epochs_run, self.final = point.epoch, metrics
        value = metrics[self.best_name]
        if self.monitor is not None:  # the rule decides what counts as better (min_delta)
            check: Check = self.monitor.update(point.epoch, metrics)
            record["early_stopping"] = check.as_dict()
            self.stop = check.stop
            improved = check.improved
        else:
            improved = self.best is None or value < self.best[0]
        if improved:
            snapshot = self.trainer.params_snapshot() if self.restore_best else None
            self.best = (value, point.epoch, metrics, snapshot)
        return record

    def keep_weights(self) -> bool:
        """Set the trainer to the weights the artifact keeps; False if nothing trained."""
        if self.restore_best and self.best is not None and self.best[3] is not None:
            self.trainer.restore(self.best[3])
        return self.epochs_run > 0

    def summary(self, artifact: str | None) -> dict[str, Any]:
        kept_best = self.restore_best and self.best is not None
        return {
            "epochs_run": self.epochs_run,
            "steps_run": self.steps_run,
            "best_epoch": self.best[1] if self.best else None,
            "best_metrics": self.best[2] if self.best else {},
            "final_metrics": self.final,
            "artifact_hash": artifact,
            "artifact_epoch": (
                None
                if artifact is None
                else self.best[1]
                if kept_best and self.best
                else self.epochs_run
            ),
        }
