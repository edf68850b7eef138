"""Saved test suites of prompts, the production gate, and prompt test jobs (F11.4.3).

**A saved suite** (``PromptSuite``) is one aggregate per prompt, its id derived from the
prompt's (``suite_id``: ``claims.claim_id`` of the scope ``assistant/prompt-suite`` and
the prompt id), so the suite of a prompt is found without an index and two first saves
collide on the event store's key. It is a separate aggregate, not events of the
``Prompt``: editing the suite does not move the prompt's version (its ``ETag``), so
editing tests never conflicts with committing versions or moving labels. It holds what
``POST …/test`` takes besides the versions: sample ``inputs`` (a name and the values of
the variables), ``assertions`` and request ``settings``. ``Created`` starts it (prompt,
role) and every edit is one ``Saved`` event with the whole content, its ``suite_hash``
(SHA-256 of the canonical JSON of inputs, assertions and settings), the revision (1, 2,
…) and the reason; who and the correlation id are in ``meta``. Saving content equal to
the current (same hash) records nothing.

**A verdict** (``SuiteVerdict``) is one aggregate per (prompt, version), id derived from
both: every run of the saved suite against the version appends a ``Recorded`` (run id,
suite revision and hash, cases total / passed / failed), saved in the same transaction
as the run itself. It is what the gate reads, on the write side, without replaying runs.

**The production gate** (``gate_refusal``): when the prompt's role has
``require_suite_pass``, moving ``production`` to version N (a move, a rollback, the
conclusion of an experiment) is refused (``SuiteGateError``, HTTP 409) unless the prompt
has a saved suite with at least one input and the *latest* recorded run of that suite
against N passed every case and ran the suite as it is now (same ``suite_hash``). An
older passing run does not count once a later one failed: the latest verdict decides.

**A prompt test job** (``PromptTestJob``) is a test run too long to wait for (more cases
than ``SYNC_CASES``, or asked for): ``Requested`` pins everything the run depends on (each
subject with its content, model, provider and effective settings; the inputs, the
assertions, the suite when it is a suite run), then a worker records ``Started`` (attempt,
why), ``Progress`` (the cases it ran, in order: a worker taking the job over skips those),
and ``Completed`` (the id of the ``PromptTestRun`` saved with it) or ``Failed`` (why; no
run is recorded, as a synchronous run's provider failure records none). A person may end
a queued or running job with ``Stopped`` (why, and who): it ends at once, keeping the
cases already run; the worker's next save meets the new version and it stops writing, so
at most the case in flight is run for nothing, and no run is recorded.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from domain.assistant.models import MAX_TOKENS_BOUND
from domain.assistant.prompt_runs import MAX_ASSERTIONS, MAX_CASES
from domain.assistant.prompts import (
    FieldError,
    invalid_fields,
    validate_assertions,
    validate_settings,
)
from domain.base import Aggregate
from domain.claims import claim_id
from domain.errors import ConflictError
from domain.metadata import EventMeta

SUITE_SCOPE = "assistant/prompt-suite"
VERDICT_SCOPE = "assistant/suite-verdict"
RUN_SCOPE = "assistant/prompt-test-job-run"
MAX_SUITE_INPUTS = 200  # a suite's inputs (a suite run: inputs times versions cases)
MAX_JOB_CASES = 500  # cases of one run, job or not
SYNC_CASES = MAX_CASES  # more cases than this: the run is a job (202)
QUEUED, RUNNING, COMPLETED, FAILED = "queued", "running", "completed", "failed"
STOPPED = "stopped"
TERMINAL = frozenset({COMPLETED, FAILED, STOPPED})

_canonical = msgspec.json.Encoder(order="deterministic").encode


def suite_id(prompt_id: str | uuid.UUID) -> uuid.UUID:
    return claim_id(SUITE_SCOPE, str(prompt_id))


def verdict_id(prompt_id: str | uuid.UUID, version: int) -> uuid.UUID:
    return claim_id(VERDICT_SCOPE, f"{prompt_id}@{version}")


def job_run_id(job_id: str | uuid.UUID) -> uuid.UUID:
    """The id of the run a job records: fixed, so a job's run is recorded at most once."""
    return claim_id(RUN_SCOPE, str(job_id))


def suite_hash(
    inputs: Sequence[Mapping[str, Any]],
    assertions: Sequence[Mapping[str, Any]],
    settings: Mapping[str, Any],
) -> str:
    """SHA-256 of the canonical JSON of a suite's content."""
    body = {"inputs": list(inputs), "assertions": list(assertions), "settings": dict(settings)}
    return hashlib.sha256(_canonical(body)).hexdigest()


