"""Model registry resource: /api/v1/ai/models (the contract: ``docs/registry.md``).

Every command here follows ``api/contract.py``: ``If-Match`` on a change of an existing
model (stale: 409 with ``current_version``), ``Idempotency-Key`` on every POST and PATCH,
``ETag`` = the model aggregate's version on every response that shows or changes it, and a
``Location`` that can be followed at once (:func:`api.contract.read_one`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import anyio.to_thread
from litestar import Controller, Request, Response, get, patch, post
from litestar.params import FromPath, Parameter

from api.auth import READ, WRITE
from api.commands import expected_version, idempotency, principal_of, run_command, to_builtins
from api.consistency import WaitFor, wait_for
from api.contract import (
    COMMAND_HEADERS,
    CREATED_HEADERS,
    ONE_AGGREGATE_HEADERS,
    IdempotencyKey,
    IfMatch,
    etag,
    problems,
    read_one,
    snapshot,
)
from api.errors import ProblemError
from api.pagination import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, encode_cursor
from api.registry_schemas import ModelDetail, ModelSummaryPage
from api.registry_views import (
    detail_from_aggregate,
    detail_from_read_models,
    model_out,
    summary_from_row,
)
from api.schemas import ModelCreate, ModelOut, ModelUpdate
from application.base import Response as CommandResponse
from application.contexts import Contexts
from domain.registry.model import Model
from projections import registry_versions

__all__ = ["ModelController", "WaitFor", "aware"]


def aware(moment: datetime) -> datetime:
    """A timestamp without a zone is taken as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class ModelController(Controller):
    path = "/api/v1/ai/models"
    tags = ["registry"]

    @post(
        "/",
        guards=[WRITE],
        status_code=201,
        response_headers=CREATED_HEADERS,
        responses=problems(409, 422),
    )
    async def register_model(
        self,
        request: Request[Any, Any, Any],
        data: ModelCreate,
        contexts: Contexts,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ModelOut]:
        """Register a model under a unique name (F11.1.1); a taken name is a 409.
        ``Location`` is readable at once."""
        idem = await idempotency(request, idempotency_key)
        owner = data.owner or principal_of(request).name

        def respond(model: Model) -> CommandResponse:
            return 201, to_builtins(model_out(model))

        return await run_command(
            request,
            lambda: contexts.registry.register_model(
                name=data.name,
                kind=data.kind,
                task=data.task,
                description=data.description,
                owner=owner,
                tags=data.tags,
                idem=idem,
                respond=respond,
            ),
            location=lambda body: f"{self.path}/{body['id']}",
        )

    @get("/", guards=[READ], responses=problems())
    async def list_models(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        kind: Literal["llm", "ml"] | None = None,
        status: Literal["staging", "active", "archived"] | None = None,
        tag: Annotated[str | None, Parameter(max_length=64)] = None,
        q: Annotated[str | None, Parameter(max_length=200)] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        wait: WaitFor = None,
    ) -> ModelSummaryPage:
        """All models by name, with latest and active versions; filters (F11.1.1)."""
        await wait_for(request, wait)
        after = decode_cursor(cursor)
        if after is not None and not isinstance(after, str):
            raise ProblemError(400, "cursor is not one this API returned")
        async with snapshot(request) as conn:
            rows = await registry_versions.list_summaries(
                conn, kind=kind, status=status, tag=tag, q=q, after_name=after, limit=limit + 1
            )
        items = [summary_from_row(r) for r in rows[:limit]]
        next_cursor = encode_cursor(items[-1].name) if len(rows) > limit else None
        return ModelSummaryPage(items=items, next_cursor=next_cursor)

    @get(
        "/{model_id:uuid}",
        guards=[READ],
        response_headers=ONE_AGGREGATE_HEADERS,
        responses=problems(404),
    )
    async def get_model(
        self,
        request: Request[Any, Any, Any],
        model_id: FromPath[UUID],
        contexts: Contexts,
        as_of: datetime | None = None,
        wait: WaitFor = None,
    ) -> Response[ModelDetail]:
        """A model with every version, its metrics and deployments, read in one snapshot;
        ETag is the model's version. ``as_of`` answers from the model's events up to then."""
        if as_of is not None:
            when = aware(as_of)
            model = await anyio.to_thread.run_sync(
                lambda: contexts.registry.get_model_as_of(model_id, when)
            )
            detail = detail_from_aggregate(model, when)
        else:
            await wait_for(request, wait)
            found = await read_one(
                request,
                "registry",
                model_id,
                lambda conn: detail_from_read_models(conn, model_id),
            )
            if found is None:
                raise ProblemError(404, f"model {model_id} not found")
            detail = found
        return Response(detail, headers=etag(detail.version))

    @patch(
        "/{model_id:uuid}",
        guards=[WRITE],
        response_headers=COMMAND_HEADERS,
        responses=problems(404, 409, 422),
    )
    async def update_model(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        model_id: FromPath[UUID],
        data: ModelUpdate,
        contexts: Contexts,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ModelOut]:
        """Change a model's task, description, owner or tags (If-Match for concurrency)."""
        expected = expected_version(request, data.expected_version)
        idem = await idempotency(request, idempotency_key)
        return await run_command(
            request,
            lambda: contexts.registry.update_model(
                model_id,
                expected_version=expected,
                task=data.task,
                description=data.description,
                owner=data.owner,
                tags=data.tags,
                idem=idem,
                respond=lambda model: (200, to_builtins(model_out(model))),
            ),
        )
