"""The forecast engine: ``application.ports.Forecaster`` over the catalogue's forecasters.

``ForecastEngine(catalogue=BUILTINS, calibration=CalibrationSettings(), garch_batch=32)``;
``engine.forecast(ForecastRequest(...))`` returns one ``OriginForecast`` per requested
origin, in order. A forecaster is a built-in of ``domain.predictions.forecasters`` (its
settings and ``min_history`` read from the catalogue given) or ``"mlp_regressor"`` with
``request.model`` (:mod:`infrastructure.forecasting.mlp`).

Contract
--------
- Step ``k`` is the ``k``-th bar after the cutoff ``T`` (the origin). Every forecaster
  gives, per step, a location-scale distribution (normal or Student-t) of the cumulative
  **decimal** log return ``ln(close_{T+k} / close_T)`` (GARCH, fitted on percent returns,
  is converted: location and scale divided by 100). ``loc`` is its median; the price
  median is ``close_T exp(loc)``, and a band ``[close_T exp(loc + lo), close_T exp(loc +
  hi)]``.
- Causality: the forecast at origin ``i`` is a function of ``series[: i + 1]`` alone,
  its calibration included: raw forecasts read the bars up to their own origin, and the
  calibration of origin ``t`` reads raw forecasts at origins ``t' <= t - k`` and their
  realised targets ``close_{t'+k}``, ``t' + k <= t``. Nothing after a cutoff enters it.
- Origin independence: each raw forecast is refitted from its own window at its own
  origin (GARCH is refitted at every origin and every calibration origin), so a batch's
  forecast at ``t`` equals a request for ``t`` alone. A batch only shares work: the
  raw forecasts of the union of the requested origins and their calibration origins are
  computed once (GARCH: one vmapped ``fit_garch`` call per chunk of ``garch_batch``
  windows of one length, never a Python loop over fits; the MLP: one predict in chunks
  of one fixed shape), and the first ``k`` steps of a horizon-``H`` forecast equal the
  horizon-``k`` forecast.
- Errors (``ForecastError``): an unknown forecaster, ``mlp_regressor`` without a model
  (or a built-in with one), origins out of range or not increasing, a horizon under 1,
  levels outside (0, 100), an origin with fewer bars than the forecaster's
  ``min_history`` (named: needed and available), a non-positive or non-finite close among
  the bars a forecast reads (named by date), a requested origin whose own raw forecast is
  not finite (an MLP feature undefined there; a calibration origin in that state just
  gives no score), and the MLP's own refusals (see ``mlp``).

Raw forecasts (``window`` and ``min_history`` from the catalogue; ``n`` returns used)
--------------------------------------------------------------------------------------
Returns ``r_j = ln(close_j / close_{j-1})``; origin ``t`` (0-based) has ``t`` of them and
uses the last ``n = min(window, t)``; ``min_history`` bars means ``min_history - 1``
returns at least.

- ``random_walk`` / ``random_walk_drift``: ``m`` the mean and ``s`` the sample standard
  deviation (ddof 1) of the ``n`` returns; step ``k``: normal, ``loc = k m`` (drift) or
  0, ``scale = s sqrt(k)`` (``baselines.random_walk``). Per-day variance ``s^2``.
  Params: ``drift`` (``m`` or 0), ``sigma`` (``s``), ``window`` (``n``).
- ``ewma``: RiskMetrics with ``lambda``: ``s2 = lambda^(n-1) r_1^2 + (1 - lambda) sum_{j=2..n}
  lambda^(n-j) r_j^2`` over the window's returns ``r_1..r_n`` (the closed form of
  ``baselines.ewma_variance``'s recursion started at ``r_1^2``); step ``k``: normal,
  ``loc = 0``, ``scale = sqrt(k s2)``. Per-day variance ``s2``. Params: ``variance``,
  ``lambda``, ``window``.
  Both are computed here in numpy, vectorised over origins with a mask (a window may be
  short early in a series, and the JAX functions would need one compiled shape per
  length); tests hold them equal to ``baselines``' functions.
- ``garch`` / ``garch_t``: ``garch.fit_garch`` on the percent log returns of the window,
  ``garch.predictive(...).cumulative`` for the steps (loc and scale / 100, ``df = nu``),
  per-day variance ``h_{T+k} / 100^2`` (``garch.forecast_variance``). The window length
  is the largest of ``window, window // 2, window // 4, ...`` (those not below
  ``min_history - 1``) and ``min_history - 1`` itself that the origin's returns reach:
  with the catalogue's 1000 and 251, 1000, 500 or 250 returns. A fixed set of lengths
  keeps the compiled shapes few (each (batch, length) shape compiles once, ~10-30 s
  here); the windows of a chunk are padded to ``garch_batch`` rows by repeating its last.
  Params (decimal units): ``mu``, ``omega``, ``alpha``, ``beta``, ``nu`` (``garch_t``),
  ``loglikelihood`` (of the decimal returns: ``fit_garch``'s, of percent returns, plus
  ``n ln 100``), ``converged`` (1 or 0), ``iterations``, ``window``.
- ``mlp_regressor``: ``loc_k`` the model's next-day prediction for every ``k``, the
  spread the ``ewma`` built-in's EWMA (``scale = sqrt(k s2)``), normal; see ``mlp``.
  Origins dated before the model's ``out_of_sample_from`` are neither forecast (refused)
  nor calibration origins (the earliest origin the model may forecast bounds both), so
  no score comes from rows its weights were fitted on. Params: ``version``,
  ``point_forecast``, ``variance``, ``window``; ``method`` names the model id and name
  (``params`` holds numbers only).

Volatility per step: ``sqrt(252 v_k)``, ``v_k`` the per-day variance of step ``k``'s
one-day return above (GARCH ``h_{T+k}``, the others constant across steps).

Bands: :mod:`infrastructure.forecasting.conformal` (weighted conformal on the
forecaster's own studentized rolling-origin residuals, with the model's quantiles where
the scores are too few or the weights cannot reach a level; nested and widening by
construction). ``method``: ``forecaster``, ``distribution`` (``normal`` or
``student_t``), ``calibration`` (``weighted_conformal`` when every step and level is
calibrated, ``none`` when none is, else ``partial``), ``scores`` and
``effective_scores`` (of the last step, which has the fewest), ``calibrated_steps``,
``model_levels`` (levels that kept the model's quantiles at some calibrated step),
``monotone_adjustments`` (offsets the nesting/widening passes moved), and the
calibration settings (``calibration_window``, ``min_scores``, ``decay``).

Speed (``benchmarks/coverage.py``, two shared cores, 2026-12-07): a single GARCH forecast
at horizon 20 with its calibration (520 fits of 1000 returns) takes about 1 s (``garch``)
to 1.7 s (``garch_t``) once compiled; the first use of each window length compiles for
10-30 s. Backtests of ~4,400 origins at horizon 20: random walks and EWMA 600-800
forecasts/s (the calibration's sorting dominates), ``mlp_regressor`` ~640/s, ``garch``
250-310/s, ``garch_t`` ~50/s (a chunk's vmapped fit runs as long as its slowest window).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

from application.ports import ForecastError, ForecastRequest, OriginForecast, PriceSeries
from domain.predictions.forecasters import (
    BUILTINS,
    MAX_LEVELS,
    MLP_REGRESSOR,
    TRADING_DAYS_PER_YEAR,
    Forecaster,
)
from infrastructure.forecasting.conformal import (
    BoolArray,
    Calibration,
    CalibrationSettings,
    FloatArray,
    IntArray,
    band_offsets,
    calibrate,
    studentized_scores,
)
from infrastructure.forecasting.distributions import standard_quantile
from infrastructure.forecasting.garch import fit_garch, forecast_variance, predictive
from infrastructure.forecasting.mlp import MlpForecaster

GARCH_BATCH = 32  # windows per fit_garch call: one compiled shape per window length
_QUANTILE_ROWS = 64  # rows of a standard-quantile call are padded to a multiple of this


@dataclass(frozen=True)
class RawForecasts:
    """A forecaster's own forecasts at ``origins`` (rows), steps 1..H (columns)."""

    origins: IntArray
    loc: FloatArray  # of the cumulative decimal log return
    scale: FloatArray
    df: FloatArray  # (origins,): inf for the normal
    variance: FloatArray  # per-day variance of each step's one-day return
    params: list[dict[str, float]]


