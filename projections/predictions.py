"""Read models of the predictions context: jobs, predictions, their bands and their scores.

- ``prediction_jobs``: one row per job: the request as pinned (ticker, market-data
  version, models, horizon, levels, cutoffs), status, attempt, worker, progress
  (``made`` of ``total`` predictions, per model), failure reason, timing.
- ``predictions``: one row per prediction (``Prediction.Made``): model and version,
  cutoff, the steps with their distribution, median, bands and volatility as JSON (what
  the dashboard draws), fitted parameters and method, and how many steps are scored.
- ``prediction_bands``: one row per (prediction, step, level): the band's price bounds,
  for the accuracy tables (coverage, width, interval and pinball scores) in SQL.
- ``prediction_scores``: one row per scored (prediction, step): the actual close of the
  target bar with the forecast's median and volatility, denormalised with the model,
  ticker, cutoff and time of the forecast so accuracy reads one table.

New rows of a batch go in with ``COPY``; a batch's scores update each prediction's
``scored_steps`` in one statement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, ClassVar
from uuid import UUID

import asyncpg
import msgspec

from projections.events import Event
from projections.registry_models import split_table

JOBS = "rm_prediction_jobs"
PREDICTIONS = "rm_predictions"
BANDS = "rm_prediction_bands"
SCORES = "rm_prediction_scores"

_encode = msgspec.json.Encoder().encode


def _jsonb(value: Any) -> str:
    return _encode(value).decode()


PREDICTION_COLUMNS = (
    "id", "job_id", "ticker", "model", "forecaster", "model_id", "model_version", "cutoff",
    "market_data_version", "last_close", "horizon", "levels", "steps", "params", "method",
    "made_at", "made_by", "scored_steps", "version", "position",
)  # fmt: skip
BAND_COLUMNS = ("prediction_id", "step", "level", "lower", "upper")
SCORE_COLUMNS = (
    "prediction_id", "step", "job_id", "ticker", "model", "model_version", "cutoff",
    "target_date", "last_close", "point", "actual", "vol_forecast", "vol_proxy", "made_at",
    "scored_at", "market_data_version", "position",
)  # fmt: skip


class PredictionViews:
    name: ClassVar[str] = "predictions"
    contexts: ClassVar[tuple[str, ...]] = ("predictions",)
    tables: ClassVar[Mapping[str, Sequence[str]]] = {
        "prediction_jobs": (
            """
            CREATE TABLE {prediction_jobs} (
                id uuid PRIMARY KEY,
                kind text NOT NULL,
                ticker text NOT NULL,
                market_data_version integer NOT NULL,
                models jsonb NOT NULL,
                horizon integer NOT NULL,
                levels jsonb NOT NULL,
                cutoffs integer NOT NULL,
                first_cutoff date NOT NULL,
                last_cutoff date NOT NULL,
                asked jsonb NOT NULL,
                status text NOT NULL,
                attempt integer NOT NULL DEFAULT 0,
                worker text,
                start_reason text,
                reason text,
                made integer NOT NULL DEFAULT 0,
                total integer NOT NULL,
                made_by_model jsonb NOT NULL DEFAULT '{{}}'::jsonb,
                seconds double precision,
                requested_at timestamptz NOT NULL,
                requested_by text NOT NULL,
                started_at timestamptz,
                ended_at timestamptz,
                version integer NOT NULL,
                position bigint NOT NULL,
                updated_at timestamptz NOT NULL
            )
            """,
            "CREATE INDEX ON {prediction_jobs} (requested_at, id)",
            "CREATE INDEX ON {prediction_jobs} (status)",
        ),
        "predictions": (
            """
            CREATE TABLE {predictions} (
                id uuid PRIMARY KEY,
                job_id uuid NOT NULL,
                ticker text NOT NULL,
                model text NOT NULL,
                forecaster text NOT NULL,
                model_id uuid,
                model_version integer,
                cutoff date NOT NULL,
                market_data_version integer NOT NULL,
                last_close double precision NOT NULL,
                horizon integer NOT NULL,
                levels jsonb NOT NULL,
                steps jsonb NOT NULL,
                params jsonb NOT NULL,
                method jsonb NOT NULL,
                made_at timestamptz NOT NULL,
                made_by text NOT NULL,
                scored_steps integer NOT NULL,
                version integer NOT NULL,
                position bigint NOT NULL
            )
            """,
            "CREATE INDEX ON {predictions} (ticker, model, cutoff, made_at)",
            "CREATE INDEX ON {predictions} (job_id, model, cutoff)",
            "CREATE INDEX ON {predictions} (ticker) WHERE scored_steps < horizon",
        ),
        "prediction_bands": (
            """
            CREATE TABLE {prediction_bands} (
                prediction_id uuid NOT NULL,
                step integer NOT NULL,
                level double precision NOT NULL,
                lower double precision NOT NULL,
                upper double precision NOT NULL,
                PRIMARY KEY (prediction_id, step, level)
            )
            """,
        ),
        "prediction_scores": (
            """
            CREATE TABLE {prediction_scores} (
                prediction_id uuid NOT NULL,
                step integer NOT NULL,
                job_id uuid NOT NULL,
                ticker text NOT NULL,
                model text NOT NULL,
                model_version integer,
                cutoff date NOT NULL,
                target_date date NOT NULL,
                last_close double precision NOT NULL,
                point double precision NOT NULL,
                actual double precision NOT NULL,
                vol_forecast double precision NOT NULL,
                vol_proxy double precision,
                made_at timestamptz NOT NULL,
                scored_at timestamptz NOT NULL,
                market_data_version integer NOT NULL,
                position bigint NOT NULL,
                PRIMARY KEY (prediction_id, step)
            )
            """,
            "CREATE INDEX ON {prediction_scores} (ticker, model, step, target_date)",
        ),
    }

    async def apply(
        self, conn: asyncpg.Connection, tables: Mapping[str, str], events: Sequence[Event]
    ) -> None:
        made: dict[UUID, Event] = {}
        scored: list[Event] = []
        for e in events:
            if e.type == "Prediction.Made":
                made[e.aggregate_id] = e
            elif e.type == "Prediction.Scored":
                scored.append(e)
            else:
                handler = _JOB_HANDLERS.get(e.type)
                if handler is not None:
                    await handler(conn, tables, e)
        if made:
            await _insert_predictions(conn, tables, made)
        if scored:
            await _insert_scores(conn, tables, scored, made)


async def _copy(
    conn: asyncpg.Connection, table: str, columns: Sequence[str], records: list[tuple[Any, ...]]
) -> None:
    if records:
        schema, name = split_table(table)
        await conn.copy_records_to_table(
            name, schema_name=schema, columns=list(columns), records=records
        )


async def _insert_predictions(
    conn: asyncpg.Connection, t: Mapping[str, str], made: Mapping[UUID, Event]
) -> None:
    rows, bands = [], []
    for e in made.values():
        d = e.data
        rows.append(
            (
                e.aggregate_id,
                UUID(d["job_id"]),
                d["ticker"],
                d["model"],
                d["forecaster"],
                UUID(d["model_id"]) if d["model_id"] else None,
                d["model_version"],
                date.fromisoformat(d["cutoff"]),
                d["market_data_version"],
                d["last_close"],
                d["horizon"],
                _jsonb(d["levels"]),
                _jsonb(d["steps"]),
                _jsonb(d["params"]),
                _jsonb(d["method"]),
                e.timestamp,
                e.meta.get("principal", "unknown"),
                0,
                e.version,
                e.position,
            )
        )
        for step in d["steps"]:
            for level, (lower, upper) in step["bands"].items():
                bands.append((e.aggregate_id, step["step"], float(level), lower, upper))
    await _copy(conn, t["predictions"], PREDICTION_COLUMNS, rows)
    await _copy(conn, t["prediction_bands"], BAND_COLUMNS, bands)


async def _insert_scores(
    conn: asyncpg.Connection, t: Mapping[str, str], scored: list[Event], made: Mapping[UUID, Event]
) -> None:
    missing = [e.aggregate_id for e in scored if e.aggregate_id not in made]
    known: dict[UUID, dict[str, Any]] = {
        e.aggregate_id: {**e.data, "made_at": e.timestamp} for e in made.values()
    }
    if missing:
        for row in await conn.fetch(
            f"SELECT id, job_id, ticker, model, model_version, cutoff, last_close, made_at "
            f"FROM {t['predictions']} WHERE id = ANY($1::uuid[])",
            missing,
        ):
            known[row["id"]] = {
                "job_id": str(row["job_id"]),
                "ticker": row["ticker"],
                "model": row["model"],
                "model_version": row["model_version"],
                "cutoff": row["cutoff"].isoformat(),
                "last_close": row["last_close"],
                "made_at": row["made_at"],
            }
    rows: list[tuple[Any, ...]] = []
    counts: dict[UUID, int] = {}
    versions: dict[UUID, tuple[int, int]] = {}
    for e in scored:
        p = known[e.aggregate_id]
        for s in e.data["scores"]:
            rows.append(
                (
                    e.aggregate_id,
                    s["step"],
                    UUID(p["job_id"]),
                    p["ticker"],
                    p["model"],
                    p["model_version"],
                    date.fromisoformat(p["cutoff"]),
                    date.fromisoformat(s["target_date"]),
                    p["last_close"],
                    s["point"],
                    s["actual"],
                    s["vol_forecast"],
                    s["vol_proxy"],
                    p["made_at"],
                    e.timestamp,
                    e.data["market_data_version"],
                    e.position,
                )
            )
        counts[e.aggregate_id] = counts.get(e.aggregate_id, 0) + len(e.data["scores"])
        versions[e.aggregate_id] = (e.version, e.position)
    await _copy(conn, t["prediction_scores"], SCORE_COLUMNS, rows)
    ids = list(counts)
    await conn.execute(
        f"UPDATE {t['predictions']} p SET scored_steps = p.scored_steps + u.n, "
        "version = u.version, position = u.position "
        "FROM unnest($1::uuid[], $2::integer[], $3::integer[], $4::bigint[]) "
        "AS u(id, n, version, position) WHERE p.id = u.id",
        ids,
        [counts[i] for i in ids],
        [versions[i][0] for i in ids],
        [versions[i][1] for i in ids],
    )


async def _job_requested(conn: asyncpg.Connection, t: Mapping[str, str], e: Event) -> None:
    d = e.data
    await conn.execute(
        f"INSERT INTO {t['prediction_jobs']} (id, kind, ticker, market_data_version, models, "
        "horizon, levels, cutoffs, first_cutoff, last_cutoff, asked, status, total, "
        "requested_at, requested_by, version, position, updated_at) VALUES ($1, $2, $3, $4, "
        "$5::jsonb, $6, $7::jsonb, $8, $9, $10, $11::jsonb, 'queued', $12, $13, $14, $15, "
        "$16, $13) ON CONFLICT (id) DO NOTHING",
        e.aggregate_id,
        d["kind"],
        d["ticker"],
        d["market_data_version"],
        _jsonb(d["models"]),
        d["horizon"],
        _jsonb(d["levels"]),
        len(d["cutoffs"]),
        date.fromisoformat(d["cutoffs"][0]),
        date.fromisoformat(d["cutoffs"][-1]),
        _jsonb(d["asked"]),
        len(d["cutoffs"]) * len(d["models"]),
        e.timestamp,
        e.meta.get("principal", "unknown"),
        e.version,
        e.position,
    )


async def _update(
    conn: asyncpg.Connection, t: Mapping[str, str], e: Event, sets: str, *args: Any
) -> None:
    """Set columns of a job (``sets`` uses $5 onwards) and advance its version."""
    await conn.execute(
        f"UPDATE {t['prediction_jobs']} SET {sets}, version = $2, position = $3, "
        "updated_at = $4 WHERE id = $1",
        e.aggregate_id,
        e.version,
        e.position,
        e.timestamp,
        *args,
    )


async def _job_started(conn: asyncpg.Connection, t: Mapping[str, str], e: Event) -> None:
    await _update(
        conn,
        t,
        e,
        "status = 'running', attempt = $5, worker = $6, start_reason = $7, "
        "started_at = coalesce(started_at, $4)",
        e.data["attempt"],
        e.data["worker"],
        e.data["reason"],
    )


async def _job_made(conn: asyncpg.Connection, t: Mapping[str, str], e: Event) -> None:
    count = len(e.data["prediction_ids"])
    await _update(
        conn,
        t,
        e,
        "made = made + $5, made_by_model = jsonb_set(made_by_model, ARRAY[$6::text], "
        "to_jsonb(coalesce((made_by_model ->> $6)::integer, 0) + $5))",
        count,
        e.data["model"],
    )


async def _job_completed(conn: asyncpg.Connection, t: Mapping[str, str], e: Event) -> None:
    await _update(
        conn, t, e, "status = 'completed', seconds = $5, ended_at = $4", e.data["seconds"]
    )


async def _job_failed(conn: asyncpg.Connection, t: Mapping[str, str], e: Event) -> None:
    await _update(conn, t, e, "status = 'failed', reason = $5, ended_at = $4", e.data["reason"])


_JOB_HANDLERS = {
    "PredictionJob.Requested": _job_requested,
    "PredictionJob.Started": _job_started,
    "PredictionJob.PredictionsMade": _job_made,
    "PredictionJob.Completed": _job_completed,
    "PredictionJob.Failed": _job_failed,
}


# -- queries ---------------------------------------------------------------------------

JOB_COLUMNS = (
    "j.id, j.kind, j.ticker, j.market_data_version, j.models, j.horizon, j.levels, j.cutoffs, "
    "j.first_cutoff, j.last_cutoff, j.asked, j.status, j.attempt, j.worker, j.start_reason, "
    "j.reason, j.made, j.total, j.made_by_model, j.seconds, j.requested_at, j.requested_by, "
    "j.started_at, j.ended_at, j.version, j.updated_at, q.lease_expires_at"
)
JOB_FROM = f"{JOBS} j LEFT JOIN aimm_job_queue q ON q.run_id = j.id AND q.state = 'leased'"
PREDICTION_SELECT = (
    "id, job_id, ticker, model, forecaster, model_id, model_version, cutoff, "
    "market_data_version, last_close, horizon, levels, steps, params, method, made_at, "
    "made_by, scored_steps, version"
)


async def get_jobs(conn: asyncpg.Connection, ids: Sequence[UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {JOB_COLUMNS} FROM {JOB_FROM} WHERE j.id = ANY($1::uuid[])", list(ids)
    )


async def list_jobs(  # noqa: PLR0913
    conn: asyncpg.Connection,
    *,
    status: str | None,
    ticker: str | None,
    kind: str | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
    newest_first: bool = False,
) -> list[asyncpg.Record]:
    op, direction = ("<", " DESC") if newest_first else (">", "")
    return await conn.fetch(
        f"SELECT {JOB_COLUMNS} FROM {JOB_FROM} "
        "WHERE ($1::text IS NULL OR j.status = $1) AND ($2::text IS NULL OR j.ticker = $2) "
        "AND ($3::text IS NULL OR j.kind = $3) "
        f"AND ($4::timestamptz IS NULL OR (j.requested_at, j.id) {op} ($4, $5)) "
        f"ORDER BY j.requested_at{direction}, j.id{direction} LIMIT $6",
        status,
        ticker,
        kind,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )


async def job_predictions(
    conn: asyncpg.Connection, job_id: UUID, after: tuple[str, date] | None, limit: int
) -> list[asyncpg.Record]:
    """A job's predictions by model and cutoff."""
    return await conn.fetch(
        f"SELECT {PREDICTION_SELECT} FROM {PREDICTIONS} WHERE job_id = $1 "
        "AND ($2::text IS NULL OR (model, cutoff) > ($2, $3)) ORDER BY model, cutoff LIMIT $4",
        job_id,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )


