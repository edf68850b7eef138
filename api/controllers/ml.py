"""ML resources: /api/v1/ml/datasets, /api/v1/ml/train, /api/v1/ml/jobs, /api/v1/ml/artifacts.

The shared contract (``api/contract.py``) applies to every operation here; what is
particular to this context (``docs/training.md`` has the whole page):

- Commands answer with an ``Aimm-Position``; ``ETag`` is the changed aggregate's version
  (dataset, run). ``POST /train`` answers 202 with the job and its ``Location``;
  ``POST /jobs/{id}/stop`` 200 when the job ended at once (it was queued), 202 when a
  worker will end it. Every POST takes an ``Idempotency-Key``; stop takes ``If-Match``
  (a stale one is 409 with ``current_version``; a running job's version moves with every
  metric point, so a client usually stops without it).
- Reads by id (dataset, job, metrics) go through ``read_one``: an id whose creation is
  in the log but not projected yet is waited for (bounded), so a ``Location`` is
  readable at once. Reads of several tables for one response (a job with its curve, a
  comparison) run in one repeatable-read ``snapshot``.
- ``GET /jobs/{id}/metrics`` is the whole curve as JSON, or, with ``Accept:
  text/event-stream``, a Server-Sent Events stream: one ``point`` event per metric point
  (``id`` = the event's version, so ``Last-Event-ID`` resumes), and a final ``status``
  event when the job has ended.
- Artifacts are served as ``application/octet-stream``, their ``ETag`` the content hash.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, cast
from uuid import UUID

import asyncpg
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import ResponseHeader
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, Schema
from litestar.params import HeaderParameter, Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

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
from api.ml_schemas import (
    CompareBest,
    CompareOut,
    DatasetCreate,
    DatasetOut,
    DatasetPage,
    JobAccepted,
    JobOut,
    JobPage,
    MetricsOut,
    PointOut,
    RegisteredVersion,
    StopOut,
    StopRequest,
    TrainRequest,
    given,
)
from api.pagination import (
    DEFAULT_LIMIT,
    Cursor,
    Limit,
    Order,
    decode_time_keyset,
    next_time_cursor,
)
from application.base import Response as CommandResponse
from application.contexts import Contexts
from domain.ml.datasets import Dataset
from domain.ml.features import Target
from domain.ml.hyperparameters import MONITORS, Mode, ModelType, Monitor
from domain.ml.runs import TERMINAL, Status, TrainingRun
from infrastructure import artifacts
from projections import training as views

STREAM_POLL_SECONDS = 0.25
MAX_COMPARE = 10
ARTIFACT_PATTERN = r"^sha256:[0-9a-f]{64}$"
ARTIFACT_KEY = re.compile(ARTIFACT_PATTERN)
_UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
IDS_PATTERN = rf"^{_UUID}(,{_UUID}){{1,{MAX_COMPARE - 1}}}$"
_decode_json = msgspec.json.Decoder().decode


def _json(value: Any) -> Any:
    return None if value is None else _decode_json(value)


def dataset_out(row: Any) -> DatasetOut:
    return DatasetOut(
        id=row["id"],
        name=row["name"],
        tickers=list(row["tickers"]),
        start=row["start_date"],
        end=row["end_date"],
        spec=_json(row["spec"]),
        feature_columns=_json(row["feature_columns"]),
        target=row["target"],
        row_count=row["row_count"],
        train_rows=row["train_rows"],
        validation_rows=row["validation_rows"],
        validation_start=row["validation_start"],
        content_hash=row["content_hash"],
        size_bytes=row["size_bytes"],
        sources=_json(row["sources"]),
        registered_at=row["registered_at"],
        registered_by=row["registered_by"],
        version=row["version"],
    )


def dataset_from_aggregate(dataset: Dataset) -> DatasetOut:
    """The dataset a command just registered, in the shape the read model serves it."""
    spec = dataset.spec
    return DatasetOut(
        id=dataset.id,
        name=dataset.name,
        tickers=list(spec["tickers"]),
        start=date.fromisoformat(spec["start"]),
        end=date.fromisoformat(spec["end"]),
        spec=spec,
        feature_columns=dataset.feature_columns,
        target=cast(Target, dataset.target),  # checked when the dataset was built
        row_count=dataset.row_count,
        train_rows=dataset.train_rows,
        validation_rows=dataset.validation_rows,
        validation_start=date.fromisoformat(dataset.validation_start),
        content_hash=dataset.content_hash,
        size_bytes=dataset.size_bytes,
        sources=dataset.sources,
        registered_at=dataset.created_on,
        registered_by=dataset.registered_by,
        version=dataset.version,
    )


JSON_COLUMNS = ("hyperparameters", "early_stopping", "best_metrics", "final_metrics", "last_point")


def job_out(row: Any) -> JobOut:
    values = dict(row)
    for column in JSON_COLUMNS:
        values[column] = _json(values[column])
    values["early_stopping_decision"] = _json(values.pop("decision"))
    model_id = values.pop("registered_model_id")
    model_name = values.pop("registered_model_name")
    version = values.pop("registered_model_version")
    values["registered_model_version"] = (
        None if model_id is None else RegisteredVersion(model_id, model_name, version)
    )
    return JobOut(**values)


def point_out(row: Any) -> PointOut:
    values = dict(row)
    values["early_stopping"] = _json(values["early_stopping"])
    return PointOut(**values)


async def _job_row(request: Request[Any, Any, Any], job_id: UUID) -> Any:
    """The job's row, waiting for its projection if the job is in the log; else 404."""

    async def fetch(conn: asyncpg.Connection) -> Any:
        rows = await views.get_jobs(conn, [job_id])
        return rows[0] if rows else None

    row = await read_one(request, "training", job_id, fetch)
    if row is None:
        raise ProblemError(404, f"training job {job_id} not found")
    return row


