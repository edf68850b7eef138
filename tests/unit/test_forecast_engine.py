"""The forecast engine: equal to the underlying models, causal, origin-independent, calibrated."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import msgspec
import numpy as np
import polars as pl
import pytest

from application.ports import ForecastError, ForecastRequest, OriginForecast, PriceSeries
from domain.predictions.forecasters import BUILTINS, CALIBRATION_DECAY, CALIBRATION_WINDOW
from infrastructure.forecasting.baselines import ewma, random_walk
from infrastructure.forecasting.conformal import CalibrationSettings
from infrastructure.forecasting.distributions import ReturnDistribution, price_quantiles
from infrastructure.forecasting.engine import GARCH_BATCH, ForecastEngine
from infrastructure.forecasting.garch import fit_garch, forecast_variance, percent_log_returns

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "SP500.csv.gz"
LEVELS = (50.0, 80.0, 95.0)
# a short calibration window keeps the GARCH fits of a run few (40 + horizon)
SMALL = ForecastEngine(calibration=CalibrationSettings(window=40, min_scores=20, decay=0.99))
# GARCH origins with 250..499 returns fit 250 of them: one compiled shape for these tests
GARCH_ORIGINS = (330, 401, 477)


def series_of(returns: np.ndarray, first: str = "2001-01-01") -> PriceSeries:
    close = 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
    dates = np.datetime64(first, "D") + np.arange(len(close))
    return PriceSeries(dates, np.roll(close, 1), close * 1.004, close * 0.996, close)


@pytest.fixture(scope="module")
def sp500() -> PriceSeries:
    frame = pl.read_csv(SAMPLE, try_parse_dates=True)
    columns = (frame[c].to_numpy().astype(np.float64) for c in ("open", "high", "low", "close"))
    return PriceSeries(frame["date"].to_numpy().astype("datetime64[D]"), *columns)


def run(
    series: PriceSeries,
    forecaster: str,
    origins: tuple[int, ...],
    horizon: int = 5,
    levels: tuple[float, ...] = LEVELS,
    engine: ForecastEngine = SMALL,
) -> list[OriginForecast]:
    return engine.forecast(ForecastRequest(forecaster, series, origins, horizon, levels))


def in64(fn: Callable[..., ReturnDistribution], returns: np.ndarray, *args: Any, **kw: Any) -> Any:
    """A baseline's distribution computed in float64 (JAX defaults to float32)."""
    with jax.enable_x64(True):
        dist = fn(jnp.asarray(returns, jnp.float64), *args, **kw)
        loc, scale, df = (np.asarray(x) for x in dist)
        return ReturnDistribution(loc, scale, df)  # type: ignore[arg-type]


def returns_before(series: PriceSeries, origin: int, window: int) -> np.ndarray:
    r = np.diff(np.log(series.close[: origin + 1]))
    return r[-window:]


def truncated(series: PriceSeries, end: int) -> PriceSeries:
    return PriceSeries(
        *(getattr(series, f)[:end] for f in ("dates", "open", "high", "low", "close"))
    )


def assert_same(a: OriginForecast, b: OriginForecast) -> None:
    assert (a.origin, a.cutoff, a.df, a.method) == (b.origin, b.cutoff, b.df, b.method)
    assert a.last_close == b.last_close and a.params.keys() == b.params.keys()
    for name in ("loc", "scale", "median", "volatility"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-12, err_msg=name)
    np.testing.assert_allclose(list(a.params.values()), list(b.params.values()), rtol=1e-12)
    for level, (lower, upper) in a.bands.items():
        np.testing.assert_allclose(lower, b.bands[level][0], rtol=1e-12)
        np.testing.assert_allclose(upper, b.bands[level][1], rtol=1e-12)


# -- the models behind the bands ------------------------------------------------------------


@pytest.mark.parametrize("name", ["random_walk", "random_walk_drift"])
def test_random_walk_is_baselines_random_walk_of_the_window(sp500: PriceSeries, name: str) -> None:
    origin = 1200
    (forecast,) = run(sp500, name, (origin,))
    window = returns_before(sp500, origin, 250)
    dist = in64(random_walk, window, 5, drift=BUILTINS[name].settings["drift"])
    np.testing.assert_allclose(forecast.loc, np.asarray(dist.loc), rtol=1e-12, atol=1e-18)
    np.testing.assert_allclose(forecast.scale, np.asarray(dist.scale), rtol=1e-12)
    sigma = float(np.std(window, ddof=1))
    assert forecast.params["sigma"] == pytest.approx(sigma, rel=1e-12)
    assert forecast.params["window"] == 250.0 and forecast.df == (None,) * 5
    np.testing.assert_allclose(forecast.volatility, [sigma * math.sqrt(252)] * 5, rtol=1e-12)
    assert forecast.cutoff == str(sp500.dates[origin])
    assert forecast.median[0] == pytest.approx(sp500.close[origin] * math.exp(forecast.loc[0]))


