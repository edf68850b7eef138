"""The registry ``mlp_regressor`` forecaster: a trained MLP's next-day log return, served.

A :class:`MlpForecaster` wraps one ``application.ports.TrainedModel``: the parameters
exported by ``infrastructure.jax_trainer.Trainer.export`` (read by ``load_model``) and
the resolved spec of the dataset they were trained on.

Features: the rows of ``domain.ml.features.with_feature_columns`` — the function that
built the training dataset — computed from the series' bars dated on or after the
dataset's ``start`` (as the dataset did: its features never saw earlier bars, so a date
inside the dataset's range gets bit-identical features) up to the last origin requested.
Every feature is a trailing function of the bars up to its own row, so the row of an
origin reads nothing after its cutoff. One batched predict for all origins, in chunks
of one fixed shape (see :meth:`MlpForecaster.predict`).

Model of the cumulative log return at origin ``t`` (the engine, ``engine._Mlp``, builds
it from :meth:`MlpForecaster.predict`):

- mean: ``loc_k = m_t`` for every step ``k``, ``m_t`` the model's prediction of
  ``r_{t+1}`` (float32, as trained), i.e. the step-1 prediction plus ``(k - 1) x 0``.
  The model predicts one day ahead from features of known bars; iterating it on its own
  output would need the future highs and lows its volatility features read, so later
  days take the random walk's zero expected return.
- spread: the ``ewma`` built-in's RiskMetrics variance ``s2`` of the returns up to ``t``
  (its ``lambda`` and ``window``), ``scale_k = sqrt(k s2)``, normal. A volatility model
  rather than the validation residuals' spread, because a constant spread ignores
  volatility clustering; conformal calibration on the MLP's own studentized residuals
  (``(y - m_t) / sqrt(k s2)``) then sets the level.

Out of sample: origins dated before ``out_of_sample_from`` (the dataset's validation
start) lie among the rows the weights were fitted on, so they are refused, and the
engine calibrates only from origins on or after it (``first_origin``). Refused as
``ForecastError``: a dataset target other than ``log_return``; feature columns that
differ from the spec's; an artifact that is not an exported ``mlp_regressor`` with one
input per feature column; ``volume_change`` among the features of a series without
``volume``; an origin before ``out_of_sample_from`` or without the bars its features need
(named: needed, available); a requested origin where a feature is not defined (a zero
low or volume in its reach; as a calibration origin it just gives no score).
"""

from __future__ import annotations

import struct
from datetime import date
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import polars as pl

from application.ports import ForecastError, PriceSeries, TrainedModel
from domain.errors import InvalidFieldsError
from domain.ml.features import (
    DatasetSpec,
    feature_columns,
    parse_dataset_spec,
    with_feature_columns,
)
from domain.predictions.forecasters import MLP_REGRESSOR
from infrastructure.jax_trainer import MAGIC, load_model

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_PREDICT_ROWS = 256
_VOLUME = "volume_change"


def _history(spec: DatasetSpec) -> int:
    """Bars (from the dataset's start) a row needs before every feature is defined."""
    need = {
        "log_returns": spec.lags + 1,
        "rolling_volatility": spec.window + 1,
        "range_volatility": spec.window,
        _VOLUME: 2,
    }
    return max(need[f] for f in spec.features)


def _header(artifact: bytes) -> dict[str, Any]:
    """An export's header (the format ``jax_trainer`` documents)."""
    offset = len(MAGIC) + 4
    if artifact[: len(MAGIC)] != MAGIC or len(artifact) < offset:
        raise ForecastError("the model's artifact is not an exported aimm MLP")
    (length,) = struct.unpack("<I", artifact[len(MAGIC) : offset])
    try:
        header = msgspec.json.decode(artifact[offset : offset + length])
    except msgspec.DecodeError:
        raise ForecastError("the model's artifact has an unreadable header") from None
    if not isinstance(header, dict):
        raise ForecastError("the model's artifact has an unreadable header")
    return header


def _spec(model: TrainedModel) -> DatasetSpec:
    try:
        spec = parse_dataset_spec(dict(model.dataset_spec))
    except InvalidFieldsError as exc:
        raise ForecastError(f"the model's dataset spec is not valid: {exc}") from None
    if spec.target != "log_return":
        raise ForecastError(
            f"mlp_regressor forecasts need a model trained on a log_return target; "
            f"{model.name} v{model.version} was trained on {spec.target!r}"
        )
    if feature_columns(spec) != tuple(model.feature_columns):
        raise ForecastError(
            f"the model's feature columns {list(model.feature_columns)} are not those its "
            f"dataset spec builds {list(feature_columns(spec))}"
        )
    return spec


