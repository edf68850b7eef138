"""Request and response bodies of the predictions endpoints (msgspec Structs).

Every rule on a single field is in the schema, built from the domain's own constants
(``domain.predictions.forecasters``): horizon 1-30, 1-5 levels of 1-99.9 percent, 1-5
models, ``step`` 1-250, model references by their pattern. msgspec stops at the first
bad field; a repeated level or model, ``end`` before ``start`` and the rules that depend
on stored state (history before a cutoff, a model that cannot forecast prices) are named
by the domain or the controller (400 or 422, see ``docs/predictions.md``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

from msgspec import Meta, Struct

from api.ml_schemas import Ticker
from application.predictions import MAX_MODELS, MAX_ORIGINS, STEP_BOUNDS
from domain.predictions.forecasters import (
    HORIZON_BOUNDS,
    LEVEL_BOUNDS,
    MAX_LEVELS,
    MODEL_REF_PATTERN,
)
from domain.predictions.prediction import JobKind, JobStatus

ModelRefText = Annotated[
    str,
    Meta(
        pattern=MODEL_REF_PATTERN,
        max_length=150,
        description="a built-in forecaster (random_walk, random_walk_drift, ewma, garch, "
        "garch_t), or a registry model as ID, NAME (its version in production), ID@VERSION "
        "or NAME@VERSION",
    ),
]
Horizon = Annotated[
    int,
    Meta(
        ge=HORIZON_BOUNDS[0],
        le=HORIZON_BOUNDS[1],
        description="trading days (bars) after the cutoff, 1-30",
    ),
]
Level = Annotated[float, Meta(ge=LEVEL_BOUNDS[0], le=LEVEL_BOUNDS[1])]
Levels = Annotated[
    list[Level],
    Meta(
        min_length=1,
        max_length=MAX_LEVELS,
        description="central band coverages in percent, each once (default 50, 80, 95)",
        extra_json_schema={"uniqueItems": True},
    ),
]
Step = Annotated[
    int,
    Meta(
        ge=STEP_BOUNDS[0],
        le=STEP_BOUNDS[1],
        description=f"bars between two origins (default 1); at most {MAX_ORIGINS} origins",
    ),
]
Models = Annotated[
    list[ModelRefText],
    Meta(
        min_length=1,
        max_length=MAX_MODELS,
        description=f"1-{MAX_MODELS} models, each once",
        extra_json_schema={"uniqueItems": True},
    ),
]


class RunRequest(Struct, forbid_unknown_fields=True):
    """One forecast at the last bar on or before ``as_of`` (default: the last bar)."""

    ticker: Ticker
    model: ModelRefText
    horizon: Horizon = 5
    levels: Levels | None = None
    as_of: date | None = None


class BacktestRequest(Struct, forbid_unknown_fields=True):
    """Forecasts of each model at every ``step``-th bar from ``start`` to ``end``."""

    ticker: Ticker
    models: Models
    start: date
    end: date
    horizon: Horizon = 5
    levels: Levels | None = None
    step: Step = 1


class JobModel(Struct):
    """A model as the job pinned it."""

    ref: str  # as asked
    key: str  # what accuracy groups by: a built-in's name or NAME@VERSION
    forecaster: str
    model_id: UUID | None
    model_name: str | None
    model_version: int | None


class JobAccepted(Struct):
    id: UUID
    kind: JobKind
    status: JobStatus
    ticker: str
    market_data_version: int
    models: list[JobModel]
    horizon: int
    levels: list[float]
    cutoffs: int
    first_cutoff: date
    last_cutoff: date
    version: int


class JobOut(Struct):
    id: UUID
    kind: JobKind
    status: JobStatus
    ticker: str
    market_data_version: int
    models: list[JobModel]
    horizon: int
    levels: list[float]
    cutoffs: int
    first_cutoff: date
    last_cutoff: date
    asked: dict[str, Any]
    made: int  # predictions made so far
    total: int  # models x cutoffs
    made_by_model: dict[str, int]
    attempt: int
    worker: str | None
    start_reason: str | None
    reason: str | None  # why it failed
    seconds: float | None
    requested_at: datetime
    requested_by: str
    started_at: datetime | None
    ended_at: datetime | None
    lease_expires_at: datetime | None
    version: int


class JobPage(Struct):
    items: list[JobOut]
    next_cursor: str | None


class Band(Struct):
    lower: float
    upper: float


class StepOut(Struct):
    """One horizon step: the k-th bar after the cutoff."""

    step: int
    date: date  # the expected date (the k-th weekday); a scored step names its bar's date
    median: float  # price
    bands: dict[str, Band]  # by level ("95")
    volatility: float  # annualised forecast of that day's volatility
    loc: float  # the distribution of ln(close_{T+k} / close_T): location
    scale: float
    df: float | None  # Student-t degrees of freedom; null for the normal


class ScoreOut(Struct):
    step: int
    target_date: date
    actual: float
    point: float
    error: float
    covered: dict[str, bool]
    vol_proxy: float | None
    scored_at: datetime


class PredictionOut(Struct):
    id: UUID
    job_id: UUID
    ticker: str
    model: str
    forecaster: str
    model_id: UUID | None
    model_version: int | None
    cutoff: date  # the last bar the forecast used
    market_data_version: int
    last_close: float
    horizon: int
    levels: list[float]
    steps: list[StepOut]
    params: dict[str, Any]
    method: dict[str, Any]
    made_at: datetime
    made_by: str
    scored_steps: int
    scores: list[ScoreOut]
    version: int


class PredictionPage(Struct):
    items: list[PredictionOut]
    next_cursor: str | None


class Actual(Struct):
    date: date
    close: float


class RealisedVolatility(Struct):
    """Annualised realised volatility over the trailing window ending at ``date``."""

    date: date
    close_to_close: float | None
    parkinson: float | None
    garman_klass: float | None


class VolatilityPoint(Struct):
    step: int
    date: date
    volatility: float


class ModelForecast(Struct):
    model: str
    prediction: PredictionOut
    volatility: list[VolatilityPoint]  # per step, annualised


class DashboardOut(Struct):
    """What the prediction chart draws, in one response."""

    ticker: str
    start: date | None
    end: date | None
    as_of: date | None
    actuals: list[Actual]
    models: list[ModelForecast]
    realised_volatility: list[RealisedVolatility]
    realised_window: int


class ForecasterOut(Struct):
    name: str
    family: str
    description: str
    distribution: str
    settings: dict[str, Any]
    min_history: int


class RegistryForecaster(Struct):
    """A registry model usable as a forecaster: an ``mlp_regressor`` on log returns."""

    model_id: UUID
    name: str
    versions: list[int]
    production_version: int | None


class ForecastersOut(Struct):
    builtins: list[ForecasterOut]
    registry: list[RegistryForecaster]
    calibration: dict[str, Any]


class LevelAccuracy(Struct):
    coverage: float | None  # share of actuals inside the band
    mean_width: float | None  # price units
    winkler: float | None  # mean Winkler interval score (lower is better)


class AccuracyGroup(Struct):
    """Accuracy of one model on one ticker at one horizon step, over its scored rows."""

    model: str
    ticker: str
    step: int
    n: int
    mae: float | None
    rmse: float | None
    mape: float | None  # percent
    mase: float | None  # MAE over the no-change forecast's MAE on the same rows
    direction_hit_rate: float | None
    pinball: float | None
    qlike: float | None  # volatility forecast against the realised proxy
    vol_mse: float | None
    levels: dict[str, LevelAccuracy]


class RollingAccuracy(Struct):
    """The point metrics over the trailing ``window`` scored rows, per target date."""

    model: str
    ticker: str
    step: int
    target_date: date
    n: int
    mae: float | None
    rmse: float | None
    mape: float | None
    mase: float | None
    direction_hit_rate: float | None
    levels: dict[str, float | None]  # coverage per level


class AccuracyOut(Struct):
    groups: list[AccuracyGroup]
    rolling: list[RollingAccuracy]  # empty unless ``window`` was asked for
    window: int | None


class DieboldMariano(Struct):
    statistic: float | None
    p_value: float | None  # two-sided, equal expected loss
    p_value_first_better: float | None  # one-sided: the first model has the smaller loss
    n: int
    mean_difference: float
    variance_method: str  # rectangular, bartlett, or none (the loss differences are constant)


class ModelRank(Struct):
    model: str
    mean_loss: float
    rank: int
    best: bool
    versus_baseline: DieboldMariano | None


class PairTest(Struct):
    model_1: str
    model_2: str
    test: DieboldMariano


class CompareOut(Struct):
    ticker: str
    horizon: int
    loss: str
    level: float | None  # the band level of the winkler loss
    baseline: str
    origins: int  # the cutoffs every model has a scored forecast for
    first_origin: date
    last_origin: date
    ranking: list[ModelRank]
    pairwise: list[PairTest]
    accuracy: list[AccuracyGroup]  # on the common origins, side by side