def check_case_bound(subjects: int, inputs: int) -> list[FieldError]:
    """At most ``MAX_JOB_CASES`` cases (subjects × inputs) in one run, job or not."""
    if subjects * inputs > MAX_JOB_CASES:
        return [
            FieldError(
                "inputs",
                f"{subjects} version(s) × {inputs} input(s) is {subjects * inputs} cases; "
                f"a run holds at most {MAX_JOB_CASES}",
            )
        ]
    return []


def runs_as_job(cases: int, asked: bool) -> bool:
    """A run is a job when asked for, or when it has more than ``SYNC_CASES`` cases."""
    return asked or cases > SYNC_CASES


def validate_suite(
    inputs: Sequence[Mapping[str, Any]],
    assertions: Sequence[Mapping[str, Any]],
    settings: Mapping[str, Any],
) -> list[FieldError]:
    """Every bad field of a suite: 1–``MAX_SUITE_INPUTS`` inputs whose values are text, up
    to ``MAX_ASSERTIONS`` valid assertions, settings in their bounds (``max_tokens`` is
    checked against the model's context length when the suite runs)."""
    errors: list[FieldError] = []
    if not 1 <= len(inputs) <= MAX_SUITE_INPUTS:
        errors.append(FieldError("inputs", f"give 1 to {MAX_SUITE_INPUTS} inputs"))
    for i, item in enumerate(inputs):
        values = item.get("values")
        if not isinstance(values, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in values.items()
        ):
            errors.append(FieldError(f"inputs[{i}].values", "must map variable names to text"))
        if not isinstance(item.get("name", ""), str):
            errors.append(FieldError(f"inputs[{i}].name", "must be text"))
    if len(assertions) > MAX_ASSERTIONS:
        errors.append(FieldError("assertions", f"at most {MAX_ASSERTIONS} assertions"))
    errors += validate_assertions(assertions)
    errors += validate_settings(settings, MAX_TOKENS_BOUND, "settings.")
    return errors


class SuiteGateError(ConflictError):
    """Moving ``production`` refused by the gate (HTTP 409, naming version and suite)."""

    def __init__(self, message: str, **figures: Any) -> None:
        super().__init__(message)
        self.problem_extra = figures


class PromptSuite(Aggregate):
    """The saved test suite of one prompt (see the module)."""

    class Created(Aggregate.Created):
        prompt_id: str
        role: str

    class Saved(Aggregate.Event):
        inputs: list[dict[str, Any]]
        assertions: list[dict[str, Any]]
        settings: dict[str, Any]
        suite_hash: str
        revision: int
        reason: str

        def apply(self, suite: PromptSuite) -> None:
            suite.inputs = self.inputs
            suite.assertions = self.assertions
            suite.settings = self.settings
            suite.suite_hash = self.suite_hash
            suite.revision = self.revision
            suite.reason = self.reason
            suite.updated_by = self.meta.get("principal", "unknown")

    def __init__(self, prompt_id: str, role: str, meta: EventMeta) -> None:
        self.prompt_id = prompt_id
        self.role = role
        self.created_by = meta.get("principal", "unknown")
        self.updated_by = self.created_by
        self.inputs: list[dict[str, Any]] = []
        self.assertions: list[dict[str, Any]] = []
        self.settings: dict[str, Any] = {}
        self.suite_hash = suite_hash([], [], {})
        self.revision = 0
        self.reason = ""

    @classmethod
    def create(cls, prompt_id: str, role: str) -> PromptSuite:
        return cls._create(cls.Created, id=suite_id(prompt_id), prompt_id=prompt_id, role=role)

    def save(
        self,
        inputs: Sequence[Mapping[str, Any]],
        assertions: Sequence[Mapping[str, Any]],
        settings: Mapping[str, Any],
        reason: str,
    ) -> bool:
        """Save new content (every bad field named, 400); False, nothing recorded, when it
        equals the current content."""
        errors = validate_suite(inputs, assertions, settings)
        if errors:
            raise invalid_fields(errors)
        shaped_inputs = [
            {"name": str(i.get("name", "")), "values": dict(i["values"])} for i in inputs
        ]
        shaped_assertions = [{"kind": a["kind"], "value": a.get("value")} for a in assertions]
        digest = suite_hash(shaped_inputs, shaped_assertions, settings)
        if self.revision > 0 and digest == self.suite_hash:
            return False
        self.trigger_event(
            self.Saved,
            inputs=shaped_inputs,
            assertions=shaped_assertions,
            settings=dict(settings),
            suite_hash=digest,
            revision=self.revision + 1,
            reason=reason,
        )
        return True

    def reference(self) -> dict[str, Any]:
        """What a run of this suite records of it."""
        return {"suite_id": str(self.id), "revision": self.revision, "suite_hash": self.suite_hash}


