"""Prompt test jobs on the worker: claim, run each case, record progress, record the run.

The training worker's claim loop (``application.worker``) hands a leased job of kind
``prompt_test`` to :class:`PromptTestJobs`, as it hands ``prediction`` jobs to
``application.prediction_worker``. For a job (``domain.assistant.suites.PromptTestJob``):

1. The job's state in the log decides, as for every leased job
   (``application.leased_jobs``): an ended job is released; a job past ``max_attempts``
   is failed with the reason; otherwise ``Started`` is recorded with the attempt and why.
2. Each case not run yet (a takeover skips those an earlier attempt recorded) is run by
   the assistant's own case runner (``AssistantApplication.run_test_case``: render,
   complete, judge), and recorded at once as a ``Progress`` event: the job's GET shows
   the cases done. The lease is renewed by a heartbeat thread; a lost lease, or a save
   refused because another worker wrote the job first, stops this worker writing.
3. ``Completed`` is saved with the ``PromptTestRun`` (its id derived from the job's, so
   it is recorded once) and, for a run of a saved suite, the versions' verdicts, in one
   transaction. The run is recorded as the principal who requested the job.
4. A provider failure (``LLMError``) ends the job ``Failed`` with the reason; no run is
   recorded, as a synchronous run records none.
5. A job stopped meanwhile (``POST …/test-jobs/{id}/stop`` records ``Stopped``) refuses
   this worker's next save, as another worker's write would: it stops writing there.
"""

from __future__ import annotations

import logging
from typing import Any

from eventsourcing.persistence import IntegrityError

from application.assistant import AssistantApplication
from application.lease_heartbeat import LeaseHeartbeat
from application.leased_jobs import LeasedJobs
from application.ports import JobQueue, LLMError
from application.run_recorder import Abandon
from domain.assistant.prompt_runs import PromptTestRun
from domain.assistant.suites import PromptTestJob, job_run_id
from domain.metadata import acting_as

log = logging.getLogger(__name__)

KIND = "prompt_test"


class PromptTestJobs(LeasedJobs):
    """Runs one leased prompt test job to its end (see the module)."""

    label = "prompt-test-job"
    doing = "while it ran the cases"
    failures = (LLMError,)

    def __init__(
        self,
        assistant: AssistantApplication,
        queue: JobQueue,
        *,
        name: str,
        max_attempts: int = 3,
        heartbeat_seconds: float = 1.0,
    ) -> None:
        super().__init__(
            assistant,
            queue,
            name=name,
            max_attempts=max_attempts,
            heartbeat_seconds=heartbeat_seconds,
        )
        self.assistant = assistant

    def load(self, job_id: Any) -> PromptTestJob:
        return self.assistant.get_test_job(job_id)

    def work(self, job: PromptTestJob, attempt: int, beat: LeaseHeartbeat) -> None:
        for subject, given in job.todo():
            if beat.lost.is_set():
                raise Abandon("the lease was lost")
            case = self.assistant.run_test_case(job, subject, given)
            job.progress(attempt, [case])
            self.save(job)

    def failure_reason(self, exc: Exception) -> str:
        return f"the model's provider failed: {exc}"

    def finish(self, job: PromptTestJob, attempt: int, seconds: float) -> None:
        self._complete(job, attempt)

    def _complete(self, job: PromptTestJob, attempt: int) -> None:
        """Save ``Completed``, the run and a suite run's verdicts in one transaction (a
        verdict another run saved meanwhile is loaded again and the save retried)."""
        for _ in range(10):
            with acting_as(job.requested_by, job.correlation_id or f"prompt-test-job:{job.id}"):
                run = PromptTestRun.record(
                    prompt_id=job.prompt_id,
                    role=job.role,
                    subjects=[step["subject"] for step in job.plan],
                    inputs=job.inputs,
                    assertions=job.assertions,
                    settings=job.settings,
                    cases=job.cases,
                    reason=job.reason,
                    suite=job.suite,
                    id=job_run_id(job.id),
                )
                verdicts = self.assistant.suite_verdicts(run)
            job.complete(attempt, str(run.id))
            try:
                self.assistant.save(job, run, *verdicts)
                return
            except IntegrityError:
                job = self.assistant.get_test_job(job.id)
                if job.finished:
                    raise Abandon(f"the job ended meanwhile ({job.status})") from None
                if job.attempt != attempt:
                    raise Abandon("another worker took the job over") from None
        raise Abandon("the suite's verdicts kept changing")
