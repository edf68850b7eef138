"""Assistant roles and their settings: /api/v1/ai-assistant/config and /roles (F11.4.1–2).

The configuration is one aggregate (``domain.assistant.config``): ``ETag`` is its version
on every response that shows or changes it — the whole config, one role, a role's
creation — and every command takes ``If-Match`` (stale: 409 with ``current_version``;
``"0"`` is the version before the first role) and ``Idempotency-Key``.

Values valid in shape but not for the state (``max_tokens`` above the chosen model's
context length, a model the providers or the registry do not have, a prompt of another
role) are a 400 naming each field, like the out-of-range ones: a settings page shows
every error next to its field. Changing which prompt a role runs (``prompt_id``) changes
what runs in production, so, like moving the protected ``production`` label, it is for
admins (403 otherwise, nothing appended).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import anyio.to_thread
import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.params import PathParameter

from api.assistant_schemas import (
    ConfigChanged,
    ConfigOut,
    ConfigUpdate,
    RoleCreate,
    RoleDetail,
    RoleHistoryPage,
)
from api.assistant_views import (
    config_changed,
    config_from_read_models,
    config_view,
    history_from_row,
    role_detail,
    role_from_read_models,
    role_view,
)
from api.auth import READ, WRITE
from api.commands import expected_version, idempotency, principal_of, run_command, to_builtins
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
from api.controllers.models import aware
from api.errors import ProblemError
from api.pagination import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, encode_cursor
from application.assistant import registry_target
from application.base import Response as CommandResponse
from application.contexts import Contexts
from domain.assistant.config import (
    CONFIG_ID,
    KEEP,
    ROLE_KEY_PATTERN,
    AssistantConfig,
    Role,
    RolePatch,
)
from projections import assistant as views

UNSET = msgspec.UNSET

BASE = "/api/v1/ai-assistant"
RoleKeyPath = Annotated[
    str, PathParameter(pattern=ROLE_KEY_PATTERN, description="the role's key, e.g. risk-analyst")
]


def require_admin(request: Request[Any, Any, Any], what: str) -> None:
    """A 403 problem unless the caller is an admin."""
    principal = principal_of(request)
    if not principal.has_any(frozenset({"admin"})):
        raise ProblemError(
            403,
            f"{what} needs the admin role; the key has "
            f"{', '.join(sorted(principal.roles)) or 'none'}",
        )


def _patches(data: ConfigUpdate) -> list[RolePatch]:
    return [
        RolePatch(
            role=change.role,
            model=None if change.model is UNSET else change.model,
            settings=change.settings.given(),
            prompt_id=KEEP
            if change.prompt_id is UNSET
            else (None if change.prompt_id is None else str(change.prompt_id)),
            require_suite_pass=None
            if change.require_suite_pass is UNSET
            else bool(change.require_suite_pass),
        )
        for change in data.roles
    ]


class AssistantConfigController(Controller):
    path = BASE
    tags = ["assistant"]

    @get(
        "/config",
        guards=[READ],
        response_headers=ONE_AGGREGATE_HEADERS,
        responses=problems(),
    )
    async def get_config(
        self,
        request: Request[Any, Any, Any],
        contexts: Contexts,
        as_of: Instant = None,
        wait: WaitFor = None,
    ) -> Response[ConfigOut]:
        """Every role with its model, settings and the prompt version it runs (the one
        labelled ``production``); ``ETag`` is the configuration's version. ``as_of``
        replays the configuration, the roles' prompts and registry models to that time."""
        instants(request, "as_of")
        if as_of is not None:
            config = await anyio.to_thread.run_sync(_config_as_of, contexts, aware(as_of))
        else:
            await wait_for(request, wait)
            async with snapshot(request) as conn:
                config = await config_from_read_models(conn)
        return Response(config, headers=etag(config.version))

    @put(
        "/config",
        guards=[WRITE],
        status_code=200,
        response_headers=COMMAND_HEADERS,
        responses=problems(409, 422),
    )
    async def update_config(
        self,
        request: Request[Any, Any, Any],
        data: ConfigUpdate,
        contexts: Contexts,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ConfigChanged]:
        """Change the model, settings or prompt of one or more roles at once, with a
        reason; each role changed is one event. Every bad field is named (400), and
        then nothing changes."""
        data = await strict_body(request, ConfigUpdate) or data
        if any(change.prompt_id is not UNSET for change in data.roles):
            require_admin(request, "changing which prompt a role runs")
        if any(change.require_suite_pass is not UNSET for change in data.roles):
            require_admin(request, "changing a role's production gate (require_suite_pass)")
        expected = expected_version(request, data.expected_version)
        idem = await idempotency(request, idempotency_key)

        def respond(config: AssistantConfig, changed: list[str]) -> CommandResponse:
            return 200, to_builtins(config_changed(_shown(contexts, config), changed))

        return await run_command(
            request,
            lambda: contexts.assistant.update_config(
                _patches(data),
                reason=data.reason,
                registry=contexts.registry,
                expected_version=expected,
                idem=idem,
                respond=respond,
            ),
        )

    @post(
        "/roles",
        guards=[WRITE],
        status_code=201,
        response_headers=CREATED_HEADERS,
        responses=problems(409, 422),
    )
    async def add_role(
        self,
        request: Request[Any, Any, Any],
        data: RoleCreate,
        contexts: Contexts,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[RoleDetail]:
        """Add a role with its model and settings (over the defaults); a taken key is a
        409. It runs no prompt until one is set with ``PUT …/config``. ``Location`` is
        readable at once; ``ETag`` is the configuration's version."""
        data = await strict_body(request, RoleCreate) or data
        expected = expected_version(request, data.expected_version)
        idem = await idempotency(request, idempotency_key)

        def respond(config: AssistantConfig, role: Role) -> CommandResponse:
            shown = role_view(role, *_lookups(contexts, None))
            return 201, to_builtins(role_detail(shown, config))

        return await run_command(
            request,
            lambda: contexts.assistant.add_role(
                key=data.role,
                name=data.name,
                description=data.description,
                model=data.model,
                settings=data.settings.given(),
                reason=data.reason,
                registry=contexts.registry,
                expected_version=expected,
                idem=idem,
                respond=respond,
                require_suite_pass=data.require_suite_pass,
            ),
            location=lambda body: f"{BASE}/roles/{body['role']}",
            etag=lambda body: body.get("config_version"),
        )

    @get(
        "/roles/{role:str}",
        guards=[READ],
        response_headers=ONE_AGGREGATE_HEADERS,
        responses=problems(404),
    )
    async def get_role(
        self,
        request: Request[Any, Any, Any],
        role: RoleKeyPath,
        contexts: Contexts,
        as_of: Instant = None,
        wait: WaitFor = None,
    ) -> Response[RoleDetail]:
        """One role as in the config; ``ETag`` is the configuration's version."""
        instants(request, "as_of")
        if as_of is not None:
            moment = aware(as_of)
            found = await anyio.to_thread.run_sync(_role_as_of, contexts, role, moment)
        else:
            await wait_for(request, wait)
            found = await read_one(
                request, "assistant", CONFIG_ID, lambda conn: role_from_read_models(conn, role)
            )
        if found is None:
            raise ProblemError(404, f"there is no role {role!r}")
        return Response(found, headers=etag(found.config_version))

    @get("/roles/{role:str}/history", guards=[READ], responses=problems(404))
    async def role_history(
        self,
        request: Request[Any, Any, Any],
        role: RoleKeyPath,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        wait: WaitFor = None,
    ) -> RoleHistoryPage:
        """Every change of the role's model, settings and prompt, oldest first: each
        field before and after, who, when, why and the correlation id."""
        await wait_for(request, wait)
        after = decode_cursor(cursor) or 0
        if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after < 2**31:
            raise ProblemError(400, "cursor is not one this API returned")
        async with snapshot(request) as conn:
            if await views.role(conn, role) is None:
                raise ProblemError(404, f"there is no role {role!r}")
            rows = await views.role_history(conn, role, after, limit + 1)
        items = [history_from_row(r) for r in rows[:limit]]
        next_cursor = encode_cursor(items[-1].sequence) if len(rows) > limit else None
        return RoleHistoryPage(items=items, next_cursor=next_cursor)


def _lookups(contexts: Contexts, moment: datetime | None) -> tuple[Any, Any]:
    """What a role's prompt and registry reference were at ``moment`` (None: now), from
    the write side: a command's answer, or an as-of view."""
    return (
        lambda prompt_id: contexts.assistant.prompt_or_none(prompt_id, moment),
        lambda ref: registry_target(ref, contexts.registry, moment),
    )


def _shown(
    contexts: Contexts, config: AssistantConfig | None, moment: datetime | None = None
) -> ConfigOut:
    return config_view(config, *_lookups(contexts, moment), as_of=moment)


def _config_as_of(contexts: Contexts, moment: datetime) -> ConfigOut:
    return _shown(contexts, contexts.assistant.get_config_as_of(moment), moment)


def _role_as_of(contexts: Contexts, key: str, moment: datetime) -> RoleDetail | None:
    config = contexts.assistant.get_config_as_of(moment)
    role = config.get_role(key) if config is not None else None
    if config is None or role is None:
        return None
    return role_detail(role_view(role, *_lookups(contexts, moment)), config, as_of=moment)
