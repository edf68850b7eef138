"""Assistant context, command side: saved test suites, the production gate, test jobs.

``SuitesMixin`` is a base of ``AssistantApplication`` (its methods are typed on that
class, ``self: AssistantApplication``); the rules are ``domain.assistant.suites``.

- ``save_suite``: the prompt's ``PromptSuite`` (created at the first save), one ``Saved``
  per real change; equal content appends nothing. ``If-Match`` is the suite's version;
  before the first save the suite is version 0.
- ``run_suite``: the saved suite against versions of the prompt, through
  ``run_prompt_test`` (the one case runner): the run records the suite's id, revision
  and hash (``PromptTestRun.suite``) and, saved with it, each version's ``SuiteVerdict``.
- ``check_production_gate``: the gate (``gate_refusal``) for moving ``production`` of a
  prompt to a version; ``move_label`` and ``rollback_label`` call it through ``gated``
  before saving, and the experiment conclusion calls it for the winner's version.
- ``queue_test_job``: a run with more than ``SYNC_CASES`` cases (or asked to be one) is a
  ``PromptTestJob``: everything it depends on is resolved and checked now, so the worker
  (``application.prompt_test_worker``) only renders, calls the model and judges.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from application.base import CommandResult, Idempotency, Response, StoredResponse
from domain.assistant.prompt import Prompt
from domain.assistant.prompt_runs import PromptTestRun
from domain.assistant.prompts import Assertion, PromptContent
from domain.assistant.suites import (
    PromptSuite,
    PromptTestJob,
    SuiteVerdict,
    gate_refusal,
    suite_id,
    verdict_id,
)
from domain.base import Aggregate
from domain.errors import ConflictError, NotFoundError

if TYPE_CHECKING:
    from application.assistant import AssistantApplication
    from application.registry import RegistryApplication

T = TypeVar("T")
PRODUCTION = "production"
Plan = list[tuple[dict[str, Any], PromptContent]]


class _Raced(Exception):
    """Another run's verdict was saved first: build the verdicts again and retry."""


def content_dict(content: PromptContent) -> dict[str, Any]:
    return {
        "system_template": content.system_template,
        "user_template": content.user_template,
        "variables": list(content.variables),
        "overrides": dict(content.overrides),
    }


def content_of(values: Mapping[str, Any]) -> PromptContent:
    return PromptContent(
        values["system_template"],
        values["user_template"],
        tuple(values["variables"]),
        dict(values["overrides"]),
    )