class SuiteVerdict(Aggregate):
    """Every run of a prompt's saved suite against one version, in order (see the module)."""

    class Created(Aggregate.Created):
        prompt_id: str
        version: int

    class Recorded(Aggregate.Event):
        run_id: str
        suite_revision: int
        suite_hash: str
        total: int
        passed: int
        failed: int

        def apply(self, verdict: SuiteVerdict) -> None:
            verdict.latest = {
                "run_id": self.run_id,
                "suite_revision": self.suite_revision,
                "suite_hash": self.suite_hash,
                "total": self.total,
                "passed": self.passed,
                "failed": self.failed,
            }

    def __init__(self, prompt_id: str, version: int, meta: EventMeta) -> None:
        self.prompt_id = prompt_id
        self.number = version
        self.latest: dict[str, Any] | None = None

    @classmethod
    def create(cls, prompt_id: str, version: int) -> SuiteVerdict:
        return cls._create(
            cls.Created, id=verdict_id(prompt_id, version), prompt_id=prompt_id, version=version
        )

    def record(
        self, run_id: str, suite: Mapping[str, Any], cases: Sequence[Mapping[str, Any]]
    ) -> None:
        passed = sum(1 for case in cases if case["passed"])
        self.trigger_event(
            self.Recorded,
            run_id=run_id,
            suite_revision=int(suite["revision"]),
            suite_hash=str(suite["suite_hash"]),
            total=len(cases),
            passed=passed,
            failed=len(cases) - passed,
        )


def gate_refusal(
    prompt_id: str, version: int, suite: PromptSuite | None, verdict: SuiteVerdict | None
) -> SuiteGateError | None:
    """Why ``production`` may not move to ``version`` under the gate, or None (see the
    module): the latest run of the current suite against it passed every case."""
    where = f"prompt {prompt_id}"
    if suite is None or suite.revision == 0:
        return SuiteGateError(
            f"the role requires a passing run of the saved test suite before production "
            f"moves to version {version}, and {where} has no saved suite: PUT …/suite, "
            "then POST …/suite/run",
            version=version,
            suite=None,
            run_id=None,
        )
    figures: dict[str, Any] = {"version": version, "suite": suite.reference()}
    latest = verdict.latest if verdict is not None else None
    if latest is None:
        return SuiteGateError(
            f"the role requires a passing run of the saved test suite (revision "
            f"{suite.revision}) against version {version} before production moves there; "
            "none is recorded: POST …/suite/run",
            **figures,
            run_id=None,
        )
    figures["run_id"] = latest["run_id"]
    if latest["suite_hash"] != suite.suite_hash:
        return SuiteGateError(
            f"the latest run {latest['run_id']} of the saved test suite against version "
            f"{version} ran revision {latest['suite_revision']}; the suite is at revision "
            f"{suite.revision} now: run it again",
            **figures,
        )
    if latest["failed"]:
        return SuiteGateError(
            f"the latest run {latest['run_id']} of the saved test suite (revision "
            f"{suite.revision}) against version {version} failed {latest['failed']} of "
            f"{latest['total']} case(s)",
            **figures,
        )
    return None


class JobFinishedError(ConflictError):
    """A worker wrote to a job that has ended."""


class StaleAttemptError(ConflictError):
    """A worker wrote for an attempt the job has moved past (its lease was lost)."""


