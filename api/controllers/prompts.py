"""Prompts of the assistant's roles: /api/v1/ai-assistant/prompts (F11.4.1, F11.4.4).

A prompt is created with ``POST`` (role and name; 201, ``Location``) and edited with
``PUT …/prompts/{id}``: each PUT is a new immutable version (201, ``Location`` of the
version), or, when identical to the latest version, nothing new (200 with that version).
Labels (``production``, ``staging``, custom names) are moved with ``PUT
…/labels/{label}``, removed with ``DELETE``, and moved back with ``POST …/rollback``;
``production`` is protected: only admins move or remove it (403 otherwise, nothing
appended).

``ETag`` is the Prompt aggregate's version on every response that shows or changes one
prompt (``aggregate_version`` in version and label bodies, where ``version`` is a
version's number); every command takes ``If-Match`` and ``Idempotency-Key``.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import anyio.to_thread
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, Parameter, PathParameter

from api.assistant_schemas import (
    LABEL_PATTERN,
    MAX_VERSION,
    LabelChangeOut,
    LabelHistoryPage,
    LabelMove,
    LabelResult,
    LabelRollback,
    PromptCreate,
    PromptDetail,
    PromptDiffOut,
    PromptOut,
    PromptPage,
    PromptVersionDetail,
    PromptVersionIn,
    PromptVersionOut,
    VersionPage,
)
from api.assistant_views import (
    diff_out,
    label_result,
    prompt_detail,
    prompt_detail_from_row,
    prompt_out,
    prompt_summary_from_row,
    version_detail_from_read_models,
    version_out,
    version_summary_from_row,
)
from api.auth import READ, WRITE
from api.commands import expected_version, idempotency, run_command, to_builtins
from api.consistency import WaitFor, wait_for
from api.contract import (
    COMMAND_HEADERS,
    CREATED_HEADERS,
    ONE_AGGREGATE_HEADERS,
    IdempotencyKey,
    IfMatch,
    Instant,
    etag,
    instants,
    problems,
    read_one,
    snapshot,
    strict_body,
)
from api.controllers.assistant_config import BASE, require_admin
from api.controllers.models import aware
from api.errors import ProblemError
from api.pagination import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, encode_cursor
from application.base import Response as CommandResponse
from application.contexts import Contexts
from domain.assistant.config import ROLE_KEY_PATTERN
from domain.assistant.prompt import Prompt, PromptVersion
from domain.assistant.prompts import PromptContent, is_protected
from projections import assistant as views

PROMPTS = f"{BASE}/prompts"
VersionPath = Annotated[
    int, PathParameter(ge=1, le=MAX_VERSION, description="the version's number, from 1")
]
LabelPath = Annotated[
    str,
    PathParameter(
        pattern=LABEL_PATTERN,
        description="production (admins only), staging or a custom lowercase name",
    ),
]
_VERSION_OR_LABEL = r"^([1-9][0-9]{0,8}|[a-z][a-z0-9_-]{0,31})$"
FromVersion = Annotated[
    str,
    Parameter(
        query="from",
        pattern=_VERSION_OR_LABEL,
        description="the version to diff from: a number, a label naming one, or `latest`",
    ),
]
ToVersion = Annotated[
    str,
    Parameter(
        pattern=_VERSION_OR_LABEL,
        description="the version to diff to: a number, a label naming one, or `latest`",
    ),
]
IDENTICAL = ResponseSpec(
    PromptVersionOut,
    description="Identical to the latest version: that version, and nothing appended.",
    generate_examples=False,
)


def aggregate_version_of(body: Any) -> Any:
    """The ETag of a version or label body: the prompt's version."""
    return body.get("aggregate_version")


def _guard_label(request: Request[Any, Any, Any], label: str) -> None:
    if is_protected(label):
        require_admin(request, f"moving or removing the protected label {label!r}")


def _page_after(cursor: str | None) -> int:
    after = decode_cursor(cursor) or 0
    if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after < 2**31:
        raise ProblemError(400, "cursor is not one this API returned")
    return after


