"""Read models of the training context: datasets, jobs, their metric curves, registrations.

- ``ml_datasets``: one row per registered dataset (spec, counts, hash, sources).
- ``training_jobs``: one row per run with its current status, attempt, worker, stop
  request, ending (reason, best/final metrics, artifact, early-stopping decision).
- ``training_points``: every metric point of every attempt, keyed by the event's
  version (the curve API shows the current attempt's by default).
- ``training_registrations``: the model version the registry recorded for a run,
  taken from ``Model.VersionRegistered`` events whose lineage names the run. It is
  its own table because the two logs are projected independently: neither waits for
  the other, and the job's detail joins them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, ClassVar
from uuid import UUID

import asyncpg
import msgspec

from projections.events import Event

_json = msgspec.json.Encoder()

DATASETS = "rm_ml_datasets"
JOBS = "rm_training_jobs"
POINTS = "rm_training_points"
REGISTRATIONS = "rm_training_registrations"


def _jsonb(value: Any) -> str:
    return _json.encode(value).decode()


class TrainingViews:
    name: ClassVar[str] = "training"
    contexts: ClassVar[tuple[str, ...]] = ("training", "registry")
    tables: ClassVar[Mapping[str, Sequence[str]]] = {
        "ml_datasets": (
            """
            CREATE TABLE {ml_datasets} (
                id uuid PRIMARY KEY,
                name text NOT NULL UNIQUE,
                tickers text[] NOT NULL,
                start_date date NOT NULL,
                end_date date NOT NULL,
                spec jsonb NOT NULL,
                feature_columns jsonb NOT NULL,
                target text NOT NULL,
                row_count integer NOT NULL,
                train_rows integer NOT NULL,
                validation_rows integer NOT NULL,
                validation_start date NOT NULL,
                content_hash text NOT NULL,
                size_bytes bigint NOT NULL,
                sources jsonb NOT NULL,
                registered_at timestamptz NOT NULL,
                registered_by text NOT NULL,
                version integer NOT NULL
            )
            """,
            "CREATE INDEX ON {ml_datasets} (registered_at, id)",
        ),
        "training_jobs": (
            """
            CREATE TABLE {training_jobs} (
                id uuid PRIMARY KEY,
                dataset_id uuid NOT NULL,
                dataset_name text NOT NULL,
                dataset_hash text NOT NULL,
                model_type text NOT NULL,
                model_name text NOT NULL,
                hyperparameters jsonb NOT NULL,
                early_stopping jsonb,
                record_every_steps integer,
                status text NOT NULL,
                attempt integer NOT NULL DEFAULT 0,
                worker text,
                start_reason text,
                requested_at timestamptz NOT NULL,
                requested_by text NOT NULL,
                started_at timestamptz,
                ended_at timestamptz,
                stop_requested boolean NOT NULL DEFAULT false,
                stop_reason text,
                stop_requested_by text,
                reason text,
                epochs_run integer,
                steps_run integer,
                best_epoch integer,
                best_metrics jsonb,
                final_metrics jsonb,
                last_point jsonb,
                artifact_hash text,
                artifact_epoch integer,
                decision jsonb,
                version integer NOT NULL,
                position bigint NOT NULL,
                updated_at timestamptz NOT NULL
            )
            """,
            "CREATE INDEX ON {training_jobs} (requested_at, id)",
            "CREATE INDEX ON {training_jobs} (status)",
        ),
        "training_points": (
            """
            CREATE TABLE {training_points} (
                run_id uuid NOT NULL,
                version integer NOT NULL,
                attempt integer NOT NULL,
                epoch integer NOT NULL,
                step integer NOT NULL,
                end_of_epoch boolean NOT NULL,
                loss double precision NOT NULL,
                accuracy double precision NOT NULL,
                val_loss double precision NOT NULL,
                val_accuracy double precision NOT NULL,
                learning_rate double precision NOT NULL,
                duration_ms double precision NOT NULL,
                early_stopping jsonb,
                recorded_at timestamptz NOT NULL,
                position bigint NOT NULL,
                PRIMARY KEY (run_id, version)
            )
            """,
        ),
        "training_registrations": (
            """
            CREATE TABLE {training_registrations} (
                run_id uuid PRIMARY KEY,
                model_id uuid NOT NULL,
                model_version integer NOT NULL,
                registered_at timestamptz NOT NULL
            )
            """,
        ),
    }

    async def apply(
        self, conn: asyncpg.Connection, tables: Mapping[str, str], events: Sequence[Event]
    ) -> None:
        for e in events:
            handler = _HANDLERS.get(e.type)
            if handler is not None:
                await handler(conn, tables, e)


async def _dataset(conn: asyncpg.Connection, t: Mapping[str, str], e: Event) -> None:
    d = e.data
    spec = d["spec"]
    await conn.execute(
        f"INSERT INTO {t['ml_datasets']} (id, name, tickers, start_date, end_date, spec, "
        "feature_columns, target, row_count, train_rows, validation_rows, validation_start, "
        "content_hash, size_bytes, sources, registered_at, registered_by, version) VALUES "
        "($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9, $10, $11, $12, $13, $14, "
        "$15::jsonb, $16, $17, $18) ON CONFLICT (id) DO NOTHING",
        e.aggregate_id,
        d["name"],
        list(spec["tickers"]),
        date.fromisoformat(spec["start"]),
        date.fromisoformat(spec["end"]),
        _jsonb(spec),
        _jsonb(d["feature_columns"]),
        d["target"],
        d["row_count"],
        d["train_rows"],
        d["validation_rows"],
        date.fromisoformat(d["validation_start"]),
        d["content_hash"],
        d["size_bytes"],
        _jsonb(d["sources"]),
        e.timestamp,
        e.meta.get("principal", "unknown"),
        e.version,
    )


async def _requested(conn: asyncpg.Connection, t: Mapping[str, str], e: Event) -> None:
    d = e.data
    await conn.execute(
        f"INSERT INTO {t['training_jobs']} (id, dataset_id, dataset_name, dataset_hash, "
        "model_type, model_name, hyperparameters, early_stopping, record_every_steps, status, "
        "requested_at, requested_by, version, position, updated_at) VALUES ($1, $2, $3, $4, "
        "$5, $6, $7::jsonb, $8::jsonb, $9, 'queued', $10, $11, $12, $13, $10) "
        "ON CONFLICT (id) DO NOTHING",
        e.aggregate_id,
        UUID(d["dataset_id"]),
        d["dataset_name"],
        d["dataset_hash"],
        d["model_type"],
        d["model_name"],
        _jsonb(d["hyperparameters"]),
        None if d["early_stopping"] is None else _jsonb(d["early_stopping"]),
        d["record_every_steps"],
        e.timestamp,
        e.meta.get("principal", "unknown"),
        e.version,
        e.position,
    )


async def _update(
    conn: asyncpg.Connection, t: Mapping[str, str], e: Event, sets: str, *args: Any
) -> None:
    """Set columns of a job (``sets`` uses $4 onwards) and advance its version."""
    await conn.execute(
        f"UPDATE {t['training_jobs']} SET {sets}, version = $2, position = $3, "
        "updated_at = $4 WHERE id = $1",
        e.aggregate_id,
        e.version,
        e.position,
        e.timestamp,
        *args,
    )


async def _started(conn: asyncpg.Connection, t: Mapping[str, str], e: Event) -> None:
    await _update(
        conn,
        t,
        e,
        "status = 'running', attempt = $5, worker = $6, start_reason = $7, "
        "started_at = coalesce(started_at, $4), last_point = NULL",
        e.data["attempt"],
        e.data["worker"],
        e.data["reason"],
    )


async def _point(conn: asyncpg.Connection, t: Mapping[str, str], e: Event) -> None:
    p = e.data["point"]
    await conn.execute(
        f"INSERT INTO {t['training_points']} (run_id, version, attempt, epoch, step, "
        "end_of_epoch, loss, accuracy, val_loss, val_accuracy, learning_rate, duration_ms, "
        "early_stopping, recorded_at, position) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
        "$10, $11, $12, $13::jsonb, $14, $15) ON CONFLICT (run_id, version) DO NOTHING",
        e.aggregate_id,
        e.version,
        e.data["attempt"],
        p["epoch"],
        p["step"],
        p["end_of_epoch"],
        p["loss"],
        p["accuracy"],
        p["val_loss"],
        p["val_accuracy"],
        p["learning_rate"],
        p["duration_ms"],
        None if p.get("early_stopping") is None else _jsonb(p["early_stopping"]),
        e.timestamp,
        e.position,
    )
    await _update(conn, t, e, "last_point = $5::jsonb", _jsonb(p))


async def _stop_requested(conn: asyncpg.Connection, t: Mapping[str, str], e: Event) -> None:
    await _update(
        conn,
        t,
        e,
        "stop_requested = true, stop_reason = $5, stop_requested_by = $6",
        e.data["reason"],
        e.meta.get("principal", "unknown"),
    )


async def _ended(conn: asyncpg.Connection, t: Mapping[str, str], e: Event) -> None:
    d = e.data
    await _update(
        conn,
        t,
        e,
        "status = $5, reason = $6, epochs_run = $7, steps_run = $8, best_epoch = $9, "
        "best_metrics = $10::jsonb, final_metrics = $11::jsonb, artifact_hash = $12, "
        "artifact_epoch = $13, decision = $14::jsonb, ended_at = $4",
        d["status"],
        d["reason"],
        d["epochs_run"],
        d["steps_run"],
        d["best_epoch"],
        _jsonb(d["best_metrics"]),
        _jsonb(d["final_metrics"]),
        d["artifact_hash"],
        d["artifact_epoch"],
        None if d.get("decision") is None else _jsonb(d["decision"]),
    )


async def _failed(conn: asyncpg.Connection, t: Mapping[str, str], e: Event) -> None:
    await _update(conn, t, e, "status = 'failed', reason = $5, ended_at = $4", e.data["reason"])


async def _version_registered(conn: asyncpg.Connection, t: Mapping[str, str], e: Event) -> None:
    run = (e.data.get("lineage") or {}).get("training_run")
    try:
        run_id = UUID(str(run)) if run else None
    except ValueError:
        return  # a hand-registered version naming a run by some other id
    if run_id is None:
        return
    await conn.execute(
        f"INSERT INTO {t['training_registrations']} (run_id, model_id, model_version, "
        "registered_at) VALUES ($1, $2, $3, $4) ON CONFLICT (run_id) DO NOTHING",
        run_id,
        e.aggregate_id,
        e.data["version"],
        e.timestamp,
    )


_HANDLERS = {
    "Dataset.Registered": _dataset,
    "TrainingRun.Requested": _requested,
    "TrainingRun.Started": _started,
    "TrainingRun.MetricsRecorded": _point,
    "TrainingRun.StopRequested": _stop_requested,
    "TrainingRun.Completed": _ended,
    "TrainingRun.EarlyStopped": _ended,
    "TrainingRun.Stopped": _ended,
    "TrainingRun.Failed": _failed,
    "Model.VersionRegistered": _version_registered,
}


# -- queries ---------------------------------------------------------------------------

DATASET_COLUMNS = (
    "id, name, tickers, start_date, end_date, spec, feature_columns, target, row_count, "
    "train_rows, validation_rows, validation_start, content_hash, size_bytes, sources, "
    "registered_at, registered_by, version"
)
JOB_COLUMNS = (
    "j.id, j.dataset_id, j.dataset_name, j.dataset_hash, j.model_type, j.model_name, "
    "j.hyperparameters, j.early_stopping, j.record_every_steps, j.status, j.attempt, "
    "j.worker, j.start_reason, j.requested_at, j.requested_by, j.started_at, j.ended_at, "
    "j.stop_requested, j.stop_reason, j.stop_requested_by, j.reason, j.epochs_run, "
    "j.steps_run, j.best_epoch, j.best_metrics, j.final_metrics, j.last_point, "
    "j.artifact_hash, j.artifact_epoch, j.decision, j.version, j.updated_at, "
    "r.model_id AS registered_model_id, r.model_version AS registered_model_version, "
    "m.name AS registered_model_name, q.lease_expires_at"
)
JOB_FROM = (
    f"{JOBS} j LEFT JOIN {REGISTRATIONS} r ON r.run_id = j.id "
    "LEFT JOIN rm_models m ON m.id = r.model_id "
    "LEFT JOIN aimm_job_queue q ON q.run_id = j.id AND q.state = 'leased'"
)
POINT_COLUMNS = (
    "version, attempt, epoch, step, end_of_epoch, loss, accuracy, val_loss, val_accuracy, "
    "learning_rate, duration_ms, early_stopping, recorded_at"
)


async def list_datasets(
    conn: asyncpg.Connection, after: tuple[Any, UUID] | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {DATASET_COLUMNS} FROM {DATASETS} "
        "WHERE ($1::timestamptz IS NULL OR (registered_at, id) > ($1, $2)) "
        "ORDER BY registered_at, id LIMIT $3",
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )


async def get_dataset(conn: asyncpg.Connection, dataset_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {DATASET_COLUMNS} FROM {DATASETS} WHERE id = $1", dataset_id
    )


async def list_jobs(  # noqa: PLR0913
    conn: asyncpg.Connection,
    *,
    status: str | None,
    dataset_id: UUID | None,
    model_type: str | None,
    after: tuple[Any, UUID] | None,
    limit: int,
    newest_first: bool = False,
) -> list[asyncpg.Record]:
    op, direction = ("<", " DESC") if newest_first else (">", "")
    return await conn.fetch(
        f"SELECT {JOB_COLUMNS} FROM {JOB_FROM} "
        "WHERE ($1::text IS NULL OR j.status = $1) AND ($2::uuid IS NULL OR j.dataset_id = $2) "
        "AND ($3::text IS NULL OR j.model_type = $3) "
        f"AND ($4::timestamptz IS NULL OR (j.requested_at, j.id) {op} ($4, $5)) "
        f"ORDER BY j.requested_at{direction}, j.id{direction} LIMIT $6",
        status,
        dataset_id,
        model_type,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )


async def get_jobs(conn: asyncpg.Connection, ids: Sequence[UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {JOB_COLUMNS} FROM {JOB_FROM} WHERE j.id = ANY($1::uuid[])", list(ids)
    )


async def points(
    conn: asyncpg.Connection,
    run_id: UUID,
    attempt: int | None = None,
    after_version: int = 0,
    epochs_only: bool = False,
) -> list[asyncpg.Record]:
    """A run's metric points in order: of ``attempt`` (default: the job's current one)."""
    return await conn.fetch(
        f"SELECT {POINT_COLUMNS} FROM {POINTS} WHERE run_id = $1 AND attempt = "
        f"coalesce($2::integer, (SELECT attempt FROM {JOBS} WHERE id = $1)) "
        "AND version > $3 AND ($4 = false OR end_of_epoch) ORDER BY version",
        run_id,
        attempt,
        after_version,
        epochs_only,
    )
