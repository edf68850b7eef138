"""Request and response bodies of the datasets and training endpoints (msgspec Structs).

Requests are typed (a wrong type is a 400 naming that field); bounds are checked by the
domain all at once, so every out-of-bounds field is named in one 400.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from msgspec import Meta, Struct

from api.schemas import Name

Ticker = Annotated[str, Meta(min_length=1, max_length=32)]
Reason = Annotated[str, Meta(max_length=1000)]


class DatasetCreate(Struct, forbid_unknown_fields=True):
    """Name, tickers and dates suffice; the rest has documented defaults."""

    name: Name
    tickers: Annotated[list[Ticker], Meta(min_length=1, max_length=20)]
    start: date
    end: date
    features: list[str] | None = None
    lags: int | None = None
    window: int | None = None
    target: str | None = None
    validation_start: date | None = None
    validation_fraction: float | None = None

    def spec(self) -> dict[str, Any]:
        raw = msgspec.to_builtins(self)
        raw.pop("name")
        return {k: v for k, v in raw.items() if v is not None}


class DatasetOut(Struct):
    id: UUID
    name: str
    tickers: list[str]
    start: date
    end: date
    spec: dict[str, Any]
    feature_columns: list[str]
    target: str
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


class HyperparametersIn(Struct, forbid_unknown_fields=True):
    """Defaults: learning_rate 0.001, epochs 50, batch_size 64, hidden_units 64, layers 2,
    weight_decay 0, optimizer adam, seed 0, lr_schedule constant."""

    learning_rate: float | None = None
    epochs: int | None = None
    batch_size: int | None = None
    hidden_units: int | None = None
    layers: int | None = None
    weight_decay: float | None = None
    optimizer: str | None = None
    seed: int | None = None
    lr_schedule: str | None = None


class EarlyStoppingIn(Struct, forbid_unknown_fields=True):
    """Defaults: monitor val_loss, mode auto, patience 5, min_delta 0, no baseline,
    restore_best_weights true, start_from_epoch 0."""

    monitor: str | None = None
    mode: str | None = None
    patience: int | None = None
    min_delta: float | None = None
    baseline: float | None = None
    restore_best_weights: bool | None = None
    start_from_epoch: int | None = None


def given(struct: Struct | None) -> dict[str, Any] | None:
    """The fields a client set (None when the whole object was left out)."""
    if struct is None:
        return None
    return {k: v for k, v in msgspec.to_builtins(struct).items() if v is not None}


class TrainRequest(Struct, forbid_unknown_fields=True):
    dataset_id: UUID
    model_type: Literal["mlp_classifier", "mlp_regressor"] = "mlp_classifier"
    hyperparameters: HyperparametersIn = msgspec.field(default_factory=HyperparametersIn)
    # Omitted or null: no early stopping; {} turns it on with the defaults.
    early_stopping: EarlyStoppingIn | None = None
    # Record a metric point every N optimizer steps too (default: once per epoch).
    record_every_steps: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None
    # The registry model the finished run registers a version of
    # (default: "<dataset name>-<model type>").
    model_name: Name | None = None


class StopRequest(Struct, forbid_unknown_fields=True):
    reason: Reason = ""


class JobAccepted(Struct):
    id: UUID
    status: str
    dataset_id: UUID
    dataset_hash: str
    model_type: str
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
    status: str
    dataset_id: UUID
    dataset_name: str
    dataset_hash: str
    model_type: str
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
    status: str
    attempt: int
    points: list[PointOut]


class StopOut(Struct):
    id: UUID
    status: str
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
