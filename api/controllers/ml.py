"""ML resources: /api/v1/ml/datasets, /api/v1/ml/train, /api/v1/ml/jobs, /api/v1/ml/artifacts.

Commands answer with an ``Aimm-Position`` (read-your-writes through ``?wait_for=``);
``POST /train`` answers 202 with the job and its ``Location``. Queries read the
``training`` read models. ``GET /jobs/{id}/metrics`` is the whole curve as JSON, or,
with ``Accept: text/event-stream``, a Server-Sent Events stream: one ``point`` event
per metric point (``id`` = the event's version, so ``Last-Event-ID`` resumes), and a
final ``status`` event when the job has ended. The stream polls the read model every
``STREAM_POLL_SECONDS`` (a point reaches a client well within a second of its event).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from api.auth import READ, WRITE
from api.commands import idempotency, run_command, to_builtins
from api.consistency import wait_for
from api.controllers.models import WaitFor
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
from api.pagination import DEFAULT_LIMIT, check_limit, decode_cursor, encode_cursor
from application.base import Response as CommandResponse
from application.contexts import Contexts
from domain.ml.datasets import Dataset
from domain.ml.hyperparameters import MONITORS
from domain.ml.runs import STATUSES, TERMINAL, TrainingRun
from infrastructure import artifacts
from projections import training as views

STREAM_POLL_SECONDS = 0.25
MAX_COMPARE = 10
ARTIFACT_KEY = re.compile(r"^sha256:[0-9a-f]{64}$")
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


def _keyset(cursor: str | None) -> tuple[datetime, UUID] | None:
    raw = decode_cursor(cursor)
    if raw is None:
        return None
    try:
        at, key = raw
        return datetime.fromisoformat(at), UUID(key)
    except (TypeError, ValueError):
        raise ProblemError(400, "cursor is not one this API returned") from None


def _page_cursor(rows: list[Any], limit: int, column: str) -> str | None:
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor([last[column].isoformat(), str(last["id"])])


async def _job_row(request: Request[Any, Any, Any], job_id: UUID) -> Any:
    async with request.app.state.pool.acquire() as conn:
        rows = await views.get_jobs(conn, [job_id])
    if not rows:
        raise ProblemError(404, f"training job {job_id} not found")
    return rows[0]


class DatasetController(Controller):
    path = "/api/v1/ml/datasets"
    tags = ["ml training"]

    @post("/", guards=[WRITE], status_code=201)
    async def register_dataset(
        self, request: Request[Any, Any, Any], data: DatasetCreate, contexts: Contexts
    ) -> Response[Any]:
        """Build a dataset from stored bars with Polars and register it (F11.5.1)."""
        idem = await idempotency(request)

        def respond(dataset: Dataset) -> CommandResponse:
            return 201, {
                "id": str(dataset.id),
                "name": dataset.name,
                "spec": dataset.spec,
                "feature_columns": dataset.feature_columns,
                "target": dataset.target,
                "row_count": dataset.row_count,
                "train_rows": dataset.train_rows,
                "validation_rows": dataset.validation_rows,
                "validation_start": dataset.validation_start,
                "content_hash": dataset.content_hash,
                "size_bytes": dataset.size_bytes,
                "sources": dataset.sources,
                "version": dataset.version,
            }

        return await run_command(
            request,
            lambda: contexts.training.register_dataset(
                data.name, data.spec(), contexts.predictions, idem=idem, respond=respond
            ),
            location=lambda body: f"{self.path}/{body['id']}",
        )

    @get("/", guards=[READ])
    async def list_datasets(
        self,
        request: Request[Any, Any, Any],
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
        wait: WaitFor = None,
    ) -> DatasetPage:
        """Registered datasets, oldest first."""
        await wait_for(request, wait)
        limit = check_limit(limit)
        async with request.app.state.pool.acquire() as conn:
            rows = await views.list_datasets(conn, _keyset(cursor), limit + 1)
        return DatasetPage(
            items=[dataset_out(r) for r in rows[:limit]],
            next_cursor=_page_cursor(rows, limit, "registered_at"),
        )

    @get("/{dataset_id:uuid}", guards=[READ])
    async def get_dataset(
        self, request: Request[Any, Any, Any], dataset_id: UUID, wait: WaitFor = None
    ) -> DatasetOut:
        await wait_for(request, wait)
        async with request.app.state.pool.acquire() as conn:
            row = await views.get_dataset(conn, dataset_id)
        if row is None:
            raise ProblemError(404, f"dataset {dataset_id} not found")
        return dataset_out(row)


def _accepted(run: TrainingRun) -> CommandResponse:
    body = JobAccepted(
        id=run.id,
        status=run.status,
        dataset_id=UUID(run.dataset_id),
        dataset_hash=run.dataset_hash,
        model_type=run.model_type,
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

    @post("/train", guards=[WRITE], status_code=202)
    async def train(
        self, request: Request[Any, Any, Any], data: TrainRequest, contexts: Contexts
    ) -> Response[Any]:
        """Queue a training job (F11.5.3, F11.5.4); a worker picks it up."""
        idem = await idempotency(request)
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

    @get("/jobs", guards=[READ])
    async def list_jobs(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        status: Annotated[str | None, Parameter(description=", ".join(STATUSES))] = None,
        dataset_id: UUID | None = None,
        model_type: Literal["mlp_classifier", "mlp_regressor"] | None = None,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
        wait: WaitFor = None,
    ) -> JobPage:
        """Training jobs, oldest first, filtered by status, dataset and model type."""
        await wait_for(request, wait)
        if status is not None and status not in STATUSES:
            raise ProblemError(
                400,
                f"status must be one of {', '.join(STATUSES)}",
                errors=[{"field": "status", "source": "query", "message": "unknown status"}],
            )
        limit = check_limit(limit)
        async with request.app.state.pool.acquire() as conn:
            rows = await views.list_jobs(
                conn,
                status=status,
                dataset_id=dataset_id,
                model_type=model_type,
                after=_keyset(cursor),
                limit=limit + 1,
            )
        return JobPage(
            items=[job_out(r) for r in rows[:limit]],
            next_cursor=_page_cursor(rows, limit, "requested_at"),
        )

    @get("/jobs/compare", guards=[READ])
    async def compare(
        self,
        request: Request[Any, Any, Any],
        ids: Annotated[str, Parameter(description="comma-separated job ids (2-10)")],
        metric: Annotated[
            str, Parameter(description=f"{', '.join(MONITORS)}; default val_loss")
        ] = "val_loss",
        mode: Literal["auto", "min", "max"] = "auto",
        wait: WaitFor = None,
    ) -> CompareOut:
        """Runs side by side: differing settings, best and final metrics, curves aligned
        by epoch, and the best run by ``metric`` (F11.5.5)."""
        await wait_for(request, wait)
        job_ids = _parse_ids(ids)
        if metric not in MONITORS:
            raise ProblemError(
                400,
                f"metric must be one of {', '.join(MONITORS)}",
                errors=[{"field": "metric", "source": "query", "message": "unknown metric"}],
            )
        async with request.app.state.pool.acquire() as conn:
            rows = {r["id"]: r for r in await views.get_jobs(conn, job_ids)}
            missing = [str(i) for i in job_ids if i not in rows]
            if missing:
                raise ProblemError(404, f"training jobs not found: {', '.join(missing)}")
            curves = {i: await views.points(conn, i, epochs_only=True) for i in job_ids}
        jobs = [job_out(rows[i]) for i in job_ids]
        return _comparison(jobs, curves, metric, mode)

    @get("/jobs/{job_id:uuid}", guards=[READ])
    async def get_job(
        self, request: Request[Any, Any, Any], job_id: UUID, wait: WaitFor = None
    ) -> JobOut:
        """A job: settings, dataset and hash, status, timestamps, best metrics, artifact,
        the registered model version."""
        await wait_for(request, wait)
        return job_out(await _job_row(request, job_id))

    @get("/jobs/{job_id:uuid}/metrics", guards=[READ])
    async def metrics(
        self,
        request: Request[Any, Any, Any],
        job_id: UUID,
        attempt: Annotated[int | None, Parameter(ge=1)] = None,
        wait: WaitFor = None,
    ) -> Response[Any]:
        """The metric curve as JSON, or live as Server-Sent Events (F11.5.2)."""
        await wait_for(request, wait)
        row = await _job_row(request, job_id)
        if "text/event-stream" in request.headers.get("accept", ""):
            after = request.headers.get("last-event-id", "0")
            start = int(after) if after.isdigit() else 0
            return ServerSentEvent(_stream(request, job_id, start))
        async with request.app.state.pool.acquire() as conn:
            rows = await views.points(conn, job_id, attempt)
        body = MetricsOut(
            job_id=job_id,
            status=row["status"],
            attempt=attempt or row["attempt"],
            points=[point_out(r) for r in rows],
        )
        return Response(to_builtins(body))

    @post("/jobs/{job_id:uuid}/stop", guards=[WRITE], status_code=202)
    async def stop(
        self,
        request: Request[Any, Any, Any],
        job_id: UUID,
        contexts: Contexts,
        data: StopRequest | None = None,
    ) -> Response[Any]:
        """Stop a job: a queued one at once (200), a running one within seconds (202)."""
        idem = await idempotency(request)

        def respond(run: TrainingRun) -> CommandResponse:
            body = StopOut(run.id, run.status, run.stop_requested, run.version)
            return (200 if run.finished else 202), to_builtins(body)

        reason = data.reason if data is not None else ""
        return await run_command(
            request,
            lambda: contexts.training.stop_run(job_id, reason, idem=idem, respond=respond),
        )

    @get("/artifacts/{key:str}", guards=[READ])
    async def artifact(self, request: Request[Any, Any, Any], key: str) -> Response[bytes]:
        """An artifact's bytes (dataset rows, trained model) by its content hash."""
        if not ARTIFACT_KEY.match(key):
            raise ProblemError(404, f"artifact {key!r} not found")
        async with request.app.state.pool.acquire() as conn:
            found = await artifacts.fetch(conn, key)
        if found is None:
            raise ProblemError(404, f"artifact {key!r} not found")
        media_type, data = found
        return Response(data, media_type=media_type, headers={"ETag": f'"{key}"'})


def _parse_ids(ids: str) -> list[UUID]:
    parts = [p.strip() for p in ids.split(",") if p.strip()]
    try:
        parsed = [UUID(p) for p in parts]
    except ValueError:
        raise ProblemError(
            400,
            "ids must be comma-separated job ids",
            errors=[{"field": "ids", "source": "query", "message": "not a uuid"}],
        ) from None
    if not 2 <= len(parsed) <= MAX_COMPARE or len(set(parsed)) != len(parsed):
        raise ProblemError(
            400,
            f"compare 2 to {MAX_COMPARE} different jobs",
            errors=[{"field": "ids", "source": "query", "message": "2-10 distinct ids"}],
        )
    return parsed


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
    """Each new point of the job's current attempt, then its final status."""
    pool = request.app.state.pool
    while True:
        async with pool.acquire() as conn:
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
        await asyncio.sleep(STREAM_POLL_SECONDS)
