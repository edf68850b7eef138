"""Predictions: /api/v1/predictions — runs, backtests, jobs, the dashboard, accuracy, comparison.

The shared contract (``api/contract.py``) applies to every operation here; what is
particular to this context (``docs/predictions.md`` has the whole page):

- ``POST /run`` and ``POST /backtest`` answer 202 with the job, its ``Location``
  (``/jobs/{id}``, readable at once), ``ETag`` (the job's version) and
  ``Aimm-Position``; both take an ``Idempotency-Key``. A worker (the training worker's
  claim loop, job kind ``prediction``) makes the forecasts.
- Reads by id go through ``read_one``; every response built from several read-model
  tables is read in one repeatable-read ``snapshot``.
- ``GET /{ticker}`` is the dashboard: actual closes, each model's prediction in force
  (latest, or at ``as_of``) with its bands, the volatility forecasts and the realised
  volatility. Tickers are matched case-insensitively, so the fixed paths of this
  controller (``jobs``, ``accuracy``, ``compare``, ``forecasters``) win over a ticker of
  that name in lower case; ask for such a ticker in upper case.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import msgspec
import polars as pl
from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter

from api.auth import READ, WRITE
from api.commands import idempotency, run_command, to_builtins
from api.consistency import WaitFor, wait_for
from api.contract import (
    CREATED_HEADERS,
    ONE_AGGREGATE_HEADERS,
    IdempotencyKey,
    etag,
    problems,
    read_one,
    snapshot,
)
from api.controllers.market_data import Ticker
from api.errors import ProblemError
from api.pagination import (
    DEFAULT_LIMIT,
    Cursor,
    Limit,
    Order,
    decode_cursor,
    decode_time_keyset,
    encode_cursor,
    next_time_cursor,
)
from api.prediction_schemas import (
    AccuracyGroup,
    AccuracyOut,
    Actual,
    BacktestRequest,
    Band,
    CompareOut,
    DashboardOut,
    DieboldMariano,
    ForecasterOut,
    ForecastersOut,
    JobAccepted,
    JobModel,
    JobOut,
    JobPage,
    ModelForecast,
    ModelRank,
    ModelRefText,
    PairTest,
    PredictionOut,
    PredictionPage,
    RealisedVolatility,
    RegistryForecaster,
    RollingAccuracy,
    RunRequest,
    ScoreOut,
    StepOut,
    VolatilityPoint,
)
from api.read_cache import ReadCache
from application.base import Response as CommandResponse
from application.contexts import Contexts
from domain.market_data import InvalidTickerError, check_ticker
from domain.predictions import accuracy as stats
from domain.predictions import forecasters
from domain.predictions.comparison import Comparison, DieboldMarianoResult, TooFewOriginsError
from domain.predictions.comparison import compare as compare_models
from domain.predictions.prediction import JobKind, JobStatus, PredictionJob
from domain.predictions.volatility import DEFAULT_WINDOW, realized_volatility
from projections import market_data as bars_views
from projections import predictions as views

_decode_json = msgspec.json.Decoder().decode
MODEL_LIST_PATTERN = (
    rf"^({forecasters.MODEL_REF_PATTERN[1:-1]})(,({forecasters.MODEL_REF_PATTERN[1:-1]}))"
    rf"{{0,{9}}}$"
)
# the contexts whose read models the dashboard, accuracy and comparison read (market data
# is imported into the predictions log): their positions key the read cache
READ_CONTEXTS = ("predictions",)
DEFAULT_DAYS = 183  # the dashboard's default range: about six months before its end
ModelList = Annotated[
    str | None,
    Parameter(
        pattern=MODEL_LIST_PATTERN,
        max_length=1600,
        description="comma-separated model keys (a built-in's name or NAME@VERSION); "
        "default: every model with predictions of the ticker",
    ),
]


TICKER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$"
TICKER_TEXT = "1-32 characters of A-Z, 0-9, '.', '_', '-' (case-insensitive)"
TickerQuery = Annotated[str | None, Parameter(pattern=TICKER_PATTERN, description=TICKER_TEXT)]
HorizonQuery = Annotated[
    int | None,
    Parameter(
        ge=forecasters.HORIZON_BOUNDS[0],
        le=forecasters.HORIZON_BOUNDS[1],
        description="one horizon step (bars after the cutoff); default: every step",
    ),
]
Window = Annotated[
    int | None,
    Parameter(
        ge=1,
        le=1000,
        description="also track the metrics over the trailing WINDOW scored rows, per target date",
    ),
]


def _json(value: Any) -> Any:
    return None if value is None else _decode_json(value)


def _job_model(model: dict[str, Any]) -> JobModel:
    return JobModel(
        ref=model["ref"],
        key=model["key"],
        forecaster=model["forecaster"],
        model_id=UUID(model["model_id"]) if model.get("model_id") else None,
        model_name=model.get("model_name"),
        model_version=model.get("model_version"),
    )


def _accepted(job: PredictionJob) -> CommandResponse:
    body = JobAccepted(
        id=job.id,
        kind=job.kind,  # type: ignore[arg-type]
        status=job.status,  # type: ignore[arg-type]
        ticker=job.ticker,
        market_data_version=job.market_data_version,
        models=[_job_model(m) for m in job.models],
        horizon=job.horizon,
        levels=list(job.levels),
        cutoffs=len(job.cutoffs),
        first_cutoff=date.fromisoformat(job.cutoffs[0]),
        last_cutoff=date.fromisoformat(job.cutoffs[-1]),
        version=job.version,
    )
    return 202, to_builtins(body)


def job_out(row: Any) -> JobOut:
    values = dict(row)
    for column in ("models", "levels", "asked", "made_by_model"):
        values[column] = _json(values[column])
    values["models"] = [_job_model(m) for m in values["models"]]
    values.pop("updated_at", None)
    return JobOut(**values)


def _steps(steps: list[dict[str, Any]]) -> list[StepOut]:
    return [
        StepOut(
            step=s["step"],
            date=date.fromisoformat(s["date"]),
            median=s["median"],
            bands={level: Band(lower, upper) for level, (lower, upper) in s["bands"].items()},
            volatility=s["volatility"],
            loc=s["loc"],
            scale=s["scale"],
            df=s["df"],
        )
        for s in steps
    ]


def prediction_out(row: Any, scores: list[Any]) -> PredictionOut:
    steps = _json(row["steps"])
    by_step = {s["step"]: s for s in steps}
    return PredictionOut(
        id=row["id"],
        job_id=row["job_id"],
        ticker=row["ticker"],
        model=row["model"],
        forecaster=row["forecaster"],
        model_id=row["model_id"],
        model_version=row["model_version"],
        cutoff=row["cutoff"],
        market_data_version=row["market_data_version"],
        last_close=row["last_close"],
        horizon=row["horizon"],
        levels=_json(row["levels"]),
        steps=_steps(steps),
        params=_json(row["params"]),
        method=_json(row["method"]),
        made_at=row["made_at"],
        made_by=row["made_by"],
        scored_steps=row["scored_steps"],
        scores=[
            ScoreOut(
                step=s["step"],
                target_date=s["target_date"],
                actual=s["actual"],
                point=s["point"],
                error=s["actual"] - s["point"],
                covered={
                    level: lower <= s["actual"] <= upper
                    for level, (lower, upper) in by_step[s["step"]]["bands"].items()
                },
                vol_proxy=s["vol_proxy"],
                scored_at=s["scored_at"],
            )
            for s in scores
        ],
        version=row["version"],
    )


async def predictions_with_scores(conn: asyncpg.Connection, rows: list[Any]) -> list[PredictionOut]:
    scores: dict[UUID, list[Any]] = {}
    for s in await views.scores_of(conn, [r["id"] for r in rows]):
        scores.setdefault(s["prediction_id"], []).append(s)
    return [prediction_out(r, scores.get(r["id"], [])) for r in rows]


def _cache(request: Request[Any, Any, Any]) -> ReadCache:
    cache: ReadCache = request.app.state.read_cache
    return cache


def _model_keys(models: str | None) -> list[str] | None:
    return None if models is None else list(dict.fromkeys(models.split(",")))


def _ticker(ticker: str) -> str:
    try:
        return check_ticker(ticker)
    except InvalidTickerError as exc:  # the pattern of the parameter refuses it first
        raise ProblemError(400, str(exc)) from None


async def _job_row(request: Request[Any, Any, Any], job_id: UUID) -> Any:
    async def fetch(conn: asyncpg.Connection) -> Any:
        rows = await views.get_jobs(conn, [job_id])
        return rows[0] if rows else None

    row = await read_one(request, "predictions", job_id, fetch)
    if row is None:
        raise ProblemError(404, f"prediction job {job_id} not found")
    return row


class PredictionController(Controller):
    path = "/api/v1/predictions"
    tags = ["ai predictions"]

    @post(
        "/run",
        guards=[WRITE],
        status_code=202,
        response_headers=CREATED_HEADERS,
        responses=problems(404, 422),
    )
    async def run(
        self,
        request: Request[Any, Any, Any],
        data: RunRequest,
        contexts: Contexts,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[JobAccepted]:
        """Queue one forecast (F11.2.5): ``model`` at the last bar on or before ``as_of``.

        404: unknown ticker or model. 422: too little history before the cutoff (the
        body names ``needed`` and ``available``), or a registry model that cannot
        forecast prices, or a cutoff inside the rows it was fitted on."""
        idem = await idempotency(request, idempotency_key)
        return await run_command(
            request,
            lambda: contexts.predictions.request_run(
                ticker=data.ticker,
                model=data.model,
                horizon=data.horizon,
                levels=data.levels,
                as_of=data.as_of,
                registry=contexts.registry,
                training=contexts.training,
                idem=idem,
                respond=_accepted,
            ),
            location=lambda body: f"{self.path}/jobs/{body['id']}",
        )

    @post(
        "/backtest",
        guards=[WRITE],
        status_code=202,
        response_headers=CREATED_HEADERS,
        responses=problems(404, 422),
    )
    async def backtest(
        self,
        request: Request[Any, Any, Any],
        data: BacktestRequest,
        contexts: Contexts,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[JobAccepted]:
        """Queue rolling-origin forecasts: every ``step``-th bar from ``start`` to ``end``
        is a cutoff, for each model (F11.2.5); each prediction is scored at once where its
        targets have closes.

        404: unknown ticker or model. 422: ``end`` before ``start``, too little history
        before the first cutoff, or a model that cannot forecast prices there."""
        if data.end < data.start:
            raise ProblemError(
                422,
                "end must not be before start",
                errors=[{"field": "end", "source": "body", "message": "is before start"}],
            )
        idem = await idempotency(request, idempotency_key)
        return await run_command(
            request,
            lambda: contexts.predictions.request_backtest(
                ticker=data.ticker,
                models=data.models,
                horizon=data.horizon,
                levels=data.levels,
                start=data.start,
                end=data.end,
                step=data.step,
                registry=contexts.registry,
                training=contexts.training,
                idem=idem,
                respond=_accepted,
            ),
            location=lambda body: f"{self.path}/jobs/{body['id']}",
        )

    @get("/jobs", guards=[READ], responses=problems())
    async def list_jobs(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        status: JobStatus | None = None,
        kind: JobKind | None = None,
        ticker: TickerQuery = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        order: Order = "oldest",
        wait: WaitFor = None,
    ) -> JobPage:
        """Prediction jobs by the time they were requested, oldest (or ``newest``) first,
        filtered by status, kind and ticker."""
        await wait_for(request, wait)
        async with snapshot(request) as conn:
            rows = await views.list_jobs(
                conn,
                status=status,
                ticker=None if ticker is None else _ticker(ticker),
                kind=kind,
                after=decode_time_keyset(cursor),
                limit=limit + 1,
                newest_first=order == "newest",
            )
        return JobPage(
            items=[job_out(r) for r in rows[:limit]],
            next_cursor=next_time_cursor(rows, limit, "requested_at"),
        )

    @get(
        "/jobs/{job_id:uuid}",
        guards=[READ],
        response_headers=ONE_AGGREGATE_HEADERS,
        responses=problems(404),
    )
    async def get_job(
        self, request: Request[Any, Any, Any], job_id: UUID, wait: WaitFor = None
    ) -> Response[JobOut]:
        """A job: what it pinned, its status and progress, why it failed; ETag its version."""
        await wait_for(request, wait)
        row = await _job_row(request, job_id)
        return Response(job_out(row), headers=etag(row["version"]))

    @get("/jobs/{job_id:uuid}/predictions", guards=[READ], responses=problems(404))
    async def job_predictions(
        self,
        request: Request[Any, Any, Any],
        job_id: UUID,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        wait: WaitFor = None,
    ) -> PredictionPage:
        """A job's predictions by model and cutoff, each with its scores so far."""
        await wait_for(request, wait)
        await _job_row(request, job_id)
        raw = decode_cursor(cursor)
        try:
            after = None if raw is None else (str(raw[0]), date.fromisoformat(raw[1]))
        except (TypeError, ValueError, IndexError):
            raise ProblemError(400, "cursor is not one this API returned") from None
        async with snapshot(request) as conn:
            rows = await views.job_predictions(conn, job_id, after, limit + 1)
            items = await predictions_with_scores(conn, rows[:limit])
        last = rows[limit - 1] if len(rows) > limit else None
        return PredictionPage(
            items=items,
            next_cursor=None
            if last is None
            else encode_cursor([last["model"], last["cutoff"].isoformat()]),
        )

    @get("/accuracy", guards=[READ], responses=problems())
    async def accuracy(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        ticker: TickerQuery = None,
        model: ModelList = None,
        horizon: HorizonQuery = None,
        start: date | None = None,
        end: date | None = None,
        window: Window = None,
        wait: WaitFor = None,
    ) -> Response[AccuracyOut]:
        """Accuracy vs actuals (F11.2.3) per model x ticker x horizon step: n, MAE, RMSE,
        MAPE, MASE against the no-change forecast on the same rows, direction hit rate,
        per band level coverage, mean width and Winkler score, pinball loss, and QLIKE
        and MSE of the volatility forecast against the realised proxy; with ``window``,
        the same over the trailing scored rows per target date (the tracking chart).
        Rows: scored steps with target dates in [``start``, ``end``]; of several
        predictions of one model at one cutoff, the latest made counts."""
        await wait_for(request, wait)
        symbol = ticker and _ticker(ticker)
        keys = _model_keys(model)

        async def build(conn: asyncpg.Connection) -> AccuracyOut:
            points, bands = await _scored(conn, symbol, keys, horizon, start, end)
            rolling = (
                []
                if window is None
                else [
                    msgspec.convert(r, RollingAccuracy)
                    for r in stats.rolling_records(stats.rolling_accuracy(points, bands, window))
                ]
            )
            return AccuracyOut(groups=_groups(points, bands), rolling=rolling, window=window)

        return await _cache(request).answer(
            request,
            READ_CONTEXTS,
            ("accuracy", symbol, tuple(keys or ()), horizon, start, end, window),
            build,
        )

    @get("/compare", guards=[READ], responses=problems(404, 422))
    async def compare(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        ticker: Annotated[str, Parameter(pattern=TICKER_PATTERN, description=TICKER_TEXT)],
        models: Annotated[
            str,
            Parameter(
                pattern=MODEL_LIST_PATTERN,
                max_length=1600,
                description="comma-separated model keys to compare (the baseline joins them)",
            ),
        ],
        horizon: Annotated[
            int, Parameter(ge=forecasters.HORIZON_BOUNDS[0], le=forecasters.HORIZON_BOUNDS[1])
        ] = 1,
        loss: stats.Loss = "squared",
        level: Annotated[
            float,
            Parameter(
                ge=forecasters.LEVEL_BOUNDS[0],
                le=forecasters.LEVEL_BOUNDS[1],
                description="the band level of the winkler loss (default 95)",
            ),
        ] = stats.DEFAULT_LOSS_LEVEL,
        baseline: Annotated[
            ModelRefText, Parameter(description="the model each one is tested against")
        ] = "random_walk",
        wait: WaitFor = None,
    ) -> Response[CompareOut]:
        """Models on their common origins only (F11.2.4): their accuracy side by side, a
        Diebold–Mariano test (HAC variance, Harvey–Leybourne–Newbold correction) of each
        against the baseline and of every pair, and a ranking by mean loss with the best
        marked. 404 for a ticker without market data; 422 when the models share too few
        scored origins (the body says how many there are and how many are needed)."""
        await wait_for(request, wait)
        symbol = _ticker(ticker)
        names = list(dict.fromkeys([*(_model_keys(models) or []), baseline]))

        async def build(conn: asyncpg.Connection) -> CompareOut:
            if await bars_views.get_ticker(conn, symbol) is None:
                raise ProblemError(404, f"no market data for ticker {symbol!r}")
            points, bands = await _scored(conn, symbol, names, horizon, None, None)
            losses = stats.losses(points, bands, loss, level)
            try:
                result = compare_models(losses, names, baseline, horizon)
            except TooFewOriginsError as exc:
                raise ProblemError(422, str(exc), origins=exc.count, needed=exc.needed) from None
            common = (
                losses.group_by("cutoff")
                .agg(pl.col("model").n_unique().alias("models"))
                .filter(pl.col("models") == len(names))
                .select("cutoff")
            )
            return _comparison_out(
                symbol, loss, level, result, _groups(points.join(common, on="cutoff"), bands)
            )

        return await _cache(request).answer(
            request,
            READ_CONTEXTS,
            ("compare", symbol, tuple(names), horizon, loss, level, baseline),
            build,
        )

    @get("/forecasters", guards=[READ], responses=problems())
    async def list_forecasters(
        self, request: Request[Any, Any, Any], wait: WaitFor = None
    ) -> ForecastersOut:
        """The built-in forecasters with their settings, the registry models that can
        forecast prices (with their versions and the one in production), and how bands
        are calibrated."""
        await wait_for(request, wait)
        async with snapshot(request) as conn:
            rows = await views.registry_forecasters(conn)
        return ForecastersOut(
            builtins=[ForecasterOut(**f) for f in forecasters.describe_builtins()],
            registry=[
                RegistryForecaster(
                    model_id=r["id"],
                    name=r["name"],
                    versions=list(r["versions"]),
                    production_version=r["production_version"],
                )
                for r in rows
            ],
            calibration={
                "method": "weighted conformal prediction on studentized rolling-origin residuals",
                "window": forecasters.CALIBRATION_WINDOW,
                "min_scores": forecasters.CALIBRATION_MIN_SCORES,
                "decay": forecasters.CALIBRATION_DECAY,
            },
        )

    @get("/{ticker:str}", guards=[READ], responses=problems(404))
    async def dashboard(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        ticker: Ticker,
        start: date | None = None,
        end: date | None = None,
        models: ModelList = None,
        as_of: date | None = None,
        wait: WaitFor = None,
    ) -> Response[DashboardOut]:
        """What the prediction chart draws (F11.2.1, F11.2.2): actual closes from ``start``
        to ``end`` (default: the six months before the last bar), per model the prediction
        in force (the latest cutoff on or before ``as_of``, default the latest of all)
        with its bands per horizon date and its annualised volatility forecast, and the
        realised volatility (close-to-close, Parkinson, Garman–Klass over 21 days) on the
        same dates for the overlay."""
        await wait_for(request, wait)
        symbol = _ticker(ticker)
        keys = _model_keys(models)
        return await _cache(request).answer(
            request,
            READ_CONTEXTS,
            ("dashboard", symbol, start, end, tuple(keys or ()), as_of),
            lambda conn: _dashboard(conn, symbol, start, end, keys, as_of),
        )


