"""The forecasters a prediction can name, their settings, and the bounds of a request.

One definition: the domain checks requests against these, the forecast engine
(``infrastructure.forecasting.engine``) reads its settings from them, and the API's
schemas and ``GET /api/v1/predictions/forecasters`` show them.

Every forecaster yields, per horizon step ``k`` (the ``k``-th bar after the cutoff), a
predictive distribution of the cumulative log return ``ln(close_{T+k} / close_T)``;
price quantiles follow from it, and bands are then calibrated by conformal prediction
on the forecaster's own rolling-origin residuals (see the engine's docstring).

Built-ins (their names are reserved: a registry model of the same name is reached by
``name@version`` or its id):

- ``random_walk``: no drift; the scale is the sample standard deviation of the last
  ``window`` returns times ``sqrt(k)``.
- ``random_walk_drift``: the same with the sample mean of those returns as the drift.
- ``ewma``: RiskMetrics volatility (lambda 0.94), zero mean, square-root-of-time.
- ``garch``, ``garch_t``: GARCH(1,1) with a constant mean, normal or Student-t
  innovations, fitted by maximum likelihood on the last ``window`` returns at every
  origin.

Registry models: ``<model id or name>@<version>``, or a model id or name alone, meaning
its version active in ``production``; it must be an ``mlp_regressor`` trained by the
training context on a ``log_return`` dataset.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from domain.errors import InvalidFieldsError

HORIZON_BOUNDS = (1, 30)  # trading days (bars) after the cutoff
LEVEL_BOUNDS = (1.0, 99.9)  # central band coverage in percent
MAX_LEVELS = 5
DEFAULT_LEVELS: tuple[float, ...] = (50.0, 80.0, 95.0)
TRADING_DAYS_PER_YEAR = 252

# Conformal calibration of the bands (see infrastructure.forecasting.engine).
# 500 and 0.995 (rather than 250 and 0.99) measured closer to nominal at every horizon,
# every built-in, on the sample's rolling backtest (``benchmarks/coverage.py``), at twice
# the raw forecasts a single run needs (CALIBRATION_WINDOW + horizon).
CALIBRATION_WINDOW = 500  # the most recent rolling origins whose scores calibrate a band
CALIBRATION_MIN_SCORES = 30  # fewer realised scores: the model's own bands, said so
CALIBRATION_DECAY = 0.995  # weight of a score per origin of age (recency weighting)

MLP_REGRESSOR = "mlp_regressor"
REGISTRY_FAMILY = "registry"


@dataclass(frozen=True)
class Forecaster:
    """A built-in forecaster: what it is, its fixed settings and the history it needs."""

    name: str
    family: str
    description: str
    distribution: str
    settings: dict[str, Any] = field(default_factory=dict)
    min_history: int = 61  # bars up to and including the cutoff (returns + 1)


BUILTINS: dict[str, Forecaster] = {
    f.name: f
    for f in (
        Forecaster(
            "random_walk",
            "random_walk",
            "Random walk without drift: tomorrow's expected close is today's.",
            "normal",
            {"drift": False, "window": 250},
        ),
        Forecaster(
            "random_walk_drift",
            "random_walk",
            "Random walk with drift: the mean daily log return of the window per step.",
            "normal",
            {"drift": True, "window": 250},
        ),
        Forecaster(
            "ewma",
            "ewma",
            "RiskMetrics EWMA volatility (lambda 0.94), zero mean, square-root-of-time.",
            "normal",
            {"lambda": 0.94, "window": 500},
        ),
        Forecaster(
            "garch",
            "garch",
            "GARCH(1,1), constant mean, normal innovations, maximum likelihood (JAX).",
            "normal",
            {"innovations": "normal", "window": 1000},
            min_history=251,
        ),
        Forecaster(
            "garch_t",
            "garch",
            "GARCH(1,1), constant mean, Student-t innovations, maximum likelihood (JAX).",
            "student_t",
            {"innovations": "t", "window": 1000},
            min_history=251,
        ),
    )
}

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_NAME = r"[a-z0-9][a-z0-9._/-]{0,99}"
MODEL_REF_PATTERN = rf"^({_UUID}|{_NAME})(@[0-9]{{1,9}})?$"
_MODEL_REF = re.compile(MODEL_REF_PATTERN)


@dataclass(frozen=True)
class ModelRef:
    """What a request names: a built-in, or a registry model (id or name) and version."""

    text: str
    builtin: str | None = None
    model: str | None = None  # registry model id (as text) or name
    version: int | None = None  # None: the version active in production

    @property
    def by_id(self) -> bool:
        return self.model is not None and _is_uuid(self.model)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def parse_model_ref(text: str, field_name: str = "model") -> ModelRef:
    """A model reference; a malformed one is an ``InvalidFieldsError`` naming ``field_name``."""
    if text in BUILTINS:
        return ModelRef(text, builtin=text)
    match = _MODEL_REF.match(text)
    if match is None:
        raise InvalidFieldsError(
            [
                {
                    "field": field_name,
                    "message": f"{text[:40]!r} is neither a built-in forecaster "
                    f"({', '.join(BUILTINS)}) nor a registry model as ID, NAME, ID@VERSION "
                    "or NAME@VERSION",
                }
            ]
        )
    version = match.group(2)
    model = match.group(1)
    return ModelRef(
        text,
        model=model.lower() if _is_uuid(model) else model,
        version=int(version[1:]) if version else None,
    )


def level_key(level: float) -> str:
    """The JSON key of a band level: ``95``, ``97.5``."""
    return f"{level:g}"


def check_request(
    horizon: int, levels: list[float] | None, prefix: str = ""
) -> tuple[int, tuple[float, ...]]:
    """The horizon and the sorted levels of a request; every bad field named at once."""
    errors: list[dict[str, str]] = []
    low, high = HORIZON_BOUNDS
    if isinstance(horizon, bool) or not isinstance(horizon, int) or not low <= horizon <= high:
        errors.append(
            {"field": f"{prefix}horizon", "message": f"must be an integer from {low} to {high}"}
        )
    chosen = list(DEFAULT_LEVELS) if levels is None else list(levels)
    if not 1 <= len(chosen) <= MAX_LEVELS:
        errors.append({"field": f"{prefix}levels", "message": f"give 1 to {MAX_LEVELS} levels"})
    seen: set[float] = set()
    for i, level in enumerate(chosen):
        lo, hi = LEVEL_BOUNDS
        if isinstance(level, bool) or not isinstance(level, int | float) or not lo <= level <= hi:
            errors.append(
                {"field": f"{prefix}levels[{i}]", "message": f"must be a percentage {lo:g}-{hi:g}"}
            )
        elif float(level) in seen:
            errors.append({"field": f"{prefix}levels[{i}]", "message": "repeats a level"})
        else:
            seen.add(float(level))
    if errors:
        raise InvalidFieldsError(errors)
    return horizon, tuple(sorted(seen))


def describe_builtins() -> list[dict[str, Any]]:
    """The built-in forecasters as ``GET …/forecasters`` lists them."""
    return [
        {
            "name": f.name,
            "family": f.family,
            "description": f.description,
            "distribution": f.distribution,
            "settings": dict(f.settings),
            "min_history": f.min_history,
        }
        for f in BUILTINS.values()
    ]


def mlp_min_history(dataset_spec: dict[str, Any]) -> int:
    """Bars up to the cutoff an ``mlp_regressor`` needs: a full row of its dataset's
    features (``lags`` returns, ``window``-day volatilities) and its spread model's 60
    returns (the same floor as the baselines)."""
    lags = int(dataset_spec.get("lags", 5))
    window = int(dataset_spec.get("window", 20))
    return max(lags + 1, window + 1, 61)