async def get_prediction(conn: asyncpg.Connection, prediction_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {PREDICTION_SELECT} FROM {PREDICTIONS} WHERE id = $1", prediction_id
    )


async def scores_of(conn: asyncpg.Connection, prediction_ids: Sequence[UUID]) -> list[Any]:
    return await conn.fetch(
        f"SELECT prediction_id, step, target_date, actual, point, vol_proxy, scored_at "
        f"FROM {SCORES} WHERE prediction_id = ANY($1::uuid[]) ORDER BY prediction_id, step",
        list(prediction_ids),
    )


async def models_of(conn: asyncpg.Connection, ticker: str) -> list[str]:
    """The models with predictions of ``ticker``, by a skip scan of the (ticker, model, …)
    index: one probe per model, however many predictions each has."""
    rows = await conn.fetch(
        "WITH RECURSIVE m AS ("
        f"  (SELECT model FROM {PREDICTIONS} WHERE ticker = $1 ORDER BY model LIMIT 1)"
        "  UNION ALL"
        f"  SELECT (SELECT model FROM {PREDICTIONS} WHERE ticker = $1 AND model > m.model "
        "  ORDER BY model LIMIT 1) FROM m WHERE m.model IS NOT NULL"
        ") SELECT model FROM m WHERE model IS NOT NULL",
        ticker,
    )
    return [r["model"] for r in rows]


