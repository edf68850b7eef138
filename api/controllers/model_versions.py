"""Model versions, metrics, deployments, rollbacks, comparison and lineage (F11.1.2–F11.1.5)."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, Parameter

from api.auth import READ, WRITE
from api.commands import expected_version, idempotency, run_command, to_builtins
from api.consistency import wait_for
from api.errors import ProblemError
from api.pagination import check_limit, decode_cursor, encode_cursor
from api.registry_schemas import (
    ComparedValue,
    DeploymentPage,
    DeploymentResult,
    DeployRequest,
    LineageGraph,
    MetricsCreate,
    RollbackRequest,
    StatusChange,
    VersionComparison,
    VersionCreate,
)
from api.registry_views import deployment_from_row, deployment_out, version_out
from application.base import Response as CommandResponse
from application.contexts import Contexts
from domain.registry.model import Model
from domain.registry.versions import Deployment
from projections import registry_lineage, registry_models, registry_versions

WaitFor = Annotated[str | None, Parameter(query="wait_for")]
MAX_COMPARE = 20


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
    try:
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        numbers = []
    if not 2 <= len(numbers) <= MAX_COMPARE or any(n < 1 for n in numbers):
        raise ProblemError(
            400,
            f"versions must list 2 to {MAX_COMPARE} version numbers, e.g. versions=1,2,3",
            errors=[{"field": "versions", "source": "query", "message": "invalid list"}],
        )
    return list(dict.fromkeys(numbers))


class ModelVersionController(Controller):
    path = "/api/v1/ai/models/{model_id:uuid}"
    tags = ["registry"]

    @post("/versions", guards=[WRITE], status_code=201)
    async def register_version(
        self,
        request: Request[Any, Any, Any],
        model_id: FromPath[UUID],
        data: VersionCreate,
        contexts: Contexts,
    ) -> Response[Any]:
        """Add the next version with its artifact, parameters, metrics and lineage."""
        idem = await idempotency(request)
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
        )

    @post("/versions/{version:int}/metrics", guards=[WRITE], status_code=201)
    async def record_metrics(
        self,
        request: Request[Any, Any, Any],
        model_id: FromPath[UUID],
        version: FromPath[int],
        data: MetricsCreate,
        contexts: Contexts,
    ) -> Response[Any]:
        """Record an evaluation of a version; the history is kept, the latest shown (F11.1.4)."""
        idem = await idempotency(request)
        respond = version_response(201)
        return await run_command(
            request,
            lambda: contexts.registry.record_metrics(
                model_id,
                version,
                data.metrics,
                data.source,
                idem=idem,
                respond=lambda m, _: respond(m, version),
            ),
        )

    @post("/versions/{version:int}/stage", guards=[WRITE], status_code=200)
    async def change_status(
        self,
        request: Request[Any, Any, Any],
        model_id: FromPath[UUID],
        version: FromPath[int],
        data: StatusChange,
        contexts: Contexts,
    ) -> Response[Any]:
        """Put a version that is not active back to staging, or archive it."""
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
                respond=lambda m, _: respond(m, version),
            ),
        )

    @post("/deploy", guards=[WRITE], status_code=200)
    async def deploy(
        self,
        request: Request[Any, Any, Any],
        model_id: FromPath[UUID],
        data: DeployRequest,
        contexts: Contexts,
    ) -> Response[Any]:
        """One-click deploy: make a version active in an environment (F11.1.5)."""
        idem = await idempotency(request)
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
        )

    @post("/rollback", guards=[WRITE], status_code=200)
    async def rollback(
        self,
        request: Request[Any, Any, Any],
        model_id: FromPath[UUID],
        data: RollbackRequest,
        contexts: Contexts,
    ) -> Response[Any]:
        """Re-activate an earlier version of an environment: a new event, never an edit."""
        idem = await idempotency(request)
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
        )

    @get("/deployments", guards=[READ])
    async def deployments(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        model_id: FromPath[UUID],
        environment: Literal["production", "staging"] | None = None,
        limit: int = 100,
        cursor: str | None = None,
        wait: WaitFor = None,
    ) -> DeploymentPage:
        """The full deployment history, oldest first."""
        await wait_for(request, wait)
        after = decode_cursor(cursor) or 0
        if not isinstance(after, int):
            raise ProblemError(400, "cursor is not one this API returned")
        limit = check_limit(limit)
        async with request.app.state.pool.acquire() as conn:
            await _require_model(conn, model_id)
            rows = await registry_versions.deployments_of(
                conn, model_id, environment=environment, after_sequence=after, limit=limit + 1
            )
        items = [deployment_from_row(r) for r in rows[:limit]]
        return DeploymentPage(
            items, encode_cursor(items[-1].sequence) if len(rows) > limit else None
        )

    @get("/versions/compare", guards=[READ])
    async def compare(
        self,
        request: Request[Any, Any, Any],
        model_id: FromPath[UUID],
        versions: str,
        wait: WaitFor = None,
    ) -> VersionComparison:
        """Metrics and parameters of versions side by side, differences marked."""
        await wait_for(request, wait)
        numbers = parse_versions(versions)
        async with request.app.state.pool.acquire() as conn:
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

    @get("/lineage", guards=[READ])
    async def lineage(
        self,
        request: Request[Any, Any, Any],
        model_id: FromPath[UUID],
        format: Literal["json", "mermaid", "dot"] = "json",  # noqa: A002 - the API's word
        wait: WaitFor = None,
    ) -> Response[Any]:
        """The lineage graph as nodes and edges, or as Mermaid or DOT text (F11.1.3)."""
        await wait_for(request, wait)
        async with request.app.state.pool.acquire() as conn:
            model = await _require_model(conn, model_id)
            versions = [
                {**dict(v), "lineage": msgspec.json.decode(v["lineage"])}
                for v in await registry_versions.versions_of(conn, model_id)
            ]
            deployments = await registry_versions.deployments_of(conn, model_id)
            derived = await registry_versions.derived_models(conn, model_id, model["name"])
        graph = registry_lineage.build_graph(model, versions, deployments, derived)
        if format == "mermaid":
            return Response(registry_lineage.to_mermaid(graph), media_type="text/vnd.mermaid")
        if format == "dot":
            return Response(registry_lineage.to_dot(graph), media_type="text/vnd.graphviz")
        return Response(msgspec.convert({"model_id": model_id, **graph}, LineageGraph))


async def _require_model(conn: Any, model_id: UUID) -> Any:
    model = await registry_models.get_model(conn, model_id)
    if model is None:
        raise ProblemError(404, f"model {model_id} not found")
    return model