class _Model(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def distribution(self) -> str: ...

    @property
    def lookback(self) -> int:
        """Bars before an origin its raw forecast may read."""
        ...

    @property
    def undefined(self) -> str:
        """Why a raw forecast may come out NaN."""
        ...

    def first_origin(self, series: PriceSeries) -> int: ...

    def refusal(self, series: PriceSeries, origin: int) -> str: ...

    def raw(self, series: PriceSeries, origins: IntArray, horizon: int) -> RawForecasts: ...

    def describe(self) -> dict[str, Any]: ...


# -- windows of returns ----------------------------------------------------------------------


def _positive(close: FloatArray) -> FloatArray:
    """The closes, NaN where one is not positive and finite (checked before use)."""
    safe: FloatArray = np.where(np.isfinite(close) & (close > 0), close, np.nan)
    return safe


def _log_returns(close: FloatArray) -> FloatArray:
    """``r_j = ln(c_j / c_{j-1})`` at index ``j - 1``; NaN where a close is not positive."""
    returns: FloatArray = np.diff(np.log(_positive(close)))
    return returns


def _trailing(returns: FloatArray, origins: IntArray, width: int) -> tuple[FloatArray, BoolArray]:
    """Each origin's last ``width`` returns as a right-aligned row, and which are real.

    Origin ``t`` has the returns ``r_1..r_t`` (indices ``0..t-1``); fewer than ``width``
    are padded on the left with zeros marked False.
    """
    index = origins[:, None] - width + np.arange(width)[None, :]
    real = index >= 0
    values = np.where(real, returns[np.where(real, index, 0)], 0.0)
    return values, real


def _steps(horizon: int) -> FloatArray:
    return np.arange(1, horizon + 1, dtype=np.float64)


def _count(name: str, need: int, origin: int, series: PriceSeries) -> str:
    return (
        f"{name} needs {need} bars up to and including the cutoff; the origin "
        f"{series.dates[origin]} (index {origin}) has {origin + 1}"
    )


# -- built-ins ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Builtin:
    spec: Forecaster

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def distribution(self) -> str:
        return self.spec.distribution

    @property
    def window(self) -> int:
        return int(self.spec.settings["window"])

    @property
    def lookback(self) -> int:
        return self.window

    @property
    def undefined(self) -> str:
        return "its window's returns or fit are not finite"

    def first_origin(self, series: PriceSeries) -> int:
        return self.spec.min_history - 1

    def refusal(self, series: PriceSeries, origin: int) -> str:
        return _count(self.name, self.spec.min_history, origin, series)

    def describe(self) -> dict[str, Any]:
        return {}

    def raw(self, series: PriceSeries, origins: IntArray, horizon: int) -> RawForecasts:
        family = self.spec.family
        if family == "random_walk":
            return self._random_walk(series, origins, horizon)
        if family == "ewma":
            return _ewma(series, origins, horizon, self.window, float(self.spec.settings["lambda"]))
        raise ForecastError(f"the built-in family {family!r} has no raw forecast here")

    def _random_walk(self, series: PriceSeries, origins: IntArray, horizon: int) -> RawForecasts:
        values, real = _trailing(_log_returns(series.close), origins, self.window)
        count = np.sum(real, axis=1)
        mean = np.sum(values, axis=1) / count
        deviations = np.where(real, values - mean[:, None], 0.0)
        variance = np.sum(deviations**2, axis=1) / (count - 1)
        sigma = np.sqrt(variance)
        k = _steps(horizon)
        drift = mean if self.spec.settings["drift"] else np.zeros_like(mean)
        params = [
            {"drift": float(d), "sigma": float(s), "window": float(n)}
            for d, s, n in zip(drift, sigma, count, strict=True)
        ]
        return RawForecasts(
            origins=origins,
            loc=drift[:, None] * k,
            scale=sigma[:, None] * np.sqrt(k),
            df=np.full(len(origins), np.inf),
            variance=np.repeat(variance[:, None], horizon, axis=1),
            params=params,
        )


def ewma_variances(
    series: PriceSeries, origins: IntArray, window: int, lam: float
) -> tuple[FloatArray, IntArray]:
    """RiskMetrics ``s2`` at each origin from its last ``window`` returns, and how many."""
    values, real = _trailing(_log_returns(series.close), origins, window)
    count = np.sum(real, axis=1)
    age = (window - 1 - np.arange(window))[None, :]  # 0 for the newest return
    oldest = (count - 1)[:, None]
    weights = np.where(
        age < oldest, (1.0 - lam) * lam**age, np.where(age == oldest, lam**oldest, 0.0)
    )
    variance: FloatArray = np.sum(weights * values**2, axis=1)
    return variance, count


def _ewma(
    series: PriceSeries, origins: IntArray, horizon: int, window: int, lam: float
) -> RawForecasts:
    variance, count = ewma_variances(series, origins, window, lam)
    k = _steps(horizon)
    params = [
        {"variance": float(v), "lambda": lam, "window": float(n)}
        for v, n in zip(variance, count, strict=True)
    ]
    return RawForecasts(
        origins=origins,
        loc=np.zeros((len(origins), horizon)),
        scale=np.sqrt(variance[:, None] * k),
        df=np.full(len(origins), np.inf),
        variance=np.repeat(variance[:, None], horizon, axis=1),
        params=params,
    )


@dataclass(frozen=True)
class _Garch(_Builtin):
    batch: int = GARCH_BATCH

    def lengths(self, origins: IntArray) -> IntArray:
        """The window length of each origin (module docstring)."""
        floor = self.spec.min_history - 1
        options = {floor}
        length = self.window
        while length >= floor:
            options.add(length)
            length //= 2
        ladder = np.asarray(sorted(options))
        position = np.searchsorted(ladder, origins, side="right") - 1
        chosen: IntArray = ladder[np.maximum(position, 0)]
        return chosen

    def raw(self, series: PriceSeries, origins: IntArray, horizon: int) -> RawForecasts:
        # garch.percent_log_returns' arithmetic, NaN where a close no window reads is bad
        percent = 100.0 * _log_returns(series.close[: int(origins.max()) + 1])
        lengths = self.lengths(origins)
        out = _GarchArrays.empty(len(origins), horizon)
        for length in np.unique(lengths):
            rows = np.flatnonzero(lengths == length)
            for start in range(0, len(rows), self.batch):
                chunk = rows[start : start + self.batch]
                self._fit_chunk(percent, origins[chunk], int(length), horizon, out, chunk)
        return out.forecasts(origins, self.spec.settings["innovations"] == "t")

    def _fit_chunk(  # noqa: PLR0913
        self,
        percent: FloatArray,
        ends: IntArray,
        length: int,
        horizon: int,
        out: _GarchArrays,
        rows: IntArray,
    ) -> None:
        windows = percent[ends[:, None] - length + np.arange(length)[None, :]]
        padding = np.repeat(windows[-1:], self.batch - len(ends), axis=0)
        fit = fit_garch(np.concatenate([windows, padding]), self.spec.settings["innovations"])
        cumulative = predictive(fit, horizon).cumulative
        used = len(ends)
        out.loc[rows] = np.asarray(cumulative.loc)[:used] / 100.0
        out.scale[rows] = np.asarray(cumulative.scale)[:used] / 100.0
        out.variance[rows] = np.asarray(forecast_variance(fit, horizon))[:used] / 100.0**2
        p = fit.params
        out.mu[rows] = np.asarray(p.mu)[:used] / 100.0
        out.omega[rows] = np.asarray(p.omega)[:used] / 100.0**2
        out.alpha[rows] = np.asarray(p.alpha)[:used]
        out.beta[rows] = np.asarray(p.beta)[:used]
        out.nu[rows] = np.asarray(p.nu)[:used]
        out.loglikelihood[rows] = np.asarray(fit.loglikelihood)[:used] + length * math.log(100.0)
        out.converged[rows] = np.asarray(fit.converged)[:used]
        out.iterations[rows] = np.asarray(fit.iterations)[:used]
        out.window[rows] = length


@dataclass(frozen=True)
class _GarchArrays:
    """The fits of every origin, filled chunk by chunk."""

    loc: FloatArray
    scale: FloatArray
    variance: FloatArray
    mu: FloatArray
    omega: FloatArray
    alpha: FloatArray
    beta: FloatArray
    nu: FloatArray
    loglikelihood: FloatArray
    converged: FloatArray
    iterations: FloatArray
    window: FloatArray

    @classmethod
    def empty(cls, origins: int, horizon: int) -> _GarchArrays:
        steps = [np.full((origins, horizon), np.nan) for _ in range(3)]
        scalars = [np.full(origins, np.nan) for _ in range(9)]
        return cls(*steps, *scalars)

    def forecasts(self, origins: IntArray, student: bool) -> RawForecasts:
        names = ("mu", "omega", "alpha", "beta", "loglikelihood", "converged", "iterations")
        columns = {name: getattr(self, name) for name in names}
        if student:
            columns["nu"] = self.nu
        columns["window"] = self.window
        params = [
            {name: float(values[i]) for name, values in columns.items()}
            for i in range(len(origins))
        ]
        return RawForecasts(origins, self.loc, self.scale, self.nu, self.variance, params)


# -- the registry MLP ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Mlp:
    """``mlp_regressor``: the model's mean, the ``ewma`` built-in's spread."""

    model: MlpForecaster
    spread: Forecaster
    name: str = MLP_REGRESSOR
    distribution: str = "normal"

    @property
    def window(self) -> int:
        return int(self.spread.settings["window"])

    @property
    def lookback(self) -> int:
        return max(self.window, self.model.history)

    @property
    def undefined(self) -> str:
        return "its features are not all defined there (a zero low or volume in their reach)"

    def first_origin(self, series: PriceSeries) -> int:
        return max(self.model.first_origin(series.dates), self.spread.min_history - 1)

    def refusal(self, series: PriceSeries, origin: int) -> str:
        if origin < self.model.first_origin(series.dates):
            return self.model.refusal(series.dates, origin)
        return _count(self.name, self.spread.min_history, origin, series)

    def describe(self) -> dict[str, Any]:
        trained = self.model.model
        return {"model_id": trained.model_id, "model_name": trained.name, "spread": "ewma"}

    def raw(self, series: PriceSeries, origins: IntArray, horizon: int) -> RawForecasts:
        point = self.model.predict(series, origins)
        lam = float(self.spread.settings["lambda"])
        variance, count = ewma_variances(series, origins, self.window, lam)
        k = _steps(horizon)
        version = float(self.model.model.version)
        params = [
            {"version": version, "point_forecast": float(m), "variance": float(v),
             "window": float(n)}
            for m, v, n in zip(point, variance, count, strict=True)
        ]  # fmt: skip
        return RawForecasts(
            origins=origins,
            loc=np.repeat(point[:, None], horizon, axis=1),
            scale=np.sqrt(variance[:, None] * k),
            df=np.full(len(origins), np.inf),
            variance=np.repeat(variance[:, None], horizon, axis=1),
            params=params,
        )


# -- the engine -----------------------------------------------------------------------------


@jax.jit
def _t_quantiles(probs: jax.Array, df: jax.Array) -> jax.Array:
    return standard_quantile(probs[None, :], df[:, None])


def model_offsets(df: FloatArray, levels: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Standard quantiles at ``(1 -+ L) / 2`` per row of ``df``: (rows, levels) each.

    What ``distributions.standard_quantile`` gives, computed once per distinct ``df``:
    ``ndtri`` for the normal, the t bisection (jitted; rows padded to a multiple of
    ``_QUANTILE_ROWS`` and probabilities to one of ``2 * MAX_LEVELS``, so it keeps a few
    compiled shapes) for the others.
    """
    wanted = np.concatenate([(1.0 - levels) / 2.0, (1.0 + levels) / 2.0])
    probs = np.concatenate([wanted, np.full(-len(wanted) % (2 * MAX_LEVELS), 0.5)])
    distinct, inverse = np.unique(df, return_inverse=True)
    finite = np.isfinite(distinct)
    table = np.empty((len(distinct), len(probs)))
    with jax.enable_x64(True):
        p = jnp.asarray(probs, jnp.float64)
        table[~finite] = np.asarray(ndtri(p))
        if finite.any():
            rows = distinct[finite]
            padded = np.concatenate([rows, np.full(-len(rows) % _QUANTILE_ROWS, 8.0)])
            t = np.asarray(_t_quantiles(p, jnp.asarray(padded, jnp.float64)))
            table[finite] = t[: len(rows)]
    z = table[inverse.reshape(-1)]
    return z[:, : len(levels)], z[:, len(levels) : len(wanted)]


class ForecastEngine:
    """Forecasts of the catalogue's forecasters and registry MLPs, conformally calibrated."""

    def __init__(
        self,
        catalogue: Mapping[str, Forecaster] = BUILTINS,
        calibration: CalibrationSettings | None = None,
        garch_batch: int = GARCH_BATCH,
    ) -> None:
        self.catalogue = dict(catalogue)
        self.calibration = calibration or CalibrationSettings()
        self.garch_batch = garch_batch

    def forecast(self, request: ForecastRequest) -> list[OriginForecast]:
        """One forecast per origin of ``request``, in order (module docstring)."""
        model = self._model(request)
        origins = _check_request(request)
        first = model.first_origin(request.series)
        early = origins[origins < first]
        if len(early):
            raise ForecastError(model.refusal(request.series, int(early[0])))
        needed = self._needed(origins, request.horizon, first)
        reach = model.lookback + self.calibration.window + request.horizon - 1
        _check_closes(request.series, origins, reach)
        raw = model.raw(request.series, needed, request.horizon)
        _check_defined(request.series, model, origins, raw)
        return self._assemble(request, model, origins, raw)

    def _model(self, request: ForecastRequest) -> _Model:
        if request.forecaster == MLP_REGRESSOR:
            if request.model is None:
                raise ForecastError("mlp_regressor needs the trained model to run")
            return _Mlp(MlpForecaster(request.model), self.catalogue["ewma"])
        if request.model is not None:
            raise ForecastError(f"the built-in {request.forecaster!r} takes no trained model")
        spec = self.catalogue.get(request.forecaster)
        if spec is None:
            known = ", ".join([*self.catalogue, MLP_REGRESSOR])
            raise ForecastError(f"unknown forecaster {request.forecaster!r} (known: {known})")
        if spec.family == "garch":
            return _Garch(spec, self.garch_batch)
        return _Builtin(spec)

    def _needed(self, origins: IntArray, horizon: int, first: int) -> IntArray:
        """The requested origins and the previous ones their calibration reads."""
        reach = self.calibration.window + horizon - 1
        wanted = np.zeros(int(origins[-1]) + 1, dtype=bool)
        for t in origins:
            wanted[max(first, int(t) - reach) : int(t) + 1] = True
        needed: IntArray = np.flatnonzero(wanted)
        return needed

    def _assemble(
        self, request: ForecastRequest, model: _Model, origins: IntArray, raw: RawForecasts
    ) -> list[OriginForecast]:
        horizon, series = request.horizon, request.series
        last = int(origins[-1])
        loc = np.full((last + 1, horizon), np.nan)
        scale = np.full((last + 1, horizon), np.nan)
        loc[raw.origins], scale[raw.origins] = raw.loc, raw.scale
        log_close = np.log(_positive(series.close[: last + 1]))
        scores = studentized_scores(loc, scale, log_close)
        levels = np.asarray(request.levels, dtype=np.float64) / 100.0
        calibration = calibrate(scores, origins, levels, self.calibration)
        rows = np.searchsorted(raw.origins, origins)
        z_lower, z_upper = model_offsets(raw.df[rows], levels)
        own_scale = raw.scale[rows]
        lower, upper, moved = band_offsets(
            own_scale[..., None] * z_lower[:, None, :],
            own_scale[..., None] * z_upper[:, None, :],
            own_scale,
            calibration,
        )
        extra = model.describe()
        calibrated = calibration.calibrated
        forecasts = []
        for i, t in enumerate(origins):
            row = int(rows[i])
            close = float(series.close[t])
            centre = raw.loc[row]
            method = self._method(model, calibration, calibrated[i], i, request.levels)
            method["monotone_adjustments"] = int(moved[i])
            forecasts.append(
                OriginForecast(
                    origin=int(t),
                    cutoff=str(series.dates[t]),
                    last_close=close,
                    loc=_floats(centre),
                    scale=_floats(raw.scale[row]),
                    df=tuple(
                        None if math.isinf(raw.df[row]) else float(raw.df[row])
                        for _ in range(horizon)
                    ),
                    median=_floats(close * np.exp(centre)),
                    bands={
                        level: (
                            _floats(close * np.exp(centre + lower[i, :, j])),
                            _floats(close * np.exp(centre + upper[i, :, j])),
                        )
                        for j, level in enumerate(request.levels)
                    },
                    volatility=_floats(np.sqrt(TRADING_DAYS_PER_YEAR * raw.variance[row])),
                    params=raw.params[row],
                    method={**method, **extra},
                )
            )
        return forecasts

    def _method(
        self,
        model: _Model,
        calibration: Calibration,
        calibrated: BoolArray,
        i: int,
        levels: tuple[float, ...],
    ) -> dict[str, Any]:
        """``calibrated``: the origin's (steps, levels) cells that the scores set."""
        steps = calibration.scores[i] >= self.calibration.min_scores
        state = "weighted_conformal" if calibrated.all() else "partial"
        if not calibrated.any():
            state = "none"
        model_levels = [
            float(level) for j, level in enumerate(levels) if not calibrated[steps, j].all()
        ]
        return {
            "forecaster": model.name,
            "distribution": model.distribution,
            "calibration": state,
            "scores": int(calibration.scores[i, -1]),
            "effective_scores": round(float(calibration.effective[i, -1]), 1),
            "calibrated_steps": int(np.sum(steps)),
            "model_levels": model_levels if steps.any() else [float(x) for x in levels],
            "calibration_window": self.calibration.window,
            "min_scores": self.calibration.min_scores,
            "decay": self.calibration.decay,
        }


def _floats(values: FloatArray) -> tuple[float, ...]:
    return tuple(np.asarray(values, dtype=np.float64).tolist())


def _check_request(request: ForecastRequest) -> IntArray:
    bars = len(request.series.close)
    origins = np.asarray(request.origins, dtype=np.int64)
    if len(origins) == 0:
        raise ForecastError("no origins requested")
    if origins.min() < 0 or origins.max() >= bars:
        raise ForecastError(f"origins must be bar indices from 0 to {bars - 1}")
    if np.any(np.diff(origins) <= 0):
        raise ForecastError("origins must be strictly increasing")
    if request.horizon < 1:
        raise ForecastError("the horizon must be at least 1 step")
    levels = request.levels
    if not levels or any(not 0.0 < level < 100.0 for level in levels):
        raise ForecastError("levels must be percentages strictly between 0 and 100")
    if any(b <= a for a, b in pairwise(levels)):
        raise ForecastError("levels must be strictly increasing")
    return origins


def _check_defined(
    series: PriceSeries, model: _Model, origins: IntArray, raw: RawForecasts
) -> None:
    """A requested origin's raw forecast must be finite (a calibration origin's may not
    be: it then gives no score)."""
    rows = np.searchsorted(raw.origins, origins)
    finite = np.all(np.isfinite(raw.loc[rows]) & np.isfinite(raw.scale[rows]), axis=1)
    if not finite.all():
        at = int(origins[int(np.argmax(~finite))])
        raise ForecastError(
            f"{model.name} has no finite forecast at {series.dates[at]} (index {at}): "
            f"{model.undefined}"
        )


def _check_closes(series: PriceSeries, origins: IntArray, reach: int) -> None:
    """Every close a forecast reads (``reach`` bars before its origin) positive and finite."""
    close = np.asarray(series.close[: int(origins[-1]) + 1], dtype=np.float64)
    bad = ~(np.isfinite(close) & (close > 0))
    if not bad.any():
        return
    seen = np.concatenate([[0], np.cumsum(bad)])
    for t in origins:
        start = max(0, int(t) - reach)
        if seen[int(t) + 1] > seen[start]:
            at = start + int(np.argmax(bad[start : int(t) + 1]))
            raise ForecastError(
                f"the close of {series.dates[at]} is {close[at]}: closes must be positive "
                f"(the forecast at {series.dates[t]} reads the bars from {series.dates[start]})"
            )
