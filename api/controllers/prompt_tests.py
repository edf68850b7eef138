"""Prompt tests against sample inputs: /api/v1/ai-assistant/prompts/{id}/test(s) (F11.4.3).

``POST …/prompts/{id}/test`` runs versions of the prompt (numbers, labels or ``latest``)
and/or an unsaved draft against sample inputs, checks the assertions on every output and
records the run as one ``PromptTestRun`` aggregate (201, ``Location`` of the run). Up to
20 cases it is synchronous: the request waits for every completion, each made in a worker
thread (the command runs in one), never on the event loop. More cases (up to 500), or
``job`` true, make a job (202, ``Location`` of the job: ``api.controllers.prompt_suites``)
that a worker runs and records the same run from. Everything
is checked before the first call (400 naming every bad field, 404 an unknown prompt), and
a provider failure is a 503 with ``Retry-After``: nothing is recorded then.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath

from api.assistant_schemas import PromptTestDetail, PromptTestIn, PromptTestPage
from api.assistant_views import test_detail, test_detail_from_row, test_summary_from_row
from api.auth import READ, WRITE
from api.commands import idempotency, run_command, to_builtins
from api.consistency import WaitFor, wait_for
from api.contract import (
    CREATED_HEADERS,
    ONE_AGGREGATE_HEADERS,
    IdempotencyKey,
    etag,
    problems,
    read_one,
    snapshot,
    strict_body,
)
from api.controllers.prompt_suites import QUEUED_JOB, respond_job, run_or_job_location
from api.controllers.prompts import PROMPTS, aggregate_version_of
from api.errors import ProblemError
from api.pagination import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, encode_cursor
from application.contexts import Contexts
from application.ports import LLMError
from domain.assistant.prompt_runs import PromptTestRun
from domain.assistant.prompts import PromptContent
from projections import assistant as views

LLM_RETRY_AFTER = "30"  # seconds: a provider that failed is not retried at once


class PromptTestController(Controller):
    path = PROMPTS
    tags = ["assistant"]

    @post(
        "/{prompt_id:uuid}/test",
        guards=[WRITE],
        status_code=201,
        response_headers=CREATED_HEADERS,
        responses={202: QUEUED_JOB, **problems(404, 409, 422)},
    )
    async def run_test(
        self,
        request: Request[Any, Any, Any],
        prompt_id: FromPath[UUID],
        data: PromptTestIn,
        contexts: Contexts,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[PromptTestDetail]:
        """Run versions (numbers, labels, ``latest``) and/or a draft against sample inputs
        and record the run: per case the rendered messages, output, latency, tokens,
        finish reason, model and assertion verdicts. More than 20 cases (versions × inputs,
        at most 500) or ``job`` true: 202 with a job a worker runs; 503 with
        ``Retry-After`` when the model's provider fails (nothing recorded)."""
        data = await strict_body(request, PromptTestIn) or data
        idem = await idempotency(request, idempotency_key)
        draft = (
            PromptContent(
                data.draft.system_template,
                data.draft.user_template,
                tuple(data.draft.variables),
                data.draft.overrides.given(),
            )
            if data.draft is not None
            else None
        )

        def respond(run: PromptTestRun) -> tuple[int, Any]:
            return 201, to_builtins(test_detail(run))

        try:
            return await run_command(
                request,
                lambda: contexts.assistant.run_prompt_test(
                    prompt_id,
                    versions=data.versions,
                    draft=draft,
                    inputs=[(i.name, i.values) for i in data.inputs],
                    assertions=[{"kind": a.kind, "value": a.value} for a in data.assertions],
                    settings=data.settings.given(),
                    reason=data.reason,
                    registry=contexts.registry,
                    idem=idem,
                    respond=respond,
                    as_job=data.job,
                    respond_job=respond_job,
                ),
                location=run_or_job_location(prompt_id),
                etag=aggregate_version_of,
            )
        except LLMError as exc:
            raise ProblemError(
                503,
                f"the model's provider failed, nothing was recorded: {exc}",
                headers={"Retry-After": LLM_RETRY_AFTER},
            ) from None

    @get("/{prompt_id:uuid}/tests", guards=[READ], responses=problems(404))
    async def list_tests(
        self,
        request: Request[Any, Any, Any],
        prompt_id: FromPath[UUID],
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        wait: WaitFor = None,
    ) -> PromptTestPage:
        """The prompt's test runs, newest first: what ran, how many cases passed, who, why."""
        await wait_for(request, wait)
        before = decode_cursor(cursor)
        if before is not None and (
            not isinstance(before, int) or isinstance(before, bool) or not 0 < before < 2**63
        ):
            raise ProblemError(400, "cursor is not one this API returned")
        async with snapshot(request) as conn:
            if await views.prompt(conn, prompt_id) is None:
                raise ProblemError(404, f"prompt {prompt_id} not found")
            rows = await views.test_runs(conn, prompt_id, before, limit + 1)
        more = len(rows) > limit
        return PromptTestPage(
            items=[test_summary_from_row(r) for r in rows[:limit]],
            next_cursor=encode_cursor(rows[limit - 1]["position"]) if more else None,
        )

    @get(
        "/{prompt_id:uuid}/tests/{run_id:uuid}",
        guards=[READ],
        response_headers=ONE_AGGREGATE_HEADERS,
        responses=problems(404),
    )
    async def get_test(
        self,
        request: Request[Any, Any, Any],
        prompt_id: FromPath[UUID],
        run_id: FromPath[UUID],
        wait: WaitFor = None,
    ) -> Response[PromptTestDetail]:
        """One run with every case: rendered messages, output, usage and verdicts."""
        await wait_for(request, wait)

        async def fetch(conn: Any) -> PromptTestDetail | None:
            row = await views.test_run(conn, run_id)
            return None if row is None else test_detail_from_row(row)

        found = await read_one(request, "assistant", run_id, fetch)
        if found is None or found.prompt_id != prompt_id:
            raise ProblemError(404, f"prompt {prompt_id} has no test run {run_id}")
        return Response(found, headers=etag(found.aggregate_version))
