"""Model versions, metrics, deployments, rollbacks, comparison and lineage (F11.1.2–F11.1.5).

The contract (``api/contract.py``, ``docs/registry.md``): every command here changes an
existing Model aggregate, so each takes ``If-Match`` (stale: 409 with ``current_version``)
and ``Idempotency-Key``, and answers ``ETag`` = the model aggregate's version — never a
version *number*, which is in the body as ``version``. ``POST …/versions`` answers a
``Location`` (``GET …/versions/{version}``) that can be followed at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.params import FromPath, Parameter, PathParameter

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
    problems,
    read_one,
    snapshot,
)
from api.errors import ProblemError
from api.pagination import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, encode_cursor
from api.registry_schemas import (
    ComparedValue,
    DeploymentPage,
    DeploymentResult,
    DeployRequest,
    LineageGraph,
    MetricsCreate,
    ModelVersionDetail,
    RollbackRequest,
    StatusChange,
    VersionComparison,
    VersionCreate,
)
from api.registry_views import (
    deployment_from_row,
    deployment_out,
    version_detail_from_read_models,
    version_out,
)
from application.base import Response as CommandResponse
from application.contexts import Contexts
from domain.registry.model import Model
from domain.registry.versions import Deployment
from projections import assistant, registry_lineage, registry_models, registry_versions

MAX_COMPARE = 20
MAX_VERSION = 2**31 - 1  # the read models store version numbers as PostgreSQL integers

VersionNumber = Annotated[
    int, PathParameter(ge=1, le=MAX_VERSION, description="the version's number, from 1")
]
VersionList = Annotated[
    str,
    Parameter(
        pattern=rf"^[1-9][0-9]{{0,8}}(,[1-9][0-9]{{0,8}}){{1,{MAX_COMPARE - 1}}}$",
        description=f"2 to {MAX_COMPARE} version numbers separated by commas, e.g. `1,2,3`",
    ),
]


LINEAGE_TEXT_TYPES = {"mermaid": "text/vnd.mermaid", "dot": "text/vnd.graphviz"}


@dataclass
class LineageOperation(Operation):
    """The lineage's 200 answers JSON, Mermaid or DOT (by ``format``): all three listed."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse) and ok.content is not None:
            for media_type in LINEAGE_TEXT_TYPES.values():
                ok.content[media_type] = OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))


def model_version_of(body: Any) -> Any:
    """The ETag of a command's body: the model aggregate's version."""
    return body.get("model_version")


def deployment_response(model: Model, deployment: Deployment) -> CommandResponse:
    result = DeploymentResult(
        model_id=model.id,
        model_version=model.version,
        deployment=deployment_out(deployment),
        active=dict(model.active),
    )
    return 200, to_builtins(result)


def version_response(status: int) -> Any:
    def respond(model: Model, version: int | None) -> CommandResponse:
        number = model.latest_version if version is None else version
        assert number is not None
        body = to_builtins(version_out(model.get_version(number)))
        body["model_id"], body["model_version"] = str(model.id), model.version
        return status, body

    return respond


def parse_versions(text: str) -> list[int]:
    """The numbers of ``versions`` (its pattern, checked by the framework, keeps each
    below ``MAX_VERSION``), once each."""
    return list(dict.fromkeys(int(part) for part in text.split(",")))