class MlpForecaster:
    """One trained ``mlp_regressor``: eligible origins and next-day predictions."""

    def __init__(self, model: TrainedModel) -> None:
        self.model = model
        self.spec = _spec(model)
        header = _header(model.artifact)
        if header.get("model_type") != MLP_REGRESSOR:
            raise ForecastError(
                f"{model.name} v{model.version} is a {header.get('model_type')}, "
                f"not an {MLP_REGRESSOR}"
            )
        inputs = (header.get("layer_sizes") or [None])[0]
        if inputs != len(model.feature_columns):
            raise ForecastError(
                f"{model.name} v{model.version} takes {inputs} inputs, and its dataset has "
                f"{len(model.feature_columns)} feature columns"
            )
        try:
            self._predict = load_model(model.artifact)
            self.out_of_sample_from = date.fromisoformat(model.out_of_sample_from)
        except ValueError as exc:
            raise ForecastError(f"{model.name} v{model.version} cannot be loaded: {exc}") from None
        self.history = _history(self.spec)

    def _start(self, dates: np.ndarray) -> int:
        """Index of the first bar on or after the dataset's start."""
        return int(np.searchsorted(dates, np.datetime64(self.spec.start, "D")))

    def first_origin(self, dates: np.ndarray) -> int:
        """The earliest origin it may forecast: out of sample, with the features' history."""
        out_of_sample = int(np.searchsorted(dates, np.datetime64(self.out_of_sample_from, "D")))
        return max(out_of_sample, self._start(dates) + self.history - 1)

    def refusal(self, dates: np.ndarray, origin: int) -> str:
        """Why ``origin`` (before ``first_origin``) cannot be forecast."""
        name = f"{self.model.name} v{self.model.version}"
        if dates[origin] < np.datetime64(self.out_of_sample_from, "D"):
            return (
                f"the origin {dates[origin]} is before {name}'s out-of-sample start "
                f"{self.out_of_sample_from}: its features were among the rows it was fitted on"
            )
        available = max(0, origin - self._start(dates) + 1)
        return (
            f"{name} needs {self.history} bars from its dataset's start {self.spec.start} up "
            f"to the cutoff; the origin {dates[origin]} has {available}"
        )

    def features(self, series: PriceSeries, origins: IntArray) -> np.ndarray:
        """The model's feature rows (float32) at ``origins``, from bars up to the last one.

        A feature that is not defined at an origin (a zero low or volume in its reach) is
        NaN.
        """
        start, last = self._start(series.dates), int(origins.max())
        if origins.min() < start:
            raise ForecastError("an origin lies before the model's dataset start")
        volume = series.volume
        if volume is None:
            if _VOLUME in self.spec.features:
                raise ForecastError(
                    f"{self.model.name} v{self.model.version} reads volume_change, and the "
                    "series has no volume"
                )
            volume = np.full(len(series.close), np.nan)
        bars = pl.DataFrame(
            {
                "date": series.dates[start : last + 1],
                "ticker": ["series"] * (last + 1 - start),
                "open": series.open[start : last + 1],
                "high": series.high[start : last + 1],
                "low": series.low[start : last + 1],
                "close": series.close[start : last + 1],
                "volume": np.asarray(volume[start : last + 1], dtype=np.float64),
            },
            schema_overrides={"date": pl.Date},
        )
        frame = with_feature_columns(self.spec, bars)
        x = frame.select(self.model.feature_columns).to_numpy()[origins - start]
        rows: np.ndarray = np.ascontiguousarray(x, dtype=np.float32)
        return rows

    def predict(self, series: PriceSeries, origins: IntArray) -> FloatArray:
        """``m_t``, the predicted next-day log return at each origin (float64 copies).

        In chunks of exactly ``_PREDICT_ROWS`` rows (the last padded with zeros): XLA's
        float32 matmul rounds a row differently under another batch shape (measured: 6e-8
        between 1 and 256 rows), so a fixed shape is what makes an origin's prediction the
        same in a backtest as alone. NaN where a feature is not defined: such an origin
        gives no calibration score, and the engine refuses it as a requested origin.
        """
        x = self.features(series, origins)
        defined = np.all(np.isfinite(x), axis=1)
        x = np.where(defined[:, None], x, np.float32(0.0))
        padded = np.concatenate([x, np.zeros((-len(x) % _PREDICT_ROWS, x.shape[1]), x.dtype)])
        chunks = [
            self._predict(padded[i : i + _PREDICT_ROWS])
            for i in range(0, len(padded), _PREDICT_ROWS)
        ]
        point: FloatArray = np.concatenate(chunks).astype(np.float64)[: len(x)]
        return np.where(defined, point, np.nan)