def test_ewma_is_baselines_ewma_of_the_window(sp500: PriceSeries) -> None:
    origin = 2000
    (forecast,) = run(sp500, "ewma", (origin,))
    dist = in64(ewma, returns_before(sp500, origin, 500), 5)
    np.testing.assert_allclose(forecast.scale, np.asarray(dist.scale), rtol=1e-10)
    assert forecast.loc == (0.0,) * 5
    variance = float(np.asarray(dist.scale)[0]) ** 2
    np.testing.assert_allclose(forecast.volatility, [math.sqrt(252 * variance)] * 5, rtol=1e-10)


def test_a_short_history_uses_all_its_returns(sp500: PriceSeries) -> None:
    (rw,) = run(sp500, "random_walk", (100,))
    (smoothed,) = run(sp500, "ewma", (100,))
    window = returns_before(sp500, 100, 250)
    assert len(window) == 100 and rw.params["window"] == 100.0
    assert rw.scale[0] == pytest.approx(float(np.std(window, ddof=1)), rel=1e-12)
    assert smoothed.scale[0] == pytest.approx(float(in64(ewma, window, 1).scale[0]), rel=1e-10)


def test_too_few_scores_give_the_models_own_price_quantiles_and_say_so(sp500: PriceSeries) -> None:
    origin = 70  # random_walk starts at origin 60: 10 earlier origins, 20 needed
    (forecast,) = run(sp500, "random_walk_drift", (origin,), horizon=3)
    assert forecast.method["calibration"] == "none"
    assert forecast.method["scores"] == 8 and forecast.method["calibrated_steps"] == 0
    dist = in64(random_walk, returns_before(sp500, origin, 250), 3, drift=True)
    fractions = np.asarray(LEVELS) / 100
    probs = np.concatenate([(1 - fractions) / 2, (1 + fractions) / 2])
    expected = np.asarray(price_quantiles(sp500.close[origin], dist, probs, percent=False))
    for j, level in enumerate(LEVELS):
        np.testing.assert_allclose(forecast.bands[level][0], expected[:, j], rtol=1e-12)
        np.testing.assert_allclose(forecast.bands[level][1], expected[:, j + 3], rtol=1e-12)


def test_a_level_the_weights_cannot_reach_keeps_the_model_quantile(sp500: PriceSeries) -> None:
    (forecast,) = run(sp500, "ewma", (1000,), horizon=2, levels=(80.0, 99.0))
    # 40 scores weigh about 33: 99 % needs 199, 80 % only 9
    assert forecast.method["calibration"] == "partial"
    assert forecast.method["model_levels"] == [99.0]
    assert forecast.method["scores"] == 40
    assert 0 < forecast.method["effective_scores"] <= 40


@pytest.mark.parametrize("name", ["garch", "garch_t"])
def test_garch_is_fit_garch_of_the_window_in_decimal_units(sp500: PriceSeries, name: str) -> None:
    origin = GARCH_ORIGINS[1]
    (forecast,) = run(sp500, name, (origin,))
    window = percent_log_returns(sp500.close[: origin + 1])[-250:]
    innovations = BUILTINS[name].settings["innovations"]
    # the engine's shape (a chunk of GARCH_BATCH windows): no second compilation
    fit = fit_garch(np.repeat(window[None], GARCH_BATCH, axis=0), innovations)
    mu, nu = float(fit.params.mu[0]), float(fit.params.nu[0])
    h = np.asarray(forecast_variance(fit, 5))[0]
    k = np.arange(1, 6)
    t_factor = (nu - 2) / nu if name == "garch_t" else 1.0
    np.testing.assert_allclose(forecast.loc, k * mu / 100, rtol=1e-9)
    np.testing.assert_allclose(forecast.scale, np.sqrt(np.cumsum(h) * t_factor) / 100, rtol=1e-9)
    np.testing.assert_allclose(forecast.volatility, np.sqrt(252 * h) / 100, rtol=1e-9)
    assert forecast.params["mu"] == pytest.approx(mu / 100, rel=1e-9)
    assert forecast.params["omega"] == pytest.approx(float(fit.params.omega[0]) / 1e4, rel=1e-9)
    assert forecast.params["alpha"] == pytest.approx(float(fit.params.alpha[0]), rel=1e-9)
    ll = float(fit.loglikelihood[0]) + 250 * math.log(100)
    assert forecast.params["loglikelihood"] == pytest.approx(ll, rel=1e-9)
    assert forecast.params["window"] == 250.0 and forecast.params["converged"] == 1.0
    if name == "garch_t":
        np.testing.assert_allclose(np.asarray(forecast.df, dtype=float), [nu] * 5, rtol=1e-12)
        assert forecast.params["nu"] == pytest.approx(nu)
        assert forecast.method["distribution"] == "student_t"
    else:
        assert forecast.df == (None,) * 5 and "nu" not in forecast.params