async def _require_prompt(conn: Any, prompt_id: UUID) -> Any:
    row = await views.prompt(conn, prompt_id)
    if row is None:
        raise ProblemError(404, f"prompt {prompt_id} not found")
    return row


def _label_respond(label: str) -> Any:
    def respond(prompt: Prompt, outcome: object) -> CommandResponse:
        changed = outcome is not False
        last = prompt.label_history[-1] if changed and prompt.label_history else None
        previous = last.previous_version if last is not None else prompt.labels.get(label)
        return 200, to_builtins(label_result(prompt, label, previous, changed))

    return respond


class PromptController(Controller):
    path = PROMPTS
    tags = ["assistant"]

    @get("/", guards=[READ], responses=problems())
    async def list_prompts(
        self,
        request: Request[Any, Any, Any],
        role: Annotated[str | None, Parameter(pattern=ROLE_KEY_PATTERN)] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        wait: WaitFor = None,
    ) -> PromptPage:
        """Prompts per role (by role, then name), each with its latest version and labels."""
        await wait_for(request, wait)
        after = decode_cursor(cursor)
        if after is not None and not (
            isinstance(after, list) and len(after) == 2 and all(isinstance(a, str) for a in after)
        ):
            raise ProblemError(400, "cursor is not one this API returned")
        async with snapshot(request) as conn:
            rows = await views.list_prompts(
                conn, role=role, after=(after[0], after[1]) if after else None, limit=limit + 1
            )
        items = [prompt_summary_from_row(r) for r in rows[:limit]]
        more = len(rows) > limit
        return PromptPage(
            items=items,
            next_cursor=encode_cursor([items[-1].role, items[-1].name]) if more else None,
        )

    @post(
        "/",
        guards=[WRITE],
        status_code=201,
        response_headers=CREATED_HEADERS,
        responses=problems(409, 422),
    )
    async def create_prompt(
        self,
        request: Request[Any, Any, Any],
        data: PromptCreate,
        contexts: Contexts,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[PromptOut]:
        """A new prompt of a role, unique by name within the role (409), with no version
        yet: ``PUT`` its first one. ``Location`` is readable at once."""
        data = await strict_body(request, PromptCreate) or data
        idem = await idempotency(request, idempotency_key)
        return await run_command(
            request,
            lambda: contexts.assistant.create_prompt(
                role=data.role,
                name=data.name,
                description=data.description,
                idem=idem,
                respond=lambda prompt: (201, to_builtins(prompt_out(prompt))),
            ),
            location=lambda body: f"{PROMPTS}/{body['id']}",
        )

    @get(
        "/{prompt_id:uuid}",
        guards=[READ],
        response_headers=ONE_AGGREGATE_HEADERS,
        responses=problems(404),
    )
    async def get_prompt(
        self,
        request: Request[Any, Any, Any],
        prompt_id: FromPath[UUID],
        contexts: Contexts,
        as_of: Instant = None,
        wait: WaitFor = None,
    ) -> Response[PromptDetail]:
        """The prompt with its latest version and labels; ``as_of`` replays its events to
        that time (which version each label, ``production`` too, named then)."""
        instants(request, "as_of")
        if as_of is not None:
            moment = aware(as_of)
            prompt = await anyio.to_thread.run_sync(
                lambda: contexts.assistant.get_prompt_as_of(prompt_id, moment)
            )
            detail = prompt_detail(prompt, moment)
        else:
            await wait_for(request, wait)
            found = await read_one(
                request, "assistant", prompt_id, lambda conn: _detail(conn, prompt_id)
            )
            if found is None:
                raise ProblemError(404, f"prompt {prompt_id} not found")
            detail = found
        return Response(detail, headers=etag(detail.version))

    @put(
        "/{prompt_id:uuid}",
        guards=[WRITE],
        status_code=201,
        response_headers=CREATED_HEADERS,
        responses={200: IDENTICAL, **problems(404, 409, 422)},
    )
    async def commit_version(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        prompt_id: FromPath[UUID],
        data: PromptVersionIn,
        contexts: Contexts,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[PromptVersionOut]:
        """A new immutable version (201, ``Location`` of the version): templates with
        ``{{variables}}``, declared variables, settings overrides, an optional model, a
        commit message. Identical to the latest version: 200 with it, nothing new."""
        data = await strict_body(request, PromptVersionIn) or data
        expected = expected_version(request, data.expected_version)
        idem = await idempotency(request, idempotency_key)
        content = PromptContent(
            data.system_template,
            data.user_template,
            tuple(data.variables),
            data.overrides.given(),
        )

        def respond(prompt: Prompt, outcome: tuple[PromptVersion, bool]) -> CommandResponse:
            version, created = outcome
            return (201 if created else 200), to_builtins(version_out(prompt, version))

        return await run_command(
            request,
            lambda: contexts.assistant.commit_version(
                prompt_id,
                content,
                model=data.model,
                message=data.message,
                registry=contexts.registry,
                expected_version=expected,
                idem=idem,
                respond=respond,
            ),
            location=lambda body: f"{PROMPTS}/{prompt_id}/versions/{body['version']}",
            etag=aggregate_version_of,
        )

    @get("/{prompt_id:uuid}/versions", guards=[READ], responses=problems(404))
    async def list_versions(
        self,
        request: Request[Any, Any, Any],
        prompt_id: FromPath[UUID],
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        wait: WaitFor = None,
    ) -> VersionPage:
        """The versions, oldest first, with their messages, authors and labels."""
        await wait_for(request, wait)
        after = _page_after(cursor)
        async with snapshot(request) as conn:
            prompt = await _require_prompt(conn, prompt_id)
            rows = await views.versions(conn, prompt_id, after, limit + 1)
        labels = prompt_detail_from_row(prompt).labels
        items = [version_summary_from_row(r, labels) for r in rows[:limit]]
        more = len(rows) > limit
        return VersionPage(
            items=items, next_cursor=encode_cursor(items[-1].version) if more else None
        )

    @get(
        "/{prompt_id:uuid}/versions/{version:int}",
        guards=[READ],
        response_headers=ONE_AGGREGATE_HEADERS,
        responses=problems(404),
    )
    async def get_version(
        self,
        request: Request[Any, Any, Any],
        prompt_id: FromPath[UUID],
        version: VersionPath,
        wait: WaitFor = None,
    ) -> Response[PromptVersionDetail]:
        """One version, what it runs on, and what it would run with now (its model or the
        role's, the role's settings under its overrides); ``ETag`` is the prompt's version."""
        await wait_for(request, wait)
        found = await read_one(
            request,
            "assistant",
            prompt_id,
            lambda conn: version_detail_from_read_models(conn, prompt_id, version),
        )
        if found is None:
            raise ProblemError(404, f"prompt {prompt_id} has no version {version}")
        return Response(found, headers=etag(found.aggregate_version))

    @get("/{prompt_id:uuid}/diff", guards=[READ], responses=problems(404))
    async def diff(
        self,
        request: Request[Any, Any, Any],
        prompt_id: FromPath[UUID],
        from_: FromVersion,
        to: ToVersion = "latest",
        wait: WaitFor = None,
    ) -> PromptDiffOut:
        """A unified diff of both templates from one version to another (numbers, labels
        or ``latest``), the variables added and removed and the settings that changed."""
        await wait_for(request, wait)
        async with snapshot(request) as conn:
            prompt = prompt_detail_from_row(await _require_prompt(conn, prompt_id))
            a = await _version_row(conn, prompt, from_)
            b = await _version_row(conn, prompt, to)
        return diff_out(prompt_id, a, b)

    @put(
        "/{prompt_id:uuid}/labels/{label:str}",
        guards=[WRITE],
        status_code=200,
        response_headers=COMMAND_HEADERS,
        responses=problems(404, 409, 422),
    )
    async def move_label(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        prompt_id: FromPath[UUID],
        label: LabelPath,
        data: LabelMove,
        contexts: Contexts,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[LabelResult]:
        """Point a label at a version (``changed`` false, nothing appended, when it
        already does); ``production`` needs the admin role."""
        data = await strict_body(request, LabelMove) or data
        _guard_label(request, label)
        expected = expected_version(request, data.expected_version)
        idem = await idempotency(request, idempotency_key)
        return await run_command(
            request,
            lambda: contexts.assistant.move_label(
                prompt_id,
                label,
                data.version,
                data.reason,
                expected_version=expected,
                idem=idem,
                respond=_label_respond(label),
            ),
            etag=aggregate_version_of,
        )

    @delete(
        "/{prompt_id:uuid}/labels/{label:str}",
        guards=[WRITE],
        status_code=200,
        response_headers=COMMAND_HEADERS,
        responses=problems(404, 409, 422),
    )
    async def remove_label(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        prompt_id: FromPath[UUID],
        label: LabelPath,
        contexts: Contexts,
        reason: Annotated[str, Parameter(max_length=1000)] = "",
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[LabelResult]:
        """Remove a label (it names no version any more); ``production`` needs admin."""
        _guard_label(request, label)
        expected = expected_version(request, None)
        idem = await idempotency(request, idempotency_key)
        return await run_command(
            request,
            lambda: contexts.assistant.remove_label(
                prompt_id,
                label,
                reason,
                expected_version=expected,
                idem=idem,
                respond=_label_respond(label),
            ),
            etag=aggregate_version_of,
        )

    @post(
        "/{prompt_id:uuid}/rollback",
        guards=[WRITE],
        status_code=200,
        response_headers=COMMAND_HEADERS,
        responses=problems(404, 409, 422),
    )
    async def rollback(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        prompt_id: FromPath[UUID],
        data: LabelRollback,
        contexts: Contexts,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[LabelResult]:
        """Move a label (``production`` by default) back to the version it named before,
        or to a named version it named before: a label move with ``action`` rollback."""
        data = await strict_body(request, LabelRollback) or data
        _guard_label(request, data.label)
        expected = expected_version(request, data.expected_version)
        idem = await idempotency(request, idempotency_key)
        return await run_command(
            request,
            lambda: contexts.assistant.rollback_label(
                prompt_id,
                data.label,
                data.version,
                data.reason,
                expected_version=expected,
                idem=idem,
                respond=_label_respond(data.label),
            ),
            etag=aggregate_version_of,
        )

    @get("/{prompt_id:uuid}/label-history", guards=[READ], responses=problems(404))
    async def label_history(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        prompt_id: FromPath[UUID],
        label: Annotated[str | None, Parameter(pattern=LABEL_PATTERN)] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        wait: WaitFor = None,
    ) -> LabelHistoryPage:
        """Every label move, rollback and removal, oldest first (one label with ``label``)."""
        await wait_for(request, wait)
        after = _page_after(cursor)
        async with snapshot(request) as conn:
            await _require_prompt(conn, prompt_id)
            rows = await views.label_history(
                conn, prompt_id, label=label, after_sequence=after, limit=limit + 1
            )
        items = [LabelChangeOut(**dict(r)) for r in rows[:limit]]
        more = len(rows) > limit
        return LabelHistoryPage(
            items=items, next_cursor=encode_cursor(items[-1].sequence) if more else None
        )


async def _detail(conn: Any, prompt_id: UUID) -> PromptDetail | None:
    row = await views.prompt(conn, prompt_id)
    return None if row is None else prompt_detail_from_row(row)


async def _version_row(conn: Any, prompt: PromptDetail, which: str) -> Any:
    if which.isdigit():
        number: int | None = int(which)
    elif which == "latest":
        number = prompt.latest_version
    else:
        number = prompt.labels.get(which)
    row = await views.version(conn, prompt.id, number) if number is not None else None
    if row is None:
        raise ProblemError(404, f"prompt {prompt.id} has no version or label {which!r}")
    return row
