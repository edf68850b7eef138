"""A/B experiments of prompt versions: /api/v1/ai-assistant/experiments, …/resolve (F11.4.5).

``POST …/experiments`` starts one (201, ``Location``); at most one runs per role (409).
``GET …/resolve?role=&unit=`` answers what an agent should run now for a unit: while an
experiment of the role runs, the variant ``assign(salt, unit, weights)`` gives; else the
role's ``production`` version. It is a GET with a side effect on purpose: the first time
a unit of a running experiment is resolved, its exposure is recorded (``Experiment.Exposed``)
— the exposure must be logged at the moment the variant is handed out, or the results
would count units that never saw their variant (or miss some that did); a separate
"exposed" call could be forgotten or fail apart from the resolve. It is safe to repeat
(the same unit always gets the same variant and is exposed once) but not cacheable
(``Cache-Control: no-store``), and it needs a writer's key. Outcomes are posted to
``…/experiments/{id}/outcomes``; ``…/results`` analyses them; ``…/conclude`` (admins: it
moves ``production``) stops assignment and moves the winner's version to production.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import anyio.to_thread
import msgspec
import polars as pl
from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, Parameter, PathParameter

from api.auth import READ, WRITE
from api.commands import (
    expected_version,
    idempotency,
    principal_of,
    run_command,
    to_builtins,
)
from api.consistency import WaitFor, wait_for
from api.contract import (
    COMMAND_HEADERS,
    CREATED_HEADERS,
    ONE_AGGREGATE_HEADERS,
    POSITION_HEADER,
    IdempotencyKey,
    IfMatch,
    etag,
    problems,
    read_one,
    snapshot,
    strict_body,
)
from api.controllers.assistant_config import BASE, require_admin
from api.controllers.prompt_tests import LLM_RETRY_AFTER
from api.errors import ProblemError
from api.experiment_schemas import (
    CompleteIn,
    CompleteOut,
    ConcludeIn,
    ConclusionOut,
    ExperimentIn,
    ExperimentOut,
    ExperimentPage,
    OutcomeIn,
    OutcomeOut,
    ResolveOut,
    ResultsOut,
    VariantOut,
)
from api.pagination import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, encode_cursor
from api.resolution import Resolver
from application.base import Response as CommandResponse
from application.contexts import Contexts
from application.ports import LLMError
from domain.assistant.config import ROLE_KEY_PATTERN
from domain.assistant.experiment import CONCLUDED, RUNNING, Experiment, Exposure
from domain.assistant.experiments import ExperimentDefinition, Variant
from domain.errors import ConflictError, NotFoundError
from domain.metadata import acting_as
from projections import assistant as views

EXPERIMENTS = f"{BASE}/experiments"
RoleQuery = Annotated[str, Parameter(pattern=ROLE_KEY_PATTERN, description="the role's key")]
UnitQuery = Annotated[
    str,
    Parameter(min_length=1, max_length=200, description="the unit's id (user, session, agent)"),
]
StatusQuery = Annotated[str | None, Parameter(pattern=f"^({RUNNING}|{CONCLUDED})$")]


def _definition(row: Any) -> dict[str, Any]:
    value = row["definition"]
    decoded: dict[str, Any] = msgspec.json.decode(value) if isinstance(value, str) else value
    return decoded


def _variants(definition: dict[str, Any]) -> list[VariantOut]:
    return [
        VariantOut(i, v["prompt_id"], v["prompt_version"], v["weight"], v["settings"])
        for i, v in enumerate(definition["variants"])
    ]


def experiment_out(experiment: Experiment, exposed: int = 0) -> ExperimentOut:
    definition = experiment.definition.as_dict()
    return ExperimentOut(
        id=experiment.id,
        role=experiment.role,
        status=experiment.status,
        variants=_variants(definition),
        unit=definition["unit"],
        metric=definition["metric"],
        min_sample=definition["min_sample"],
        salt=definition["salt"],
        reason=experiment.reason,
        winner=experiment.winner,
        conclusion=experiment.conclusion,
        exposed=exposed,
        started_at=experiment.created_on,
        started_by=experiment.started_by,
        concluded_at=None,
        concluded_by=None,
        version=experiment.version,
    )


def experiment_from_row(row: Any) -> ExperimentOut:
    definition = _definition(row)
    return ExperimentOut(
        id=row["id"],
        role=row["role"],
        status=row["status"],
        variants=_variants(definition),
        unit=definition["unit"],
        metric=definition["metric"],
        min_sample=definition["min_sample"],
        salt=definition["salt"],
        reason=row["reason"],
        winner=row["winner"],
        conclusion=row["conclusion"],
        exposed=int(row["exposed"]),
        started_at=row["started_at"],
        started_by=row["started_by"],
        concluded_at=row["concluded_at"],
        concluded_by=row["concluded_by"],
        version=row["version"],
    )


async def _experiment_row(request: Request[Any, Any, Any], experiment_id: UUID) -> Any:
    row = await read_one(
        request, "assistant", experiment_id, lambda conn: views.experiment(conn, experiment_id)
    )
    if row is None:
        raise ProblemError(404, f"experiment {experiment_id} not found")
    return row


RESOLVER = Resolver()


async def _resolve(
    request: Request[Any, Any, Any], contexts: Contexts, role: str, unit: str
) -> tuple[dict[str, Any], bool, dict[str, str]]:
    """What ``role`` runs for ``unit`` (``api.resolution``); whether this call recorded
    the unit's exposure (a unit the read model knows exposed costs no write); the
    headers."""
    async with request.app.state.pool.acquire() as conn:
        row = await views.resolution(conn, role, unit)
    try:
        found = RESOLVER.answer(role, unit, row)
    except NotFoundError as exc:
        raise ProblemError(404, str(exc)) from None
    except ConflictError as exc:
        raise ProblemError(409, str(exc)) from None
    headers = {"Cache-Control": "no-store"}
    recorded = False
    if row is not None and row["experiment_id"] is not None and not row["exposed"]:
        principal = principal_of(request)
        correlation_id = request.scope["state"]["correlation_id"]
        experiment_id = found["experiment_id"]
        definition = RESOLVER.definition(row["experiment_id"], row["definition"])

        def expose() -> tuple[bool, int]:
            with acting_as(principal.name, correlation_id):
                return contexts.assistant.expose(experiment_id, definition, unit)

        recorded, position = await anyio.to_thread.run_sync(expose)
        headers[POSITION_HEADER] = f"assistant:{position}"
    return found, recorded, headers


class ExperimentController(Controller):
    path = BASE
    tags = ["assistant"]

    @get(
        "/resolve",
        guards=[WRITE],
        response_headers=COMMAND_HEADERS,
        responses=problems(404, 409),
    )
    async def resolve(
        self,
        request: Request[Any, Any, Any],
        role: RoleQuery,
        unit: UnitQuery,
        contexts: Contexts,
        wait: WaitFor = None,
    ) -> Response[ResolveOut]:
        """What an agent of ``role`` should run now for ``unit``: the prompt version (a
        number) and the effective model and settings. While an experiment of the role
        runs, the unit's variant (sticky), and the unit's first resolve records its
        exposure (a GET with a side effect: see the module docstring); else the role's
        production version. Read from the read models (``wait_for`` to see a change of
        one's own). 404 unknown role, 409 a role running no production version."""
        await wait_for(request, wait)
        found, recorded, headers = await _resolve(request, contexts, role, unit)
        out = msgspec.convert({**found, "exposure_recorded": recorded}, ResolveOut)
        return Response(out, headers=headers)

    @post(
        "/roles/{role:str}/complete",
        guards=[WRITE],
        status_code=200,
        responses=problems(404, 409),
    )
    async def complete(
        self,
        request: Request[Any, Any, Any],
        role: Annotated[str, PathParameter(pattern=ROLE_KEY_PATTERN)],
        data: CompleteIn,
        contexts: Contexts,
        wait: WaitFor = None,
    ) -> Response[CompleteOut]:
        """Resolve (as ``GET …/resolve``, exposure included), render the version with
        ``variables`` and call its model: the output, and the experiment id and unit to
        post the outcome to. 400 naming ``variables`` when one is missing; 503 with
        ``Retry-After`` when the provider fails (the exposure stays recorded: the unit
        was assigned)."""
        data = await strict_body(request, CompleteIn) or data
        await wait_for(request, wait)
        found, recorded, headers = await _resolve(request, contexts, role, data.unit)
        try:
            ran = await anyio.to_thread.run_sync(
                lambda: contexts.assistant.complete(found, data.variables, contexts.registry)
            )
        except LLMError as exc:
            raise ProblemError(
                503,
                f"the model's provider failed: {exc}",
                headers={"Retry-After": LLM_RETRY_AFTER},
            ) from None
        out = msgspec.convert({**found, **ran, "exposure_recorded": recorded}, CompleteOut)
        return Response(out, headers=headers)

    @post(
        "/experiments",
        guards=[WRITE],
        status_code=201,
        response_headers=CREATED_HEADERS,
        responses=problems(409, 422),
    )
    async def start_experiment(
        self,
        request: Request[Any, Any, Any],
        data: ExperimentIn,
        contexts: Contexts,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ExperimentOut]:
        """Start an A/B experiment of prompt versions of a role (every bad field named in
        one 400; each variant a version of a prompt of the role); 409 when the role
        already runs one. The salt is drawn now unless given, and never changes."""
        data = await strict_body(request, ExperimentIn) or data
        idem = await idempotency(request, idempotency_key)
        variants = [
            Variant(v.prompt_id, v.prompt_version, v.weight, v.settings.given())
            for v in data.variants
        ]
        return await run_command(
            request,
            lambda: contexts.assistant.start_experiment(
                role=data.role,
                variants=variants,
                unit=data.unit,
                metric=data.metric,
                min_sample=data.min_sample,
                salt=data.salt,
                reason=data.reason,
                registry=contexts.registry,
                idem=idem,
                respond=lambda e: (201, to_builtins(experiment_out(e))),
            ),
            location=lambda body: f"{EXPERIMENTS}/{body['id']}",
        )

    @get("/experiments", guards=[READ], responses=problems())
    async def list_experiments(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        role: Annotated[str | None, Parameter(pattern=ROLE_KEY_PATTERN)] = None,
        status: StatusQuery = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        wait: WaitFor = None,
    ) -> ExperimentPage:
        """Experiments, newest first, with their definition, status and exposures."""
        await wait_for(request, wait)
        before = decode_cursor(cursor)
        if before is not None and (
            not isinstance(before, int) or isinstance(before, bool) or not 0 < before < 2**63
        ):
            raise ProblemError(400, "cursor is not one this API returned")
        async with snapshot(request) as conn:
            rows = await views.experiments(
                conn, role=role, status=status, before_position=before, limit=limit + 1
            )
        more = len(rows) > limit
        return ExperimentPage(
            items=[experiment_from_row(r) for r in rows[:limit]],
            next_cursor=encode_cursor(rows[limit - 1]["created_position"]) if more else None,
        )

    @get(
        "/experiments/{experiment_id:uuid}",
        guards=[READ],
        response_headers=ONE_AGGREGATE_HEADERS,
        responses=problems(404),
    )
    async def get_experiment(
        self, request: Request[Any, Any, Any], experiment_id: FromPath[UUID], wait: WaitFor = None
    ) -> Response[ExperimentOut]:
        """One experiment: definition (salt included), status, winner, exposures."""
        await wait_for(request, wait)
        found = experiment_from_row(await _experiment_row(request, experiment_id))
        return Response(found, headers=etag(found.version))

    @get("/experiments/{experiment_id:uuid}/results", guards=[READ], responses=problems(404))
    async def results(
        self, request: Request[Any, Any, Any], experiment_id: FromPath[UUID], wait: WaitFor = None
    ) -> ResultsOut:
        """Per variant: units, rate or mean with its interval, the difference and lift
        against the control with Holm-adjusted p-values, significance once every variant
        has ``min_sample``; and the sample ratio mismatch check."""
        await wait_for(request, wait)
        row = await _experiment_row(request, experiment_id)
        definition = ExperimentDefinition.from_dict(_definition(row))
        async with snapshot(request) as conn:
            records = await views.experiment_records(conn, experiment_id, definition.metric)
        frame = pl.DataFrame(
            {
                "unit_id": [r["unit_id"] for r in records],
                "variant": [r["variant"] for r in records],
                "outcome": [r["outcome"] for r in records],
            },
            schema={"unit_id": pl.String, "variant": pl.Int64, "outcome": pl.Float64},
        )
        analysed = await anyio.to_thread.run_sync(definition.analyse, frame)
        body = to_builtins(analysed)
        body["experiment_id"] = str(experiment_id)
        return msgspec.convert(body, ResultsOut)

    @post(
        "/experiments/{experiment_id:uuid}/outcomes",
        guards=[WRITE],
        status_code=200,
        response_headers=COMMAND_HEADERS,
        responses=problems(404, 409),
    )
    async def record_outcome(
        self,
        request: Request[Any, Any, Any],
        experiment_id: FromPath[UUID],
        data: OutcomeIn,
        contexts: Contexts,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[OutcomeOut]:
        """A unit's outcome: 0 or 1 for a rate, a number for a score (several are reduced:
        a rate's unit succeeded if any was 1, a score's is their mean). 409 for a unit
        never exposed or a concluded experiment."""
        data = await strict_body(request, OutcomeIn) or data
        idem = await idempotency(request, idempotency_key)

        def respond(exposure: Exposure, variant: int) -> CommandResponse:
            out = OutcomeOut(experiment_id, data.unit, variant, data.value, exposure.outcomes)
            return 200, to_builtins(out)

        return await run_command(
            request,
            lambda: contexts.assistant.record_outcome(
                experiment_id, data.unit, data.value, idem=idem, respond=respond
            ),
        )

    @post(
        "/experiments/{experiment_id:uuid}/conclude",
        guards=[WRITE],
        status_code=200,
        response_headers=COMMAND_HEADERS,
        responses=problems(404, 409),
    )
    async def conclude(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        experiment_id: FromPath[UUID],
        data: ConcludeIn,
        contexts: Contexts,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ConclusionOut]:
        """Conclude with a winner (admins: it moves ``production``): assignment stops, the
        winner's version becomes the production version of its prompt and the role runs
        that prompt, in one transaction; a winner that ran with settings of its own is
        first made a new version with them (``prompt_version`` names what production runs
        now). Again with the same winner: 200, nothing new."""
        data = await strict_body(request, ConcludeIn) or data
        require_admin(request, "concluding an experiment (it moves production)")
        expected = expected_version(request, data.expected_version)
        idem = await idempotency(request, idempotency_key)

        def respond(experiment: Experiment, changed: bool) -> CommandResponse:
            assert experiment.winner is not None and experiment.production_version is not None
            chosen = experiment.definition.variants[experiment.winner]
            out = ConclusionOut(
                id=experiment.id,
                status=experiment.status,
                winner=experiment.winner,
                prompt_id=chosen.prompt_id,
                prompt_version=experiment.production_version,
                reason=experiment.conclusion or "",
                changed=changed,
                version=experiment.version,
            )
            return 200, to_builtins(out)

        return await run_command(
            request,
            lambda: contexts.assistant.conclude_experiment(
                experiment_id,
                data.winner,
                data.reason,
                registry=contexts.registry,
                expected_version=expected,
                idem=idem,
                respond=respond,
            ),
        )