# -- causality, independence, shape -----------------------------------------------------------


def perturbed_after(series: PriceSeries, cutoff: int, seed: int) -> PriceSeries:
    factor = np.ones(len(series.close))
    factor[cutoff + 1 :] = np.exp(
        np.random.default_rng(seed).normal(0, 0.05, len(factor) - cutoff - 1)
    )
    return PriceSeries(
        series.dates, series.open * factor, series.high * factor, series.low * factor,
        series.close * factor,
    )  # fmt: skip


@pytest.mark.parametrize("name", ["random_walk", "random_walk_drift", "ewma", "garch"])
def test_a_forecast_is_a_function_of_the_bars_up_to_its_cutoff(
    sp500: PriceSeries, name: str
) -> None:
    origins = GARCH_ORIGINS if name == "garch" else (150, 777, 3001)
    full = run(sp500, name, origins)
    for forecast in full:
        t = forecast.origin
        (cut,) = run(truncated(sp500, t + 1), name, (t,))
        (changed,) = run(perturbed_after(sp500, t, seed=t), name, (t,))
        assert_same(forecast, cut)
        assert_same(forecast, changed)


@pytest.mark.parametrize("name", ["random_walk_drift", "garch"])
def test_a_batch_forecast_equals_the_single_forecasts(sp500: PriceSeries, name: str) -> None:
    origins = GARCH_ORIGINS if name == "garch" else (90, 1500, 1501, 4000)
    batch = run(sp500, name, origins)
    assert [f.origin for f in batch] == list(origins)
    for forecast in batch:
        (single,) = run(sp500, name, (forecast.origin,))
        assert_same(forecast, single)


@pytest.mark.parametrize("name", ["ewma", "garch"])
def test_the_first_steps_of_a_long_horizon_are_the_short_horizon(
    sp500: PriceSeries, name: str
) -> None:
    (long,) = run(sp500, name, (GARCH_ORIGINS[2],), horizon=6)
    (short,) = run(sp500, name, (GARCH_ORIGINS[2],), horizon=2)
    np.testing.assert_allclose(long.scale[:2], short.scale, rtol=1e-12)
    for level in LEVELS:
        np.testing.assert_allclose(long.bands[level][0][:2], short.bands[level][0], rtol=1e-12)
        np.testing.assert_allclose(long.bands[level][1][:2], short.bands[level][1], rtol=1e-12)


@pytest.mark.parametrize("name", ["random_walk_drift", "ewma"])
def test_bands_nest_around_the_median_and_widen_with_the_horizon(
    sp500: PriceSeries, name: str
) -> None:
    levels = (50.0, 80.0, 95.0, 99.0)
    forecasts = run(sp500, name, tuple(range(200, 5000, 7)), horizon=10, levels=levels,
                    engine=ForecastEngine())  # fmt: skip
    for f in forecasts:
        lower = np.log(np.asarray([f.bands[level][0] for level in levels])) - np.asarray(f.loc)
        upper = np.log(np.asarray([f.bands[level][1] for level in levels])) - np.asarray(f.loc)
        lower -= math.log(f.last_close)
        upper -= math.log(f.last_close)
        slack = 1e-12
        assert np.all(np.diff(lower, axis=0) <= slack) and np.all(np.diff(upper, axis=0) >= -slack)
        assert np.all(np.diff(lower, axis=1) <= slack) and np.all(np.diff(upper, axis=1) >= -slack)
        assert np.all(lower <= slack) and np.all(upper >= -slack)  # the median in every band


# -- calibration, measured ------------------------------------------------------------------


def coverage(forecasts: list[OriginForecast], series: PriceSeries, level: float) -> float:
    hits = [
        f.bands[level][0][0] <= series.close[f.origin + 1] <= f.bands[level][1][0]
        for f in forecasts
    ]
    return float(np.mean(hits))


