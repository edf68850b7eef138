"""The life of one leased job on the worker, shared by every kind the queue hands out
besides training (``application.prediction_worker``, ``application.prompt_test_worker``).

For a leased job, the job's own aggregate in the log decides:

1. an ended job is released as it is;
2. a job past ``max_attempts`` (its earlier workers' leases expired) is failed with the
   reason, naming the worker whose lease expired;
3. otherwise ``Started`` is recorded with the attempt and why, and the kind's ``work``
   runs under a lease heartbeat (``application.lease_heartbeat``). One of the kind's
   ``failures`` (bars a forecaster cannot use, a provider that failed) ends the job
   ``Failed`` with its message; a lease lost meanwhile, or a save refused because
   another worker wrote the job first (``Abandon``), stops this worker writing at once
   and leaves the job to whoever holds it now. Else the kind's ``finish`` ends it.

The job aggregate of a kind offers ``finished``, ``attempt``, ``worker``,
``start(worker, attempt, reason)`` and ``fail(reason, attempt)``
(``domain.predictions.prediction.PredictionJob``, ``domain.assistant.suites.PromptTestJob``).
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError

from application.lease_heartbeat import LeaseHeartbeat
from application.ports import JobQueue, Lease
from application.run_recorder import Abandon
from domain.metadata import acting_as

log = logging.getLogger(__name__)


class LeasedJobs(ABC):
    """Runs one leased job of a kind to its end (see the module)."""

    label: ClassVar[str]  # names the job in correlation ids: "prediction-job"
    doing: ClassVar[str]  # what an expired lease interrupted: "while it forecast"
    failures: ClassVar[tuple[type[Exception], ...]]  # errors that fail the job

    def __init__(
        self,
        app: Application[Any],
        queue: JobQueue,
        *,
        name: str,
        max_attempts: int = 3,
        heartbeat_seconds: float = 1.0,
    ) -> None:
        self.app = app
        self.queue = queue
        self.name = name
        self.max_attempts = max_attempts
        self.heartbeat_seconds = heartbeat_seconds

    @abstractmethod
    def load(self, job_id: Any) -> Any:
        """The job's aggregate."""

    @abstractmethod
    def work(self, job: Any, attempt: int, beat: LeaseHeartbeat) -> None:
        """Do the job (saving as it goes with ``save``); raise ``Abandon`` once
        ``beat.lost`` is set."""

    @abstractmethod
    def finish(self, job: Any, attempt: int, seconds: float) -> None:
        """Record the job's end after ``work`` returned (``seconds`` it took)."""

    def __call__(self, lease: Lease) -> None:
        with acting_as(f"worker:{self.name}", f"{self.label}:{lease.run_id}"):
            try:
                self._process(lease)
            except Abandon as exc:
                log.warning("worker %s abandons %s: %s", self.name, lease.run_id, exc)
                return
        self.queue.release(lease)

    def save(self, *aggregates: Any) -> None:
        try:
            self.app.save(*aggregates)
        except IntegrityError:
            raise Abandon("the job was written first by another worker, or stopped") from None

    def _process(self, lease: Lease) -> None:
        job = self.load(lease.run_id)
        if job.finished:
            return
        if job.attempt >= self.max_attempts:
            job.fail(
                f"gave up after {job.attempt} attempt(s): the lease of worker {job.worker} "
                f"expired {self.doing} (the worker stopped or was killed)",
                job.attempt,
            )
            self.save(job)
            return
        attempt = job.attempt + 1
        reason = (
            "first attempt"
            if job.attempt == 0
            else f"restarted: the lease of worker {job.worker} expired during attempt {job.attempt}"
        )
        job.start(self.name, attempt, reason)
        self.save(job)
        started = time.monotonic()
        with LeaseHeartbeat(self.queue, lease, self.heartbeat_seconds) as beat:
            try:
                self.work(job, attempt, beat)
            except self.failures as exc:
                job = self.load(job.id)
                if not job.finished and job.attempt == attempt:
                    job.fail(self.failure_reason(exc), attempt)
                    self.save(job)
                return
            if beat.lost.is_set():
                raise Abandon("the lease was lost")
            self.finish(job, attempt, round(time.monotonic() - started, 3))

    def failure_reason(self, exc: Exception) -> str:
        return str(exc)