class PromptTestJob(Aggregate):
    """A prompt test run made by a worker, case by case (see the module)."""

    class Requested(Aggregate.Created):
        prompt_id: str
        role: str
        plan: list[dict[str, Any]]  # each: {"subject": …, "content": …}
        inputs: list[dict[str, Any]]
        assertions: list[dict[str, Any]]
        settings: dict[str, Any]
        suite: dict[str, Any] | None
        reason: str

    class Started(Aggregate.Event):
        worker: str
        attempt: int
        reason: str

        def apply(self, job: PromptTestJob) -> None:
            job.status = RUNNING
            job.attempt = self.attempt
            job.worker = self.worker
            job.started_at = job.started_at or self.timestamp

    class Progress(Aggregate.Event):
        attempt: int
        cases: list[dict[str, Any]]

        def apply(self, job: PromptTestJob) -> None:
            job.cases.extend(self.cases)

    class Completed(Aggregate.Event):
        attempt: int
        run_id: str
        passed: int
        failed: int

        def apply(self, job: PromptTestJob) -> None:
            job.status = COMPLETED
            job.run_id = self.run_id
            job.finished_at = self.timestamp

    class Failed(Aggregate.Event):
        attempt: int
        reason: str

        def apply(self, job: PromptTestJob) -> None:
            job.status = FAILED
            job.error = self.reason
            job.finished_at = self.timestamp

    class Stopped(Aggregate.Event):
        attempt: int
        reason: str

        def apply(self, job: PromptTestJob) -> None:
            job.status = STOPPED
            job.stop_reason = self.reason
            job.stopped_by = self.meta.get("principal", "unknown")
            job.finished_at = self.timestamp

    def __init__(  # noqa: PLR0913
        self,
        prompt_id: str,
        role: str,
        plan: list[dict[str, Any]],
        inputs: list[dict[str, Any]],
        assertions: list[dict[str, Any]],
        settings: dict[str, Any],
        suite: dict[str, Any] | None,
        reason: str,
        meta: EventMeta,
    ) -> None:
        self.prompt_id = prompt_id
        self.role = role
        self.plan = plan
        self.inputs = inputs
        self.assertions = assertions
        self.settings = settings
        self.suite = suite
        self.reason = reason
        self.status = QUEUED
        self.attempt = 0
        self.worker: str | None = None
        self.cases: list[dict[str, Any]] = []
        self.run_id: str | None = None
        self.error: str | None = None
        self.stop_reason: str | None = None
        self.stopped_by: str | None = None
        self.started_at: datetime | None = None
        self.finished_at: datetime | None = None
        self.requested_by = meta.get("principal", "unknown")
        self.correlation_id = meta.get("correlation_id")

    @classmethod
    def request(cls, **fields: Any) -> PromptTestJob:
        return cls._create(cls.Requested, **fields)

    @property
    def total(self) -> int:
        return len(self.plan) * len(self.inputs)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def todo(self) -> list[tuple[int, int]]:
        """(subject index, input index) of each case not run yet, in run order."""
        order = [(s, i) for s in range(len(self.plan)) for i in range(len(self.inputs))]
        return order[len(self.cases) :]

    def _check_attempt(self, attempt: int) -> None:
        if self.finished:
            raise JobFinishedError(f"prompt test job {self.id} has already ended ({self.status})")
        if self.status != RUNNING or attempt != self.attempt:
            raise StaleAttemptError(
                f"attempt {attempt} of prompt test job {self.id} is not the current one "
                f"({self.attempt})"
            )

    def start(self, worker: str, attempt: int, reason: str) -> None:
        if self.finished:
            raise JobFinishedError(f"prompt test job {self.id} has already ended ({self.status})")
        if attempt <= self.attempt:
            raise StaleAttemptError(f"attempt {attempt} already started (now {self.attempt})")
        self.trigger_event(self.Started, worker=worker, attempt=attempt, reason=reason)

    def progress(self, attempt: int, cases: list[dict[str, Any]]) -> None:
        self._check_attempt(attempt)
        if len(self.cases) + len(cases) > self.total:
            raise ConflictError(f"prompt test job {self.id} has only {self.total} cases")
        self.trigger_event(self.Progress, attempt=attempt, cases=cases)

    def complete(self, attempt: int, run_id: str) -> None:
        self._check_attempt(attempt)
        if len(self.cases) != self.total:
            raise ConflictError(
                f"prompt test job {self.id} ran {len(self.cases)} of {self.total} cases"
            )
        passed = sum(1 for case in self.cases if case["passed"])
        self.trigger_event(
            self.Completed,
            attempt=attempt,
            run_id=run_id,
            passed=passed,
            failed=len(self.cases) - passed,
        )

    def fail(self, reason: str, attempt: int) -> None:
        if self.finished:
            raise JobFinishedError(f"prompt test job {self.id} has already ended ({self.status})")
        self.trigger_event(self.Failed, attempt=attempt, reason=reason)

    def stop(self, reason: str) -> None:
        """End the job at once, queued or running (see the module); who stopped it is the
        event's principal."""
        if self.finished:
            raise JobFinishedError(f"prompt test job {self.id} has already ended ({self.status})")
        self.trigger_event(self.Stopped, attempt=self.attempt, reason=reason)
