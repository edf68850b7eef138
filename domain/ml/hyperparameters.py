"""Hyperparameters and early-stopping settings of a training run, with their bounds.

Every field has a documented default, so ``{}`` is a valid request. Values are checked
all at once: a request with several out-of-bounds values is refused with every
offending field named (``InvalidFieldsError``, HTTP 400), not just the first one.

Early stopping follows the Keras ``EarlyStopping`` rule, the one practitioners know:
after ``start_from_epoch`` epochs, an epoch *improves* when the monitored value beats
the best so far by more than ``min_delta`` (lower for ``min``, higher for ``max``;
``auto`` means ``max`` for accuracies and ``min`` otherwise); training stops once
``patience`` epochs in a row did not improve. With a ``baseline``, the best starts at
the baseline, so a run that never beats it stops after ``patience`` epochs.
``restore_best_weights`` (default true, unlike Keras: a demanding user wants the
artifact of the best epoch, and asks for the last one explicitly) keeps the weights of
the best epoch as the run's artifact.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

from domain.errors import InvalidFieldsError

# The choices and bounds below are the one definition: the domain checks them, and the
# API's msgspec schemas (api/ml_schemas.py) are built from them, so the OpenAPI document
# cannot drift from what is enforced.
ModelType = Literal["mlp_classifier", "mlp_regressor"]
Optimizer = Literal["adam", "adamw", "sgd", "rmsprop"]
LrSchedule = Literal["constant", "cosine"]
Monitor = Literal["val_loss", "val_accuracy", "loss", "accuracy"]
Mode = Literal["auto", "min", "max"]
MODEL_TYPES: tuple[str, ...] = get_args(ModelType)
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
LR_SCHEDULES: tuple[str, ...] = get_args(LrSchedule)
MONITORS: tuple[str, ...] = get_args(Monitor)
MODES: tuple[str, ...] = get_args(Mode)

# field -> (low, high) inclusive, for numbers; documented in the README.
HYPERPARAMETER_BOUNDS: dict[str, tuple[float, float]] = {
    "learning_rate": (1e-6, 1.0),
    "epochs": (1, 1000),
    "batch_size": (1, 4096),
    "hidden_units": (1, 1024),
    "layers": (1, 8),
    "weight_decay": (0.0, 1.0),
    "seed": (0, 2**31 - 1),
}
EARLY_STOPPING_BOUNDS: dict[str, tuple[float, float]] = {
    "patience": (0, 1000),
    "min_delta": (0.0, 1e6),
    "start_from_epoch": (0, 1000),
}
INTEGER_FIELDS = frozenset(
    {"epochs", "batch_size", "hidden_units", "layers", "seed", "patience", "start_from_epoch"}
)


@dataclass(frozen=True)
class Hyperparameters:
    learning_rate: float = 1e-3
    epochs: int = 50
    batch_size: int = 64
    hidden_units: int = 64
    layers: int = 2
    weight_decay: float = 0.0
    optimizer: str = "adam"
    seed: int = 0
    lr_schedule: str = "constant"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EarlyStopping:
    monitor: str = "val_loss"
    mode: str = "auto"
    patience: int = 5
    min_delta: float = 0.0
    baseline: float | None = None
    restore_best_weights: bool = True
    start_from_epoch: int = 0

    @property
    def direction(self) -> str:
        """``min`` or ``max``: ``auto`` means ``max`` for accuracies, ``min`` otherwise."""
        if self.mode != "auto":
            return self.mode
        return "max" if self.monitor.endswith("accuracy") else "min"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_number(
    name: str, value: Any, bounds: tuple[float, float], errors: list[dict[str, str]]
) -> None:
    integer = name.rpartition(".")[2] in INTEGER_FIELDS
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "an integer" if integer else "a number"
        errors.append({"field": name, "message": f"must be {kind}"})
        return
    if integer and not float(value).is_integer():
        errors.append({"field": name, "message": "must be an integer"})
        return
    low, high = bounds
    if not math.isfinite(value) or not low <= value <= high:
        errors.append({"field": name, "message": f"must be between {low:g} and {high:g}"})


def _check_choice(
    name: str, value: Any, choices: tuple[str, ...], errors: list[dict[str, str]]
) -> None:
    if value not in choices:
        errors.append({"field": name, "message": f"must be one of {', '.join(choices)}"})


def _unknown(
    raw: dict[str, Any], known: set[str], prefix: str, errors: list[dict[str, str]]
) -> None:
    for name in sorted(set(raw) - known):
        errors.append({"field": f"{prefix}{name}", "message": "is not a known field"})


def parse_hyperparameters(raw: dict[str, Any], prefix: str = "hyperparameters.") -> Hyperparameters:
    """Hyperparameters from a request mapping; every bad field is reported at once."""
    errors: list[dict[str, str]] = []
    _unknown(raw, {f.name for f in fields(Hyperparameters)}, prefix, errors)
    values = {**Hyperparameters().as_dict(), **raw}
    for name, bounds in HYPERPARAMETER_BOUNDS.items():
        _check_number(prefix + name, values[name], bounds, errors)
    _check_choice(prefix + "optimizer", values["optimizer"], OPTIMIZERS, errors)
    _check_choice(prefix + "lr_schedule", values["lr_schedule"], LR_SCHEDULES, errors)
    if errors:
        raise InvalidFieldsError(errors)
    for name in INTEGER_FIELDS & set(values):
        values[name] = int(values[name])
    for name in ("learning_rate", "weight_decay"):
        values[name] = float(values[name])
    return Hyperparameters(**values)


def parse_early_stopping(
    raw: dict[str, Any] | None, prefix: str = "early_stopping."
) -> EarlyStopping | None:
    """Early-stopping settings, or None when the request leaves early stopping off."""
    if raw is None:
        return None
    errors: list[dict[str, str]] = []
    _unknown(raw, {f.name for f in fields(EarlyStopping)}, prefix, errors)
    values = {**EarlyStopping().as_dict(), **raw}
    for name, bounds in EARLY_STOPPING_BOUNDS.items():
        _check_number(prefix + name, values[name], bounds, errors)
    _check_choice(prefix + "monitor", values["monitor"], MONITORS, errors)
    _check_choice(prefix + "mode", values["mode"], MODES, errors)
    baseline = values["baseline"]
    if baseline is not None and (
        isinstance(baseline, bool)
        or not isinstance(baseline, int | float)
        or not math.isfinite(baseline)
    ):
        errors.append({"field": prefix + "baseline", "message": "must be a finite number"})
    if not isinstance(values["restore_best_weights"], bool):
        errors.append({"field": prefix + "restore_best_weights", "message": "must be a boolean"})
    if errors:
        raise InvalidFieldsError(errors)
    for name in INTEGER_FIELDS & set(values):
        values[name] = int(values[name])
    values["min_delta"] = float(values["min_delta"])
    values["baseline"] = None if baseline is None else float(baseline)
    return EarlyStopping(**values)


def parse_settings(
    hyperparameters: dict[str, Any], early_stopping: dict[str, Any] | None
) -> tuple[Hyperparameters, EarlyStopping | None]:
    """Both parts of a run's settings, every offending field of either named in one error."""
    errors: list[dict[str, str]] = []
    hp: Hyperparameters | None = None
    rule: EarlyStopping | None = None
    try:
        hp = parse_hyperparameters(hyperparameters)
    except InvalidFieldsError as exc:
        errors += exc.errors
    try:
        rule = parse_early_stopping(early_stopping)
    except InvalidFieldsError as exc:
        errors += exc.errors
    if errors or hp is None:
        raise InvalidFieldsError(errors)
    return hp, rule