async def _dashboard(  # noqa: PLR0913
    conn: asyncpg.Connection,
    symbol: str,
    start: date | None,
    end: date | None,
    models: list[str] | None,
    as_of: date | None,
) -> DashboardOut:
    """What the dashboard draws, read in one snapshot."""
    summary = await bars_views.get_ticker(conn, symbol)
    if summary is None:
        raise ProblemError(404, f"no market data for ticker {symbol!r}")
    keys = models or await views.models_of(conn, symbol)
    rows = await views.latest_predictions(conn, symbol, keys, as_of)
    chosen = await predictions_with_scores(conn, rows)
    last_day: date = end or summary["last_date"]
    first_day = start or last_day - timedelta(days=DEFAULT_DAYS)
    horizon_end = max([last_day, *(p.steps[-1].date for p in chosen)])
    bars = await bars_views.bars_between(
        conn,
        symbol,
        first_day - timedelta(days=3 * DEFAULT_WINDOW),
        horizon_end + timedelta(days=7),
        None,
        100_000,
    )
    return DashboardOut(
        ticker=symbol,
        start=start,
        end=end,
        as_of=as_of,
        actuals=[Actual(b["date"], b["close"]) for b in bars if first_day <= b["date"] <= last_day],
        models=[
            ModelForecast(
                model=p.model,
                prediction=p,
                volatility=[VolatilityPoint(s.step, s.date, s.volatility) for s in p.steps],
            )
            for p in chosen
        ],
        realised_volatility=_realised(bars, first_day, horizon_end),
        realised_window=DEFAULT_WINDOW,
    )