@dataclass
class _EventStreamToo(Operation):
    """The 200 of ``…/metrics`` is JSON or, asked for with ``Accept``, an SSE stream."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if ok is not None and not isinstance(ok, dict) and hasattr(ok, "content"):
            ok.content = {
                **(ok.content or {}),
                "text/event-stream": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.STRING,
                        description="`point` events (id: the event's version), then one "
                        "`status` event",
                    )
                ),
            }


@dataclass
class _StopResponses(Operation):
    """Stop's 200 (ended at once) carries the same headers as its 202."""

    def __post_init__(self) -> None:
        responses = self.responses or {}
        accepted, ok = responses.get("202"), responses.get("200")
        if hasattr(accepted, "headers") and hasattr(ok, "headers"):
            ok.headers = accepted.headers  # type: ignore[union-attr]


ARTIFACT_ETAG = ResponseHeader(
    name="ETag",
    description='The artifact\'s content hash as an entity tag ("sha256:…").',
    documentation_only=True,
)


class DatasetController(Controller):
    path = "/api/v1/ml/datasets"
    tags = ["ml training"]

    @post(
        "/",
        guards=[WRITE],
        status_code=201,
        response_headers=CREATED_HEADERS,
        responses=problems(409, 422),
    )
    async def register_dataset(
        self,
        request: Request[Any, Any, Any],
        data: DatasetCreate,
        contexts: Contexts,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[DatasetOut]:
        """Build a dataset from stored bars with Polars and register it (F11.5.1).

        409: the name is taken. 422: ``end`` before ``start``, ``validation_start``
        outside them, a ticker without bars, too few rows."""
        _check_dates(data)
        idem = await idempotency(request, idempotency_key)

        def respond(dataset: Dataset) -> CommandResponse:
            return 201, to_builtins(dataset_from_aggregate(dataset))

        return await run_command(
            request,
            lambda: contexts.training.register_dataset(
                data.name, data.spec(), contexts.predictions, idem=idem, respond=respond
            ),
            location=lambda body: f"{self.path}/{body['id']}",
        )

    @get("/", guards=[READ], responses=problems())
    async def list_datasets(
        self,
        request: Request[Any, Any, Any],
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        wait: WaitFor = None,
    ) -> DatasetPage:
        """Registered datasets, oldest first."""
        await wait_for(request, wait)
        async with snapshot(request) as conn:
            rows = await views.list_datasets(conn, decode_time_keyset(cursor), limit + 1)
        return DatasetPage(
            items=[dataset_out(r) for r in rows[:limit]],
            next_cursor=next_time_cursor(rows, limit, "registered_at"),
        )

    @get(
        "/{dataset_id:uuid}",
        guards=[READ],
        response_headers=ONE_AGGREGATE_HEADERS,
        responses=problems(404),
    )
    async def get_dataset(
        self, request: Request[Any, Any, Any], dataset_id: UUID, wait: WaitFor = None
    ) -> Response[DatasetOut]:
        """A dataset: its resolved spec, counts, hash and sources; ETag its version."""
        await wait_for(request, wait)
        row = await read_one(
            request, "training", dataset_id, lambda conn: views.get_dataset(conn, dataset_id)
        )
        if row is None:
            raise ProblemError(404, f"dataset {dataset_id} not found")
        return Response(dataset_out(row), headers=etag(row["version"]))


def _check_dates(data: DatasetCreate) -> None:
    """The rules across fields that JSON Schema cannot say: a 422 naming the fields."""
    errors = []
    if data.start > data.end:
        errors.append({"field": "end", "source": "body", "message": "must not be before start"})
    elif data.validation_start is not None and not (
        data.start <= data.validation_start <= data.end
    ):
        errors.append(
            {"field": "validation_start", "source": "body", "message": "must lie between "
             "start and end"}
        )  # fmt: skip
    if errors:
        raise ProblemError(422, "the dataset's dates do not fit together", errors=errors)


def _accepted(run: TrainingRun) -> CommandResponse:
    body = JobAccepted(
        id=run.id,
        status=cast(Status, run.status),
        dataset_id=UUID(run.dataset_id),
        dataset_hash=run.dataset_hash,
        model_type=cast(ModelType, run.model_type),
        model_name=run.model_name,
        hyperparameters=run.hyperparameters,
        early_stopping=run.early_stopping,
        version=run.version,
    )
    return 202, to_builtins(body)


def _flatten(job: JobOut) -> dict[str, Any]:
    """The settings of a job that a comparison lines up, as flat names."""
    settings: dict[str, Any] = {
        "model_type": job.model_type,
        "dataset_id": str(job.dataset_id),
        "dataset_hash": job.dataset_hash,
        "record_every_steps": job.record_every_steps,
    }
    settings.update({f"hyperparameters.{k}": v for k, v in job.hyperparameters.items()})
    for key, value in (job.early_stopping or {}).items():
        settings[f"early_stopping.{key}"] = value
    if job.early_stopping is None:
        settings["early_stopping"] = None
    return settings


class JobController(Controller):
    path = "/api/v1/ml"
    tags = ["ml training"]

    @post(
        "/train",
        guards=[WRITE],
        status_code=202,
        response_headers=CREATED_HEADERS,
        responses=problems(404, 422),
    )
    async def train(
        self,
        request: Request[Any, Any, Any],
        data: TrainRequest,
        contexts: Contexts,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[JobAccepted]:
        """Queue a training job (F11.5.3, F11.5.4); a worker picks it up.

        404: no such dataset. 422: a classifier on a dataset whose target is not
        ``direction``."""
        idem = await idempotency(request, idempotency_key)
        early_stopping = given(data.early_stopping)
        return await run_command(
            request,
            lambda: contexts.training.request_run(
                dataset_id=data.dataset_id,
                model_type=data.model_type,
                hyperparameters=given(data.hyperparameters) or {},
                early_stopping=early_stopping,
                record_every_steps=data.record_every_steps,
                model_name=data.model_name,
                idem=idem,
                respond=_accepted,
            ),
            location=lambda body: f"{self.path}/jobs/{body['id']}",
        )

    @get("/jobs", guards=[READ], responses=problems())
    async def list_jobs(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        status: Status | None = None,
        dataset_id: UUID | None = None,
        model_type: ModelType | None = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        order: Order = "oldest",
        wait: WaitFor = None,
    ) -> JobPage:
        """Training jobs by the time they were requested, oldest (or ``newest``) first,
        filtered by status, dataset and model type."""
        await wait_for(request, wait)
        async with snapshot(request) as conn:
            rows = await views.list_jobs(
                conn,
                status=status,
                dataset_id=dataset_id,
                model_type=model_type,
                after=decode_time_keyset(cursor),
                limit=limit + 1,
                newest_first=order == "newest",
            )
        return JobPage(
            items=[job_out(r) for r in rows[:limit]],
            next_cursor=next_time_cursor(rows, limit, "requested_at"),
        )

    @get("/jobs/compare", guards=[READ], responses=problems(404))
    async def compare(
        self,
        request: Request[Any, Any, Any],
        ids: Annotated[
            str,
            Parameter(
                pattern=IDS_PATTERN,
                description=f"2-{MAX_COMPARE} comma-separated job ids; a repeated id is "
                "compared once",
            ),
        ],
        metric: Monitor = "val_loss",
        mode: Mode = "auto",
        wait: WaitFor = None,
    ) -> CompareOut:
        """Runs side by side: differing settings, best and final metrics, curves aligned
        by epoch, and the best run by ``metric`` (F11.5.5)."""
        await wait_for(request, wait)
        job_ids = list(dict.fromkeys(UUID(i) for i in ids.split(",")))
        async with snapshot(request) as conn:
            rows = {r["id"]: r for r in await views.get_jobs(conn, job_ids)}
            missing = [str(i) for i in job_ids if i not in rows]
            if missing:
                raise ProblemError(404, f"training jobs not found: {', '.join(missing)}")
            curves = {i: await views.points(conn, i, epochs_only=True) for i in job_ids}
        jobs = [job_out(rows[i]) for i in job_ids]
        return _comparison(jobs, curves, metric, mode)

    @get(
        "/jobs/{job_id:uuid}",
        guards=[READ],
        response_headers=ONE_AGGREGATE_HEADERS,
        responses=problems(404),
    )
    async def get_job(
        self, request: Request[Any, Any, Any], job_id: UUID, wait: WaitFor = None
    ) -> Response[JobOut]:
        """A job: settings, dataset and hash, status, timestamps, best metrics, artifact,
        the registered model version; ETag the run's version."""
        await wait_for(request, wait)
        row = await _job_row(request, job_id)
        return Response(job_out(row), headers=etag(row["version"]))

    @get(
        "/jobs/{job_id:uuid}/metrics",
        guards=[READ],
        response_headers=ONE_AGGREGATE_HEADERS,
        responses=problems(404),
        operation_class=_EventStreamToo,
    )
    async def metrics(
        self,
        request: Request[Any, Any, Any],
        job_id: UUID,
        attempt: Annotated[int | None, Parameter(ge=1, le=1000)] = None,
        last_event_id: Annotated[
            str | None,
            HeaderParameter(
                name="Last-Event-ID",
                required=False,
                pattern=r"^[0-9]{1,9}$",
                description="SSE only: resume after the point with this id",
                schema_extra={"type": OpenAPIType.STRING, "one_of": None},
            ),
        ] = None,
        wait: WaitFor = None,
    ) -> Response[MetricsOut]:
        """The metric curve as JSON (ETag the run's version), or, with ``Accept:
        text/event-stream``, live as Server-Sent Events (F11.5.2)."""
        await wait_for(request, wait)
        if "text/event-stream" in request.headers.get("accept", ""):
            await _job_row(request, job_id)  # 404, or wait until the job is projected
            start = int(last_event_id) if last_event_id is not None else 0
            return ServerSentEvent(_stream(request, job_id, start))  # type: ignore[return-value]

        async def fetch(conn: asyncpg.Connection) -> tuple[Any, list[Any]] | None:
            rows = await views.get_jobs(conn, [job_id])
            if not rows:
                return None
            return rows[0], await views.points(conn, job_id, attempt)

        found = await read_one(request, "training", job_id, fetch)
        if found is None:
            raise ProblemError(404, f"training job {job_id} not found")
        row, points = found
        body = MetricsOut(
            job_id=job_id,
            status=row["status"],
            attempt=attempt or row["attempt"],
            points=[point_out(r) for r in points],
        )
        return Response(body, headers=etag(row["version"]))

    @post(
        "/jobs/{job_id:uuid}/stop",
        guards=[WRITE],
        status_code=202,
        response_headers=COMMAND_HEADERS,
        responses={
            200: ResponseSpec(StopOut, description="The job was queued: it ended at once."),
            **problems(404, 409, 422),
        },
        operation_class=_StopResponses,
    )
    async def stop(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        job_id: UUID,
        contexts: Contexts,
        data: StopRequest | None = None,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[StopOut]:
        """Stop a job: a queued one at once (200), a running one within seconds (202).

        409: the job has already ended, or ``If-Match`` names a stale version."""
        expected = expected_version(request, None)
        idem = await idempotency(request, idempotency_key)

        def respond(run: TrainingRun) -> CommandResponse:
            body = StopOut(run.id, cast(Status, run.status), run.stop_requested, run.version)
            return (200 if run.finished else 202), to_builtins(body)

        reason = data.reason if data is not None else ""
        return await run_command(
            request,
            lambda: contexts.training.stop_run(
                job_id, reason, expected_version=expected, idem=idem, respond=respond
            ),
        )

    @get(
        "/artifacts/{key:str}",
        guards=[READ],
        media_type="application/octet-stream",
        response_headers=[ARTIFACT_ETAG],
        responses=problems(404),
    )
    async def artifact(
        self,
        request: Request[Any, Any, Any],
        key: Annotated[
            str, Parameter(pattern=ARTIFACT_PATTERN, description="`sha256:` + 64 hex digits")
        ],
    ) -> Response[bytes]:
        """An artifact's bytes (dataset rows, trained model) by its content hash."""
        async with request.app.state.pool.acquire() as conn:
            found = await artifacts.fetch(conn, key)
        if found is None:
            raise ProblemError(404, f"artifact {key!r} not found")
        _, data = found
        return Response(data, media_type="application/octet-stream", headers={"ETag": f'"{key}"'})


def _comparison(
    jobs: list[JobOut], curves: dict[UUID, list[Any]], metric: str, mode: str
) -> CompareOut:
    settings = {str(j.id): _flatten(j) for j in jobs}
    names = sorted({name for s in settings.values() for name in s})
    differences = {
        name: {job: s.get(name) for job, s in settings.items()}
        for name in names
        if len({msgspec.json.encode(s.get(name)) for s in settings.values()}) > 1
    }
    by_epoch: dict[int, dict[str, Any]] = {}
    for job_id, rows in curves.items():
        for r in rows:
            by_epoch.setdefault(r["epoch"], {"epoch": r["epoch"]})[str(job_id)] = {
                m: r[m] for m in MONITORS
            }
    direction = mode if mode != "auto" else ("max" if metric.endswith("accuracy") else "min")
    best = CompareBest(metric=metric, mode=direction, job_id=None, value=None, epoch=None)
    for job_id, rows in curves.items():
        for r in rows:
            value = r[metric]
            if best.value is None or (
                value > best.value if direction == "max" else value < best.value
            ):
                best = CompareBest(metric, direction, job_id, value, r["epoch"])
    return CompareOut(
        jobs=jobs,
        differences=differences,
        best_metrics={str(j.id): j.best_metrics or {} for j in jobs},
        final_metrics={str(j.id): j.final_metrics or {} for j in jobs},
        curves=[by_epoch[e] for e in sorted(by_epoch)],
        best=best,
    )


async def _stream(
    request: Request[Any, Any, Any], job_id: UUID, after: int
) -> AsyncIterator[ServerSentEventMessage]:
    """Each new point of the job's current attempt, then its final status.

    Woken by the projector's notification for the training log (``ProjectionWatcher``),
    with its timer as the fallback: a point is sent as soon as its batch is projected."""
    pool = request.app.state.pool
    watcher = request.app.state.watcher
    while True:
        heard = watcher.heard("training")
        # one snapshot: the job's status and its points as of the same projector commit
        async with (
            pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            rows = await views.points(conn, job_id, None, after)
            job = (await views.get_jobs(conn, [job_id]))[0]
        for r in rows:
            after = r["version"]
            yield ServerSentEventMessage(
                data=msgspec.json.encode(to_builtins(point_out(r))).decode(),
                event="point",
                id=after,
            )
        if job["status"] in TERMINAL and not rows:
            final = job_out(job)
            yield ServerSentEventMessage(
                data=msgspec.json.encode(
                    {
                        "status": final.status,
                        "reason": final.reason,
                        "best_epoch": final.best_epoch,
                        "best_metrics": final.best_metrics,
                        "final_metrics": final.final_metrics,
                        "artifact_hash": final.artifact_hash,
                    }
                ).decode(),
                event="status",
                id=job["version"],
            )
            return
        if not rows:
            await watcher.advanced("training", since=heard)