class ModelVersionController(Controller):
    path = "/api/v1/ai/models/{model_id:uuid}"
    tags = ["registry"]

    @post(
        "/versions",
        guards=[WRITE],
        status_code=201,
        response_headers=CREATED_HEADERS,
        responses=problems(404, 409, 422),
    )
    async def register_version(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        model_id: FromPath[UUID],
        data: VersionCreate,
        contexts: Contexts,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ModelVersionDetail]:
        """Add the next version with its artifact, parameters, metrics and lineage.
        ``Location`` (the new version) is readable at once."""
        idem = await idempotency(request, idempotency_key)
        expected = expected_version(request, data.expected_version)
        return await run_command(
            request,
            lambda: contexts.registry.register_version(
                model_id,
                artifact=data.artifact,
                framework=data.framework,
                parameters=data.parameters,
                metrics=data.metrics,
                lineage=msgspec.to_builtins(data.lineage),
                description=data.description,
                expected_version=expected,
                idem=idem,
                respond=version_response(201),
            ),
            location=lambda body: f"/api/v1/ai/models/{model_id}/versions/{body['version']}",
            etag=model_version_of,
        )

    @get(
        "/versions/{version:int}",
        guards=[READ],
        response_headers=ONE_AGGREGATE_HEADERS,
        responses=problems(404),
    )
    async def get_version(
        self,
        request: Request[Any, Any, Any],
        model_id: FromPath[UUID],
        version: VersionNumber,
        wait: WaitFor = None,
    ) -> Response[ModelVersionDetail]:
        """One version with its metrics history and lineage; ETag is the model's version."""
        await wait_for(request, wait)
        found = await read_one(
            request,
            "registry",
            model_id,
            lambda conn: version_detail_from_read_models(conn, model_id, version),
        )
        if found is None:
            raise ProblemError(404, f"model {model_id} has no version {version}")
        return Response(found, headers=etag(found.model_version))

    @post(
        "/versions/{version:int}/metrics",
        guards=[WRITE],
        status_code=201,
        response_headers=COMMAND_HEADERS,
        responses=problems(404, 409, 422),
    )
    async def record_metrics(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        model_id: FromPath[UUID],
        version: VersionNumber,
        data: MetricsCreate,
        contexts: Contexts,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ModelVersionDetail]:
        """Record an evaluation of a version; the history is kept, the latest shown (F11.1.4)."""
        idem = await idempotency(request, idempotency_key)
        expected = expected_version(request, None)
        respond = version_response(201)
        return await run_command(
            request,
            lambda: contexts.registry.record_metrics(
                model_id,
                version,
                data.metrics,
                data.source,
                expected_version=expected,
                idem=idem,
                respond=lambda m, _: respond(m, version),
            ),
            etag=model_version_of,
        )

    @post(
        "/versions/{version:int}/stage",
        guards=[WRITE],
        status_code=200,
        response_headers=COMMAND_HEADERS,
        responses=problems(404, 409, 422),
    )
    async def change_status(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        model_id: FromPath[UUID],
        version: VersionNumber,
        data: StatusChange,
        contexts: Contexts,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ModelVersionDetail]:
        """Put a version that is not active back to staging, or archive it."""
        idem = await idempotency(request, idempotency_key)
        expected = expected_version(request, data.expected_version)
        respond = version_response(200)
        return await run_command(
            request,
            lambda: contexts.registry.set_status(
                model_id,
                version,
                data.status,
                data.reason,
                expected_version=expected,
                idem=idem,
                respond=lambda m, _: respond(m, version),
            ),
            etag=model_version_of,
        )

    @post(
        "/deploy",
        guards=[WRITE],
        status_code=200,
        response_headers=COMMAND_HEADERS,
        responses=problems(404, 409, 422),
    )
    async def deploy(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        model_id: FromPath[UUID],
        data: DeployRequest,
        contexts: Contexts,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[DeploymentResult]:
        """One-click deploy: make a version active in an environment (F11.1.5)."""
        idem = await idempotency(request, idempotency_key)
        expected = expected_version(request, data.expected_version)
        return await run_command(
            request,
            lambda: contexts.registry.deploy(
                model_id,
                data.version,
                data.environment,
                data.reason,
                expected_version=expected,
                idem=idem,
                respond=deployment_response,
            ),
            etag=model_version_of,
        )

    @post(
        "/rollback",
        guards=[WRITE],
        status_code=200,
        response_headers=COMMAND_HEADERS,
        responses=problems(404, 409, 422),
    )
    async def rollback(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        model_id: FromPath[UUID],
        data: RollbackRequest,
        contexts: Contexts,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[DeploymentResult]:
        """Re-activate an earlier version of an environment: a new event, never an edit."""
        idem = await idempotency(request, idempotency_key)
        expected = expected_version(request, data.expected_version)
        return await run_command(
            request,
            lambda: contexts.registry.rollback(
                model_id,
                data.environment,
                data.version,
                data.reason,
                expected_version=expected,
                idem=idem,
                respond=deployment_response,
            ),
            etag=model_version_of,
        )

    @get("/deployments", guards=[READ], responses=problems(404))
    async def deployments(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        model_id: FromPath[UUID],
        environment: Literal["production", "staging"] | None = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        wait: WaitFor = None,
    ) -> DeploymentPage:
        """The full deployment history, oldest first."""
        await wait_for(request, wait)
        after = decode_cursor(cursor) or 0
        if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after < 2**31:
            raise ProblemError(400, "cursor is not one this API returned")
        async with snapshot(request) as conn:
            await _require_model(conn, model_id)
            rows = await registry_versions.deployments_of(
                conn, model_id, environment=environment, after_sequence=after, limit=limit + 1
            )
        items = [deployment_from_row(r) for r in rows[:limit]]
        return DeploymentPage(
            items, encode_cursor(items[-1].sequence) if len(rows) > limit else None
        )

    @get("/versions/compare", guards=[READ], responses=problems(404))
    async def compare(
        self,
        request: Request[Any, Any, Any],
        model_id: FromPath[UUID],
        versions: VersionList,
        wait: WaitFor = None,
    ) -> VersionComparison:
        """Metrics and parameters of versions side by side, differences marked."""
        await wait_for(request, wait)
        numbers = parse_versions(versions)
        async with snapshot(request) as conn:
            await _require_model(conn, model_id)
            rows = {r["version"]: r for r in await registry_versions.versions_of(conn, model_id)}
        missing = [n for n in numbers if n not in rows]
        if missing:
            raise ProblemError(
                404, f"model {model_id} has no version {', '.join(map(str, missing))}"
            )
        table = registry_versions.compare(
            numbers,
            {n: msgspec.json.decode(rows[n]["metrics"]) for n in numbers},
            {n: msgspec.json.decode(rows[n]["parameters"]) for n in numbers},
        )
        return VersionComparison(
            model_id=model_id,
            versions=numbers,
            metrics=[msgspec.convert(r, ComparedValue) for r in table["metrics"]],
            parameters=[msgspec.convert(r, ComparedValue) for r in table["parameters"]],
            statuses={str(n): rows[n]["status"] for n in numbers},
        )

    @get(
        "/lineage",
        guards=[READ],
        operation_class=LineageOperation,
        responses={
            200: ResponseSpec(
                LineageGraph,
                description="The graph as JSON (`format=json`), or as Mermaid "
                "(`text/vnd.mermaid`) or DOT (`text/vnd.graphviz`) text.",
                generate_examples=False,
            ),
            **problems(404),
        },
    )
    async def lineage(
        self,
        request: Request[Any, Any, Any],
        model_id: FromPath[UUID],
        format: Literal["json", "mermaid", "dot"] = "json",  # noqa: A002 - the API's word
        wait: WaitFor = None,
    ) -> Response[Any]:
        """The lineage graph as nodes and edges, or as Mermaid or DOT text (F11.1.3), with
        the assistant's prompt versions that run on its versions."""
        await wait_for(request, wait)
        async with snapshot(request) as conn:
            model = await _require_model(conn, model_id)
            versions = [
                {**dict(v), "lineage": msgspec.json.decode(v["lineage"])}
                for v in await registry_versions.versions_of(conn, model_id)
            ]
            deployments = await registry_versions.deployments_of(conn, model_id)
            derived = await registry_versions.derived_models(conn, model_id, model["name"])
            prompts = [
                {**dict(p), "labels": msgspec.json.decode(p["labels"])}
                for p in await assistant.prompts_running_on(conn, model_id)
            ]
        graph = registry_lineage.build_graph(model, versions, deployments, derived, prompts)
        if format == "mermaid":
            text = registry_lineage.to_mermaid(graph)
            return Response(text, media_type=LINEAGE_TEXT_TYPES[format])
        if format == "dot":
            return Response(registry_lineage.to_dot(graph), media_type=LINEAGE_TEXT_TYPES[format])
        return Response(msgspec.convert({"model_id": model_id, **graph}, LineageGraph))


async def _require_model(conn: Any, model_id: UUID) -> Any:
    model = await registry_models.get_model(conn, model_id)
    if model is None:
        raise ProblemError(404, f"model {model_id} not found")
    return model