async def latest_predictions(
    conn: asyncpg.Connection, ticker: str, models: Sequence[str], as_of: date | None
) -> list[asyncpg.Record]:
    """Per model, the prediction in force at ``as_of``: the latest cutoff on or before it
    (the latest made of that cutoff); without ``as_of``, the latest cutoff of all. One
    backward probe of the (ticker, model, cutoff, made_at) index per model."""
    columns = ", ".join(f"p.{c.strip()}" for c in PREDICTION_SELECT.split(","))
    return await conn.fetch(
        f"SELECT {columns} FROM unnest($2::text[]) WITH ORDINALITY AS m(model, n) "
        f"CROSS JOIN LATERAL (SELECT * FROM {PREDICTIONS} WHERE ticker = $1 "
        "AND model = m.model AND ($3::date IS NULL OR cutoff <= $3) "
        "ORDER BY cutoff DESC, made_at DESC LIMIT 1) AS p ORDER BY m.model",
        ticker,
        list(models),
        as_of,
    )


async def score_rows(  # noqa: PLR0913
    conn: asyncpg.Connection,
    *,
    ticker: str | None,
    models: Sequence[str] | None,
    step: int | None,
    start: date | None,
    end: date | None,
) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """The scored steps (and their bands) that accuracy and comparison read: per (model,
    ticker, cutoff, step) the score of the latest prediction made, targets in [start, end]."""
    points = await conn.fetch(
        f"SELECT DISTINCT ON (model, ticker, cutoff, step) prediction_id::text, model, ticker, "
        "cutoff, step, target_date, last_close, point, actual, vol_forecast, vol_proxy "
        f"FROM {SCORES} WHERE ($1::text IS NULL OR ticker = $1) "
        "AND ($2::text[] IS NULL OR model = ANY($2::text[])) "
        "AND ($3::integer IS NULL OR step = $3) AND ($4::date IS NULL OR target_date >= $4) "
        "AND ($5::date IS NULL OR target_date <= $5) "
        "ORDER BY model, ticker, cutoff, step, made_at DESC, prediction_id DESC",
        ticker,
        None if models is None else list(models),
        step,
        start,
        end,
    )
    ids = list({r["prediction_id"] for r in points})
    bands = await conn.fetch(
        f"SELECT prediction_id::text, step, level, lower, upper FROM {BANDS} "
        "WHERE prediction_id = ANY($1::uuid[]) AND ($2::integer IS NULL OR step = $2)",
        ids,
        step,
    )
    return list(points), list(bands)


async def registry_forecasters(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Registry models with versions that can forecast prices (mlp_regressor, log_return)."""
    return await conn.fetch(
        "SELECT m.id, m.name, array_agg(v.version ORDER BY v.version) AS versions, "
        "(m.active ->> 'production')::integer AS production_version "
        "FROM rm_models m JOIN rm_model_versions v ON v.model_id = m.id "
        "WHERE v.parameters ->> 'model_type' = 'mlp_regressor' "
        "AND v.parameters ->> 'target' = 'log_return' "
        "GROUP BY m.id, m.name, m.active ORDER BY m.name"
    )
