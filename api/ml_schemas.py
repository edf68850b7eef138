"""Request and response bodies of the datasets and training endpoints (msgspec Structs).

Every rule on a single field is in the OpenAPI schema, built from the domain's own
constants (``domain.ml.hyperparameters``, ``domain.ml.features``, ``domain.ml.runs``), so
the document and the checks cannot drift; a request the schema refuses is a 400.

Who checks what: types, text lengths and patterns (names, tickers, reasons) are checked
while decoding (msgspec stops at the first bad field). The bounds of numbers and the
choices of the hyperparameters, early stopping and dataset spec are *documented* here
(schema extras: ``minimum``/``maximum``/``enum``/``uniqueItems``) but *checked* by the
domain, because the domain names every offending field in one 400 (the README promises
it, and a client fixing a form wants all of them at once). Rules across fields
(``start`` <= ``end``, ``validation_start`` within them) cannot be said in JSON Schema:
they are 422 (``api.controllers.ml``), like the rules that depend on stored state
(unknown ticker, too few rows, a classifier on a return dataset).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from msgspec import Meta, Struct

from domain.market_data import TICKER_PATTERN
from domain.ml.features import BOUNDS, FEATURES, MAX_TICKERS, TARGETS, Target
from domain.ml.hyperparameters import (
    EARLY_STOPPING_BOUNDS,
    HYPERPARAMETER_BOUNDS,
    LR_SCHEDULES,
    MODES,
    MONITORS,
    OPTIMIZERS,
    ModelType,
)
from domain.ml.runs import MAX_RECORD_EVERY_STEPS, Status
from domain.registry.model import NAME_PATTERN

# Tickers are upper-cased by the domain, so lower case is accepted too.
TICKER = TICKER_PATTERN.pattern.replace("A-Z", "A-Za-z")
Ticker = Annotated[str, Meta(pattern=TICKER, max_length=32)]
# Litestar leaves the constraints of a list's items out of OpenAPI: given as an extra.
Tickers = Annotated[
    list[Ticker],
    Meta(
        min_length=1,
        max_length=MAX_TICKERS,
        extra_json_schema={
            "description": f"1-{MAX_TICKERS} tickers (upper-cased; a repeat counts once)",
            "extra": {"items": {"type": "string", "pattern": TICKER, "maxLength": 32}},
        },
    ),
]
Name = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=100,
        pattern=NAME_PATTERN.pattern,
        description="1-100 characters of a-z, 0-9, '.', '_', '-', '/', starting with a "
        "letter or digit",
    ),
]
Reason = Annotated[str, Meta(max_length=1000)]


def _documented(description: str, **schema: Any) -> Meta:
    """Schema keywords that the OpenAPI document shows and the domain checks (all at once).

    Litestar copies ``extra_json_schema["extra"]`` into the operation's schema as is
    (``uniqueItems`` as ``unique_items``, the name of its Schema field); msgspec ignores it.
    """
    return Meta(
        description=description,
        extra_json_schema={"description": description, "extra": schema},
    )


def _between(low: float, high: float, description: str) -> Meta:
    return _documented(description, minimum=low, maximum=high)


def _choice(values: tuple[str, ...], description: str) -> Meta:
    # the fields are optional: null (the default) is one of the values
    return _documented(description, enum=[*values, None])


def _ints(bounds: tuple[float, float], description: str) -> Meta:
    return _between(int(bounds[0]), int(bounds[1]), description)


def _floats(bounds: tuple[float, float], description: str) -> Meta:
    return _between(float(bounds[0]), float(bounds[1]), description)


Lags = Annotated[int, _ints(BOUNDS["lags"], "lagged returns per row (default 5)")]
Window = Annotated[int, _ints(BOUNDS["window"], "days of the rolling volatilities (default 20)")]
ValidationFraction = Annotated[
    float,
    _floats(BOUNDS["validation_fraction"], "share of the last dates for validation (default 0.2)"),
]
Features = Annotated[
    list[str],
    _documented(
        "default: all of them, each at most once",
        items={"type": "string", "enum": list(FEATURES)},
        min_items=1,
        max_items=len(FEATURES),
        unique_items=True,
    ),
]
TargetIn = Annotated[str, _choice(TARGETS, "default direction")]

_H = HYPERPARAMETER_BOUNDS
LearningRate = Annotated[float, _floats(_H["learning_rate"], "default 0.001")]
Epochs = Annotated[int, _ints(_H["epochs"], "default 50")]
BatchSize = Annotated[int, _ints(_H["batch_size"], "default 64")]
HiddenUnits = Annotated[int, _ints(_H["hidden_units"], "default 64")]
Layers = Annotated[int, _ints(_H["layers"], "default 2")]
WeightDecay = Annotated[float, _floats(_H["weight_decay"], "default 0")]
Seed = Annotated[int, _ints(_H["seed"], "default 0")]
OptimizerIn = Annotated[str, _choice(OPTIMIZERS, "default adam")]
LrScheduleIn = Annotated[str, _choice(LR_SCHEDULES, "default constant")]
MonitorIn = Annotated[str, _choice(MONITORS, "default val_loss")]
ModeIn = Annotated[str, _choice(MODES, "default auto: max for accuracies, min otherwise")]
_E = EARLY_STOPPING_BOUNDS
Patience = Annotated[int, _ints(_E["patience"], "default 5")]
MinDelta = Annotated[float, _floats(_E["min_delta"], "default 0")]
StartFromEpoch = Annotated[int, _ints(_E["start_from_epoch"], "default 0")]
RecordEverySteps = Annotated[
    int,
    Meta(
        ge=1,
        le=MAX_RECORD_EVERY_STEPS,
        description="record a metric point every N optimizer steps too (default: once per epoch)",
    ),
]


class DatasetCreate(Struct, forbid_unknown_fields=True):
    """Name, tickers and dates suffice; the rest has documented defaults.

    ``end`` must not be before ``start``, and ``validation_start`` (default: the first of
    the last ``validation_fraction`` of dates) must lie between them: 422 otherwise.
    """

    name: Name
    tickers: Tickers
    start: date
    end: date
    features: Features | None = None
    lags: Lags | None = None
    window: Window | None = None
    target: TargetIn | None = None
    validation_start: date | None = None
    validation_fraction: ValidationFraction | None = None

    def spec(self) -> dict[str, Any]:
        raw = msgspec.to_builtins(self)
        raw.pop("name")
        return {k: v for k, v in raw.items() if v is not None}


class DatasetOut(Struct):
    """A registered dataset: what ``POST`` answers and ``GET`` reads alike."""

    id: UUID
    name: str
    tickers: list[str]
    start: date
    end: date
    spec: dict[str, Any]
    feature_columns: list[str]
    target: Target
    row_count: int
    train_rows: int
    validation_rows: int
    validation_start: date
    content_hash: str
    size_bytes: int
    sources: dict[str, Any]
    registered_at: datetime
    registered_by: str
    version: int


class DatasetPage(Struct):
    items: list[DatasetOut]
    next_cursor: str | None


# Unknown fields are refused (a typo is a 400, not a silent default): every request struct
# is ``forbid_unknown_fields``, which ``api.contract.ClosedStructs`` states in the schema.


class HyperparametersIn(Struct, forbid_unknown_fields=True):
    """Every field is optional and has its default."""

    learning_rate: LearningRate | None = None
    epochs: Epochs | None = None
    batch_size: BatchSize | None = None
    hidden_units: HiddenUnits | None = None
    layers: Layers | None = None
    weight_decay: WeightDecay | None = None
    optimizer: OptimizerIn | None = None
    seed: Seed | None = None
    lr_schedule: LrScheduleIn | None = None


class EarlyStoppingIn(Struct, forbid_unknown_fields=True):
    """The Keras rule. Defaults: monitor val_loss, mode auto (max for accuracies),
    patience 5, min_delta 0, no baseline, restore_best_weights true, start_from_epoch 0."""

    monitor: MonitorIn | None = None
    mode: ModeIn | None = None
    patience: Patience | None = None
    min_delta: MinDelta | None = None
    baseline: float | None = None
    restore_best_weights: bool | None = None
    start_from_epoch: StartFromEpoch | None = None


def given(struct: Struct | None) -> dict[str, Any] | None:
    """The fields a client set (None when the whole object was left out)."""
    if struct is None:
        return None
    return {k: v for k, v in msgspec.to_builtins(struct).items() if v is not None}


class TrainRequest(Struct, forbid_unknown_fields=True):
    dataset_id: UUID
    model_type: ModelType = "mlp_classifier"
    hyperparameters: HyperparametersIn = msgspec.field(default_factory=HyperparametersIn)
    # Omitted or null: no early stopping; {} turns it on with the defaults.
    early_stopping: EarlyStoppingIn | None = None
    record_every_steps: RecordEverySteps | None = None
    # The registry model the finished run registers a version of
    # (default: "<dataset name>-<model type>").
    model_name: Name | None = None


class StopRequest(Struct, forbid_unknown_fields=True):
    reason: Reason = ""


class JobAccepted(Struct):
    id: UUID
    status: Status
    dataset_id: UUID
    dataset_hash: str
    model_type: ModelType
    model_name: str
    hyperparameters: dict[str, Any]
    early_stopping: dict[str, Any] | None
    version: int


class RegisteredVersion(Struct):
    model_id: UUID
    model_name: str | None
    version: int


class JobOut(Struct):
    id: UUID
    status: Status
    dataset_id: UUID
    dataset_name: str
    dataset_hash: str
    model_type: ModelType
    model_name: str
    hyperparameters: dict[str, Any]
    early_stopping: dict[str, Any] | None
    record_every_steps: int | None
    attempt: int
    worker: str | None
    start_reason: str | None
    requested_at: datetime
    requested_by: str
    started_at: datetime | None
    ended_at: datetime | None
    stop_requested: bool
    stop_reason: str | None
    stop_requested_by: str | None
    reason: str | None
    epochs_run: int | None
    steps_run: int | None
    best_epoch: int | None
    best_metrics: dict[str, float] | None
    final_metrics: dict[str, float] | None
    last_point: dict[str, Any] | None
    artifact_hash: str | None
    artifact_epoch: int | None
    early_stopping_decision: dict[str, Any] | None
    registered_model_version: RegisteredVersion | None
    lease_expires_at: datetime | None
    version: int
    updated_at: datetime


class JobPage(Struct):
    items: list[JobOut]
    next_cursor: str | None


class PointOut(Struct):
    version: int
    attempt: int
    epoch: int
    step: int
    end_of_epoch: bool
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    learning_rate: float
    duration_ms: float
    early_stopping: dict[str, Any] | None
    recorded_at: datetime


class MetricsOut(Struct):
    job_id: UUID
    status: Status
    attempt: int
    points: list[PointOut]


class StopOut(Struct):
    id: UUID
    status: Status
    stop_requested: bool
    version: int


class CompareBest(Struct):
    metric: str
    mode: str
    job_id: UUID | None
    value: float | None
    epoch: int | None


class CompareOut(Struct):
    jobs: list[JobOut]
    differences: dict[str, dict[str, Any]]  # setting -> job id -> value (only differing)
    best_metrics: dict[str, dict[str, Any]]  # job id -> best metrics (at its best epoch)
    final_metrics: dict[str, dict[str, Any]]  # job id -> final metrics
    curves: list[dict[str, Any]]  # [{"epoch": n, "<job id>": {metric: value}}]
    best: CompareBest
