"""Saved test suites and prompt test jobs: /api/v1/ai-assistant/prompts/{id}/suite… (F11.4.3).

- ``PUT …/prompts/{id}/suite`` saves the prompt's suite (inputs, assertions, settings):
  201 with ``Location`` at the first save, 200 after (``changed`` false and nothing
  appended when the content equals the saved one). ``ETag`` is the suite's version;
  ``If-Match`` (``"0"`` before the first save) and ``Idempotency-Key`` as on every PUT.
- ``GET …/suite`` shows it (``ETag``); ``GET …/suite/runs`` the latest run of the suite
  against each version, and whether it ran the suite as it is now (``current``).
- ``POST …/suite/run`` runs the saved suite against versions and records the run like
  ``POST …/test`` (201, ``Location`` of the run), or, above 20 cases or with ``job`` true,
  queues it as a job (202, ``Location`` of the job).
- ``GET …/test-jobs/{job_id}`` shows a job's progress: status, cases done of the total,
  passed and failed so far, and the run once completed.
- ``GET …/test-jobs`` lists the prompt's jobs by the time they were requested, oldest
  (or ``newest``) first, filtered by ``status``; paginated like every list.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath

from api.assistant_schemas import PromptTestDetail
from api.assistant_views import test_detail
from api.auth import READ, WRITE
from api.commands import expected_version, idempotency, run_command, to_builtins
from api.consistency import WaitFor, wait_for
from api.contract import (
    COMMAND_HEADERS,
    CREATED_HEADERS,
    ONE_AGGREGATE_HEADERS,
    IdempotencyKey,
    IfMatch,
    etag,
    jsonb,
    problems,
    read_one,
    snapshot,
    strict_body,
)
from api.controllers.prompts import PROMPTS, aggregate_version_of
from api.errors import ProblemError
from api.ml_schemas import StopRequest
from api.pagination import DEFAULT_LIMIT, Cursor, Limit, Order, decode_time_keyset, next_time_cursor
from api.suite_schemas import (
    JobStatus,
    PromptTestJobOut,
    PromptTestJobPage,
    SuiteIn,
    SuiteOut,
    SuiteRunIn,
    SuiteRunOut,
)
from application.base import Response as CommandResponse
from application.contexts import Contexts
from application.ports import LLMError
from domain.assistant.prompt_runs import PromptTestRun
from domain.assistant.suites import PromptSuite, PromptTestJob, suite_id
from projections import assistant as views
from projections import assistant_suites as suite_views

LLM_RETRY_AFTER = "30"  # seconds, as POST …/test answers a provider failure
_BUILTIN = (UUID, datetime)

SAVED_AGAIN = ResponseSpec(
    SuiteOut,
    description="A later save: the suite changed, or (`changed` false, nothing appended) it "
    "equals the saved one.",
    generate_examples=False,
)
QUEUED_JOB = ResponseSpec(
    PromptTestJobOut,
    description="More than 20 cases, or `job` true: queued as a job run by a worker; "
    "`Location` is the job, whose `done` counts the cases run.",
    generate_examples=False,
)


class SuiteRunsPage(msgspec.Struct):
    items: list[SuiteRunOut]


def _suite_ref(value: Any) -> Any:
    return None if value is None else {**value, "suite_id": UUID(value["suite_id"])}


def suite_location(prompt_id: UUID | str) -> str:
    return f"{PROMPTS}/{prompt_id}/suite"


def job_location(prompt_id: UUID | str, job_id: UUID | str) -> str:
    return f"{PROMPTS}/{prompt_id}/test-jobs/{job_id}"


def suite_out(suite: PromptSuite, changed: bool | None = None) -> SuiteOut:
    return msgspec.convert(
        {
            "prompt_id": UUID(suite.prompt_id),
            "id": suite.id,
            "role": suite.role,
            "version": suite.version,
            "revision": suite.revision,
            "suite_hash": suite.suite_hash,
            "inputs": suite.inputs,
            "assertions": suite.assertions,
            "settings": suite.settings,
            "reason": suite.reason,
            "created_at": suite.created_on,
            "created_by": suite.created_by,
            "updated_at": suite.modified_on,
            "updated_by": suite.updated_by,
            "changed": changed,
        },
        SuiteOut,
        builtin_types=_BUILTIN,
    )


def suite_from_row(row: Any) -> SuiteOut:
    values = {f: row[f] for f in SuiteOut.__struct_fields__ if f not in ("changed",)}
    for name in ("inputs", "assertions", "settings"):
        values[name] = jsonb(values[name])
    return msgspec.convert(values, SuiteOut, builtin_types=_BUILTIN)


def job_out(job: PromptTestJob) -> PromptTestJobOut:
    passed = sum(1 for case in job.cases if case["passed"])
    return msgspec.convert(
        {
            "id": job.id,
            "prompt_id": UUID(job.prompt_id),
            "role": job.role,
            "status": job.status,
            "subjects": [step["subject"] for step in job.plan],
            "total": job.total,
            "done": len(job.cases),
            "passed": passed,
            "failed": len(job.cases) - passed,
            "suite": _suite_ref(job.suite),
            "reason": job.reason,
            "attempt": job.attempt,
            "worker": job.worker,
            "run_id": UUID(job.run_id) if job.run_id else None,
            "run": f"{PROMPTS}/{job.prompt_id}/tests/{job.run_id}" if job.run_id else None,
            "error": job.error,
            "stop_reason": job.stop_reason,
            "stopped_by": job.stopped_by,
            "requested_at": job.created_on,
            "requested_by": job.requested_by,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "aggregate_version": job.version,
        },
        PromptTestJobOut,
        builtin_types=_BUILTIN,
    )


def job_from_row(row: Any) -> PromptTestJobOut:
    values = dict(row)
    values["subjects"] = jsonb(values["subjects"])
    values["suite"] = _suite_ref(jsonb(values["suite"]))
    values["aggregate_version"] = values.pop("version")
    values.pop("correlation_id", None)
    run_id = values["run_id"]
    values["run"] = f"{PROMPTS}/{values['prompt_id']}/tests/{run_id}" if run_id else None
    return msgspec.convert(values, PromptTestJobOut, builtin_types=_BUILTIN)


def respond_job(job: PromptTestJob) -> CommandResponse:
    return 202, to_builtins(job_out(job))


def respond_run(run: PromptTestRun) -> CommandResponse:
    return 201, to_builtins(test_detail(run))


def run_or_job_location(prompt_id: UUID) -> Any:
    def location(body: Any) -> str:
        if "done" in body:  # a job
            return job_location(prompt_id, body["id"])
        return f"{PROMPTS}/{prompt_id}/tests/{body['id']}"

    return location


def provider_failed(exc: LLMError) -> ProblemError:
    return ProblemError(
        503,
        f"the model's provider failed, nothing was recorded: {exc}",
        headers={"Retry-After": LLM_RETRY_AFTER},
    )


class PromptSuiteController(Controller):
    path = PROMPTS
    tags = ["assistant"]

    @get(
        "/{prompt_id:uuid}/suite",
        guards=[READ],
        response_headers=ONE_AGGREGATE_HEADERS,
        responses=problems(404),
    )
    async def get_suite(
        self,
        request: Request[Any, Any, Any],
        prompt_id: FromPath[UUID],
        wait: WaitFor = None,
    ) -> Response[SuiteOut]:
        """The prompt's saved test suite: inputs, assertions, settings, revision and hash;
        ``ETag`` is the suite's version. 404 when the prompt has none (or is unknown)."""
        await wait_for(request, wait)

        async def fetch(conn: Any) -> SuiteOut | None:
            row = await suite_views.suite(conn, prompt_id)
            return None if row is None else suite_from_row(row)

        found = await read_one(request, "assistant", suite_id(prompt_id), fetch)
        if found is None:
            raise ProblemError(404, f"prompt {prompt_id} has no saved test suite")
        return Response(found, headers=etag(found.version))

    @put(
        "/{prompt_id:uuid}/suite",
        guards=[WRITE],
        status_code=201,
        response_headers=CREATED_HEADERS,
        responses={200: SAVED_AGAIN, **problems(404, 409, 422)},
    )
    async def save_suite(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        prompt_id: FromPath[UUID],
        data: SuiteIn,
        contexts: Contexts,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[SuiteOut]:
        """Save the whole suite: sample inputs (variable values), assertions and settings,
        with a reason. 201 at the first save, 200 after; equal to the saved suite: 200,
        ``changed`` false, nothing appended. Every bad field is named (400)."""
        data = await strict_body(request, SuiteIn) or data
        expected = expected_version(request, data.expected_version)
        idem = await idempotency(request, idempotency_key)

        def respond(suite: PromptSuite, changed: bool) -> CommandResponse:
            created = changed and suite.revision == 1
            return (201 if created else 200), to_builtins(suite_out(suite, changed))

        return await run_command(
            request,
            lambda: contexts.assistant.save_suite(
                prompt_id,
                inputs=[{"name": i.name, "values": i.values} for i in data.inputs],
                assertions=[{"kind": a.kind, "value": a.value} for a in data.assertions],
                settings=data.settings.given(),
                reason=data.reason,
                expected_version=expected,
                idem=idem,
                respond=respond,
            ),
            location=lambda body: suite_location(prompt_id),
        )

    @get("/{prompt_id:uuid}/suite/runs", guards=[READ], responses=problems(404))
    async def suite_runs(
        self,
        request: Request[Any, Any, Any],
        prompt_id: FromPath[UUID],
        wait: WaitFor = None,
    ) -> SuiteRunsPage:
        """The latest run of the saved suite against each version, by version; ``current``
        when it ran the suite as it is now (what the production gate asks for)."""
        await wait_for(request, wait)
        async with snapshot(request) as conn:
            suite = await suite_views.suite(conn, prompt_id)
            if suite is None:
                if await views.prompt(conn, prompt_id) is None:
                    raise ProblemError(404, f"prompt {prompt_id} not found")
                return SuiteRunsPage(items=[])
            rows = await suite_views.latest_runs(conn, prompt_id)
        items = [
            SuiteRunOut(
                version=r["version"],
                run_id=r["run_id"],
                suite_revision=r["suite_revision"],
                suite_hash=r["suite_hash"],
                current=r["suite_hash"] == suite["suite_hash"],
                total=r["total"],
                passed=r["passed"],
                failed=r["failed"],
                at=r["at"],
                by=r["by"],
            )
            for r in rows
        ]
        return SuiteRunsPage(items=items)

    @post(
        "/{prompt_id:uuid}/suite/run",
        guards=[WRITE],
        status_code=201,
        response_headers=CREATED_HEADERS,
        responses={202: QUEUED_JOB, **problems(404, 409, 422)},
    )
    async def run_suite(
        self,
        request: Request[Any, Any, Any],
        prompt_id: FromPath[UUID],
        data: SuiteRunIn,
        contexts: Contexts,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[PromptTestDetail]:
        """Run the saved suite against versions (numbers, labels, ``latest``) and record the
        run, naming the suite's revision and hash: 201 with the run (as ``POST …/test``);
        more than 20 cases or ``job`` true: 202 with the job. 404 without a saved suite;
        503 with ``Retry-After`` when the model's provider fails (nothing recorded)."""
        data = await strict_body(request, SuiteRunIn) or data
        idem = await idempotency(request, idempotency_key)
        try:
            return await run_command(
                request,
                lambda: contexts.assistant.run_suite(
                    prompt_id,
                    versions=data.versions,
                    reason=data.reason,
                    registry=contexts.registry,
                    as_job=data.job,
                    idem=idem,
                    respond=respond_run,
                    respond_job=respond_job,
                ),
                location=run_or_job_location(prompt_id),
                etag=aggregate_version_of,
            )
        except LLMError as exc:
            raise provider_failed(exc) from None

    @get("/{prompt_id:uuid}/test-jobs", guards=[READ], responses=problems(404))
    async def list_jobs(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        prompt_id: FromPath[UUID],
        status: JobStatus | None = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        order: Order = "oldest",
        wait: WaitFor = None,
    ) -> PromptTestJobPage:
        """The prompt's test jobs by the time they were requested, oldest (or ``newest``)
        first, filtered by status: where a job queued earlier is found again."""
        after = decode_time_keyset(cursor)
        await wait_for(request, wait)
        async with snapshot(request) as conn:
            rows = await suite_views.test_jobs(
                conn,
                prompt_id,
                status=status,
                after=after,
                limit=limit + 1,
                newest_first=order == "newest",
            )
            if not rows and await views.prompt(conn, prompt_id) is None:
                raise ProblemError(404, f"prompt {prompt_id} not found")
        return PromptTestJobPage(
            items=[job_from_row(r) for r in rows[:limit]],
            next_cursor=next_time_cursor(rows, limit, "requested_at"),
        )

    @get(
        "/{prompt_id:uuid}/test-jobs/{job_id:uuid}",
        guards=[READ],
        response_headers=ONE_AGGREGATE_HEADERS,
        responses=problems(404),
    )
    async def get_job(
        self,
        request: Request[Any, Any, Any],
        prompt_id: FromPath[UUID],
        job_id: FromPath[UUID],
        wait: WaitFor = None,
    ) -> Response[PromptTestJobOut]:
        """A prompt test job: status, cases done of the total, passed and failed so far,
        the attempt and worker, and the run (``run_id``, ``run``) once completed."""
        await wait_for(request, wait)

        async def fetch(conn: Any) -> PromptTestJobOut | None:
            row = await suite_views.test_job(conn, job_id)
            return None if row is None else job_from_row(row)

        found = await read_one(request, "assistant", job_id, fetch)
        if found is None or found.prompt_id != prompt_id:
            raise ProblemError(404, f"prompt {prompt_id} has no test job {job_id}")
        return Response(found, headers=etag(found.aggregate_version))

    @post(
        "/{prompt_id:uuid}/test-jobs/{job_id:uuid}/stop",
        guards=[WRITE],
        status_code=200,
        response_headers=COMMAND_HEADERS,
        responses=problems(404, 409),
    )
    async def stop_job(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        prompt_id: FromPath[UUID],
        job_id: FromPath[UUID],
        contexts: Contexts,
        data: StopRequest | None = None,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[PromptTestJobOut]:
        """Stop a queued or running test job at once: ``stopped``, with the cases already
        run kept and no run recorded; the worker stops at its next case.

        409: the job has already ended, or ``If-Match`` names a stale version (a running
        job's version moves with every case, so a client usually stops without it)."""
        data = await strict_body(request, StopRequest) or data
        expected = expected_version(request, None)
        idem = await idempotency(request, idempotency_key)

        def respond(job: PromptTestJob) -> CommandResponse:
            return 200, to_builtins(job_out(job))

        reason = data.reason if data is not None else ""
        return await run_command(
            request,
            lambda: contexts.assistant.stop_test_job(
                prompt_id, job_id, reason, expected_version=expected, idem=idem, respond=respond
            ),
            etag=aggregate_version_of,
        )