async def _scored(  # noqa: PLR0913
    conn: asyncpg.Connection,
    ticker: str | None,
    models: list[str] | None,
    step: int | None,
    start: date | None,
    end: date | None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The scored rows and their bands as the frames ``domain.predictions.accuracy`` reads."""
    points, bands = await views.score_rows(
        conn, ticker=ticker, models=models, step=step, start=start, end=end
    )
    return (
        pl.DataFrame([dict(r) for r in points], schema=stats.POINTS_SCHEMA, orient="row"),
        pl.DataFrame([dict(r) for r in bands], schema=stats.BANDS_SCHEMA, orient="row"),
    )


def _groups(points: pl.DataFrame, bands: pl.DataFrame) -> list[AccuracyGroup]:
    return [
        msgspec.convert(r, AccuracyGroup)
        for r in stats.accuracy_records(stats.accuracy(points, bands))
    ]


def _test(result: DieboldMarianoResult) -> DieboldMariano:
    return DieboldMariano(
        statistic=result.statistic,
        p_value=result.p_value,
        p_value_first_better=result.p_value_first_better,
        n=result.n,
        mean_difference=result.mean_difference,
        variance_method=result.variance_method,
    )


def _comparison_out(
    ticker: str, loss: str, level: float, result: Comparison, table: list[AccuracyGroup]
) -> CompareOut:
    return CompareOut(
        ticker=ticker,
        horizon=result.h,
        loss=loss,
        level=level if loss == "winkler" else None,
        baseline=result.baseline,
        origins=result.origins,
        first_origin=result.first_origin,
        last_origin=result.last_origin,
        ranking=[
            ModelRank(
                model=m.model,
                mean_loss=m.mean_loss,
                rank=m.rank,
                best=m.best,
                versus_baseline=None if m.versus_baseline is None else _test(m.versus_baseline),
            )
            for m in result.models
        ],
        pairwise=[PairTest(p.model_1, p.model_2, _test(p.test)) for p in result.pairwise],
        accuracy=table,
    )


def _realised(bars: list[Any], first: date, last: date) -> list[RealisedVolatility]:
    if not bars:
        return []
    names = ("date", "open", "high", "low", "close")
    frame = pl.DataFrame(
        {name: [b[name] for b in bars] for name in names},
        schema={"date": pl.Date, **{name: pl.Float64 for name in names[1:]}},
    )
    realised = realized_volatility(frame).filter(pl.col("date").is_between(first, last))
    return [
        RealisedVolatility(*row)
        for row in realised.select("date", "close_to_close", "parkinson", "garman_klass").rows()
    ]