class SuitesMixin:
    """Saved suites, the production gate and prompt test jobs (see the module)."""

    @property
    def _app(self) -> AssistantApplication:
        """This application, typed: the mixin is a base of ``AssistantApplication`` only."""
        return cast("AssistantApplication", self)

    # -- reads of the write side ------------------------------------------------------------

    def _get_or_none(self, aggregate_id: UUID, kind: type[T]) -> T | None:
        try:
            found: Any = self._app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, kind) else None

    def get_suite(self, prompt_id: UUID) -> PromptSuite | None:
        return self._get_or_none(suite_id(prompt_id), PromptSuite)

    def get_test_job(self, job_id: UUID) -> PromptTestJob:
        return self._app.load(job_id, PromptTestJob, "prompt test job")

    def stop_test_job(  # noqa: PLR0913
        self,
        prompt_id: UUID,
        job_id: UUID,
        reason: str,
        *,
        expected_version: int | None = None,
        idem: Idempotency | None = None,
        respond: Callable[[PromptTestJob], Response],
    ) -> CommandResult[StoredResponse]:
        """End a queued or running test job of the prompt at once (404 for an unknown job
        or one of another prompt; 409 for one that has ended, or a stale
        ``expected_version``). Without an expected version a stop that loses the race with
        the worker's progress is simply run again on the new version."""

        def load() -> PromptTestJob:
            job = self._get_or_none(job_id, PromptTestJob)
            if job is None or job.prompt_id != str(prompt_id):
                raise NotFoundError(f"prompt {prompt_id} has no test job {job_id}")
            return job

        return self._app.change_aggregate(
            load,
            lambda job: job.stop(reason or "stopped by request"),
            lambda job, _: respond(job),
            expected_version=expected_version,
            idem=idem,
            retry=True,
        )

    # -- suites -----------------------------------------------------------------------------

    def save_suite(  # noqa: PLR0913
        self,
        prompt_id: UUID,
        *,
        inputs: Sequence[Mapping[str, Any]],
        assertions: Sequence[Mapping[str, Any]],
        settings: Mapping[str, Any],
        reason: str,
        expected_version: int | None = None,
        idem: Idempotency | None = None,
        respond: Callable[[PromptSuite, bool], Response],
    ) -> CommandResult[StoredResponse]:
        """Save the prompt's suite (404 for an unknown prompt; 400 naming each bad field;
        409 on a stale ``expected_version``, 0 before the first save)."""

        def load() -> PromptSuite:
            prompt = self._app.get_prompt(prompt_id)
            return self.get_suite(prompt_id) or PromptSuite.create(str(prompt.id), prompt.role)

        return self._app.change_aggregate(
            load,
            lambda suite: suite.save(inputs, assertions, settings, reason),
            respond,
            expected_version=expected_version,
            idem=idem,
        )

    def run_suite(  # noqa: PLR0913
        self,
        prompt_id: UUID,
        *,
        versions: Sequence[int | str],
        reason: str,
        registry: RegistryApplication,
        as_job: bool = False,
        idem: Idempotency | None = None,
        respond: Callable[[PromptTestRun], Response],
        respond_job: Callable[[PromptTestJob], Response],
    ) -> CommandResult[StoredResponse]:
        """Run the saved suite against ``versions`` (numbers, labels, ``latest``): 404 when
        the prompt has no saved suite."""
        replay = self._app.idempotent_replay(idem)
        if replay is not None:
            return replay
        self._app.get_prompt(prompt_id)
        suite = self.get_suite(prompt_id)
        if suite is None or suite.revision == 0:
            raise NotFoundError(f"prompt {prompt_id} has no saved test suite")
        return self._app.run_prompt_test(
            prompt_id,
            versions=versions,
            draft=None,
            inputs=[(i["name"], i["values"]) for i in suite.inputs],
            assertions=suite.assertions,
            settings=suite.settings,
            reason=reason,
            registry=registry,
            idem=idem,
            respond=respond,
            as_job=as_job,
            respond_job=respond_job,
            suite=suite.reference(),
        )

    # -- recording a run ---------------------------------------------------------------------

    def suite_verdicts(self, run: PromptTestRun) -> list[SuiteVerdict]:
        """The verdicts a run of a saved suite adds (one per version it ran), loaded anew."""
        if run.suite is None:
            return []
        verdicts: list[SuiteVerdict] = []
        for subject in run.subjects:
            number = subject["version"]
            if number is None:
                continue
            verdict = self._get_or_none(
                verdict_id(run.prompt_id, number), SuiteVerdict
            ) or SuiteVerdict.create(run.prompt_id, number)
            verdict.record(str(run.id), run.suite, [c for c in run.cases if c["version"] == number])
            verdicts.append(verdict)
        return verdicts

    def record_test_run(  # noqa: PLR0913
        self,
        prompt: Prompt,
        plan: Plan,
        inputs: Sequence[tuple[str, Mapping[str, str]]],
        checks: Sequence[Assertion],
        settings: Mapping[str, Any],
        cases: list[dict[str, Any]],
        reason: str,
        suite: dict[str, Any] | None,
        idem: Idempotency | None,
        respond: Callable[[PromptTestRun], Response],
    ) -> CommandResult[StoredResponse]:
        """Save the run (and a suite run's verdicts) once its cases have run."""
        for _ in range(10):
            run = PromptTestRun.record(
                prompt_id=str(prompt.id),
                role=prompt.role,
                subjects=[subject for subject, _ in plan],
                inputs=[{"name": name, "values": dict(values)} for name, values in inputs],
                assertions=[{"kind": c.kind, "value": c.value} for c in checks],
                settings=dict(settings),
                cases=cases,
                reason=reason,
                suite=suite,
            )
            changed: list[Aggregate] = [run, *self.suite_verdicts(run)]
            try:
                return self._app.save_command(
                    changed, idem, functools.partial(respond, run), _Raced
                )
            except _Raced:
                if suite is None:
                    raise ConflictError("the run was recorded twice") from None
        raise ConflictError("the suite's verdicts kept changing; retry")

    def queue_test_job(  # noqa: PLR0913
        self,
        prompt: Prompt,
        plan: Plan,
        inputs: Sequence[tuple[str, Mapping[str, str]]],
        checks: Sequence[Assertion],
        settings: Mapping[str, Any],
        reason: str,
        suite: dict[str, Any] | None,
        idem: Idempotency | None,
        respond: Callable[[PromptTestJob], Response],
    ) -> CommandResult[StoredResponse]:
        """Queue a checked run as a job: a worker runs its cases and records the run."""
        job = PromptTestJob.request(
            prompt_id=str(prompt.id),
            role=prompt.role,
            plan=[{"subject": s, "content": content_dict(c)} for s, c in plan],
            inputs=[{"name": name, "values": dict(values)} for name, values in inputs],
            assertions=[{"kind": c.kind, "value": c.value} for c in checks],
            settings=dict(settings),
            suite=suite,
            reason=reason,
        )
        return self._app.save_command(
            [job], idem, lambda: respond(job), lambda: ConflictError("the job was queued twice")
        )

    def run_test_case(
        self,
        job: PromptTestJob,
        subject_index: int,
        input_index: int,
    ) -> dict[str, Any]:
        """One case of a job, by the same runner as a synchronous run (``LLMError``
        propagates)."""
        step = job.plan[subject_index]
        given = job.inputs[input_index]
        checks = [Assertion(a["kind"], a.get("value")) for a in job.assertions]
        return self._app._run_case(
            step["subject"],
            content_of(step["content"]),
            input_index,
            given["name"],
            given["values"],
            checks,
        )

    # -- the production gate ----------------------------------------------------------------

    def check_production_gate(self, prompt_id: UUID, version: int, role: str | None = None) -> None:
        """Refuse (``SuiteGateError``, 409) moving ``production`` of the prompt to
        ``version`` when its role has ``require_suite_pass`` and the latest run of the
        prompt's saved suite against ``version`` did not pass every case of the suite as
        it is now. The experiment conclusion calls this for the winner's version."""
        if role is None:
            role = self._app.get_prompt(prompt_id).role
        config = self._app.get_config()
        found = config.get_role(role) if config is not None else None
        if found is None or not found.require_suite_pass:
            return
        suite = self.get_suite(prompt_id)
        verdict = self._get_or_none(verdict_id(prompt_id, version), SuiteVerdict)
        refusal = gate_refusal(str(prompt_id), version, suite, verdict)
        if refusal is not None:
            raise refusal

    def gated(self, prompt: Prompt, label: str, outcome: T) -> T:
        """``outcome`` of a label command, once the gate let it move ``production`` (the
        command's event is pending; a refusal drops it, nothing is saved)."""
        if label == PRODUCTION and prompt.pending_events and label in prompt.labels:
            self.check_production_gate(prompt.id, prompt.labels[label], prompt.role)
        return outcome