def model_coverage(forecasts: list[OriginForecast], series: PriceSeries, level: float) -> float:
    z = {80.0: 1.2815515655446004, 95.0: 1.959963984540054}[level]
    y = np.log(series.close[[f.origin + 1 for f in forecasts]] / [f.last_close for f in forecasts])
    loc = np.asarray([f.loc[0] for f in forecasts])
    scale = np.asarray([f.scale[0] for f in forecasts])
    return float(np.mean(np.abs(y - loc) <= z * scale))


def binomial_band(level: float, n: int) -> float:
    """3.5 standard errors of a coverage over n origins, plus the test point's mass
    ``1 / (W + 1)`` (W the scores' total weight at step 1, 183 with the default settings),
    by which a conformal band may over-cover."""
    weight = sum(CALIBRATION_DECAY ** (1 + j) for j in range(CALIBRATION_WINDOW))
    return 3.5 * math.sqrt(level * (1 - level) / n) + 1 / (weight + 1)


@pytest.mark.parametrize("innovations", ["normal", "student_t_3"])
def test_calibrated_coverage_is_near_nominal_on_iid_returns(innovations: str) -> None:
    rng = np.random.default_rng(2024)
    n = 2400
    if innovations == "normal":
        returns = rng.normal(0.0, 0.01, n)
    else:  # heavy tails: the random walk's normal bands over-cover at 80 %
        returns = rng.standard_t(3, n) * 0.01
    series = series_of(returns)
    forecasts = run(series, "random_walk", tuple(range(400, n - 1)), horizon=1,
                    levels=(80.0, 95.0), engine=ForecastEngine())  # fmt: skip
    assert all(f.method["calibration"] == "weighted_conformal" for f in forecasts[100:])
    for level in (80.0, 95.0):
        measured = coverage(forecasts, series, level)
        assert abs(measured - level / 100) <= binomial_band(level / 100, len(forecasts))
    if innovations != "normal":
        own = model_coverage(forecasts, series, 80.0)
        assert own - 0.80 > binomial_band(0.80, len(forecasts))


# -- refusals -------------------------------------------------------------------------------


def test_too_few_bars_are_refused_with_the_counts(sp500: PriceSeries) -> None:
    with pytest.raises(ForecastError, match=r"random_walk needs 61 bars .* has 31"):
        run(sp500, "random_walk", (30, 100))
    with pytest.raises(ForecastError, match=r"garch needs 251 bars .* has 200"):
        run(sp500, "garch", (199,))


def test_a_non_positive_close_is_refused_by_date(sp500: PriceSeries) -> None:
    close = sp500.close.copy()
    close[90] = 0.0
    bad = PriceSeries(sp500.dates, sp500.open, sp500.high, sp500.low, close)
    with pytest.raises(ForecastError, match=rf"close of {sp500.dates[90]} is 0.0"):
        run(bad, "random_walk", (100,))
    # a bad close no forecast reads (after the cutoff, or before every window) changes nothing
    assert_same(run(bad, "random_walk", (80,))[0], run(sp500, "random_walk", (80,))[0])
    assert_same(run(bad, "random_walk", (400,))[0], run(sp500, "random_walk", (400,))[0])


@pytest.mark.parametrize(
    ("forecaster", "origins", "horizon", "levels", "message"),
    [
        ("arima", (100,), 1, LEVELS, "unknown forecaster 'arima'"),
        ("mlp_regressor", (100,), 1, LEVELS, "needs the trained model"),
        ("ewma", (), 1, LEVELS, "no origins"),
        ("ewma", (100, 100), 1, LEVELS, "strictly increasing"),
        ("ewma", (100, 6000), 1, LEVELS, "bar indices from 0 to"),
        ("ewma", (100,), 0, LEVELS, "at least 1 step"),
        ("ewma", (100,), 1, (80.0, 100.0), "strictly between 0 and 100"),
    ],
)
def test_bad_requests_are_refused(
    sp500: PriceSeries,
    forecaster: str,
    origins: tuple[int, ...],
    horizon: int,
    levels: tuple[float, ...],
    message: str,
) -> None:
    with pytest.raises(ForecastError, match=message):
        run(sp500, forecaster, origins, horizon, levels)


def test_params_and_method_are_plain_json(sp500: PriceSeries) -> None:
    (forecast,) = run(sp500, "random_walk_drift", (2500,))
    decoded = msgspec.json.decode(msgspec.json.encode({"p": forecast.params, "m": forecast.method}))
    assert decoded["m"]["forecaster"] == "random_walk_drift"
    assert all(math.isfinite(v) for v in forecast.params.values())
