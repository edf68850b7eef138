"""Diebold-Mariano test and model comparison against dieboldmariano and statsmodels HAC."""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pytest
import statsmodels.api as sm
from dieboldmariano import dm_test

from domain.errors import DomainError
from domain.predictions.accuracy import BANDS_SCHEMA, POINTS_SCHEMA, losses
from domain.predictions.comparison import (
    MIN_ORIGINS,
    InvalidHorizonError,
    MixedTickersError,
    TooFewOriginsError,
    compare,
    diebold_mariano,
)

DAY0 = date(2024, 1, 1)
Array = npt.NDArray[np.float64]


def hln(n: int, h: int) -> float:
    return math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)


def hac_t(d: Array, h: int, kernel: str) -> float:
    """t of the mean of d by an OLS on a constant with HAC covariance (h - 1 lags)."""
    cov = {"maxlags": h - 1, "kernel": kernel, "use_correction": False}
    fit = sm.OLS(d, np.ones(len(d))).fit(cov_type="HAC", cov_kwds=cov)
    return float(fit.tvalues[0])


def ma_forecasts(n: int, h: int, seed: int) -> tuple[Array, Array, Array]:
    """Actuals and two forecasts whose errors are MA(h-1), like overlapping h-step errors."""
    rng = np.random.default_rng(seed)
    y = rng.normal(size=n)
    shocks = rng.normal(size=(2, n + h))
    errors = np.array([np.convolve(s, np.ones(h), "valid")[:n] for s in shocks])
    return y, y + errors[0], y + 1.2 * errors[1]


def negatively_autocorrelated(n: int = 40, seed: int = 5) -> tuple[Array, Array]:
    """Two loss series whose difference alternates in sign: the truncated kernel fails."""
    rng = np.random.default_rng(seed)
    d = 2 * np.where(np.arange(n) % 2 == 1, 1.0, -1.0) + 0.3 + rng.normal(scale=0.5, size=n)
    second = rng.uniform(1, 2, size=n)
    return second + d, second


@pytest.mark.parametrize("h", [1, 2, 3, 5])
def test_dm_matches_the_dieboldmariano_package(h: int) -> None:
    y, p1, p2 = ma_forecasts(80, h, seed=h)
    result = diebold_mariano((y - p1) ** 2, (y - p2) ** 2, h)
    statistic, p_value = dm_test(y, p1, p2, h=h)
    _, one_sided = dm_test(y, p1, p2, h=h, one_sided=True)
    assert result.variance_method == "rectangular"
    assert result.n == 80
    assert result.statistic == pytest.approx(statistic, rel=1e-10)
    assert result.p_value == pytest.approx(p_value, rel=1e-8)
    assert result.p_value_first_better == pytest.approx(one_sided, rel=1e-8)
    assert result.mean_difference == pytest.approx(float(np.mean((y - p1) ** 2 - (y - p2) ** 2)))


@pytest.mark.parametrize("h", [1, 3, 5])
def test_dm_rectangular_variance_matches_statsmodels_uniform_kernel_hac(h: int) -> None:
    y, p1, p2 = ma_forecasts(60, h, seed=10 + h)
    l1, l2 = np.abs(y - p1), np.abs(y - p2)
    result = diebold_mariano(l1, l2, h)
    assert result.variance_method == "rectangular"
    assert result.statistic == pytest.approx(hln(60, h) * hac_t(l1 - l2, h, "uniform"), rel=1e-9)


@pytest.mark.parametrize("h", [2, 4])
def test_dm_falls_back_to_bartlett_when_the_truncated_variance_is_negative(h: int) -> None:
    l1, l2 = negatively_autocorrelated()
    d = l1 - l2
    gamma = [float(np.sum((d[k:] - d.mean()) * (d[: len(d) - k] - d.mean()))) for k in range(h)]
    assert gamma[0] + 2 * sum(gamma[1:]) < 0  # the premise: the rectangular estimate fails
    result = diebold_mariano(l1, l2, h)
    assert result.variance_method == "bartlett"
    assert result.statistic == pytest.approx(hln(40, h) * hac_t(d, h, "bartlett"), rel=1e-9)
    reference, p_value = dm_test(
        np.zeros(40), l1, l2, h=h, loss=lambda _, v: v, variance_estimator="bartlett"
    )
    assert result.statistic == pytest.approx(reference, rel=1e-10)
    assert result.p_value == pytest.approx(p_value, rel=1e-8)


def test_one_sided_p_is_small_when_the_first_model_is_clearly_better() -> None:
    rng = np.random.default_rng(1)
    good, bad = rng.uniform(0, 1, 50), rng.uniform(1, 2, 50)
    result = diebold_mariano(good, bad)
    assert result.statistic is not None and result.statistic < 0
    assert result.p_value_first_better is not None and result.p_value_first_better < 1e-6
    assert result.p_value == pytest.approx(2 * result.p_value_first_better)
    reverse = diebold_mariano(bad, good)
    assert reverse.p_value_first_better == pytest.approx(1 - result.p_value_first_better)


def test_identical_or_constantly_shifted_losses_have_no_test() -> None:
    losses_1 = [1.0, 2.0, 3.0, 4.0]
    for other, mean in ((losses_1, 0.0), ([v + 0.1 for v in losses_1], -0.1)):
        result = diebold_mariano(losses_1, other)
        assert result.variance_method == "none"
        assert (result.statistic, result.p_value, result.p_value_first_better) == (None,) * 3
        assert result.mean_difference == pytest.approx(mean)


@pytest.mark.parametrize("h", [0, -1, 5, 6])
def test_dm_refuses_a_horizon_outside_1_to_n_minus_1(h: int) -> None:
    with pytest.raises(InvalidHorizonError) as refused:
        diebold_mariano([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 1.0, 3.0, 5.0, 4.0], h)
    assert isinstance(refused.value, DomainError)
    assert refused.value.h == h


def test_dm_accepts_the_largest_horizon_below_n() -> None:
    result = diebold_mariano([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 1.0, 3.0, 5.0, 4.0], 4)
    assert result.n == 5


def test_dm_needs_two_values() -> None:
    with pytest.raises(TooFewOriginsError) as refused:
        diebold_mariano([1.0], [2.0])
    assert (refused.value.count, refused.value.needed) == (1, 2)


@pytest.mark.parametrize(
    ("first", "second"), [([1.0, 2.0, 3.0], [1.0, 2.0]), ([1.0, math.nan, 3.0], [1.0, 2.0, 3.0])]
)
def test_dm_refuses_misaligned_or_non_finite_series(
    first: list[float], second: list[float]
) -> None:
    with pytest.raises(ValueError, match="loss series"):
        diebold_mariano(first, second)


# -- compare ----------------------------------------------------------------------------


def loss_rows(
    model: str, values: list[float], step: int = 1, start: int = 0, ticker: str = "SPX"
) -> list[dict[str, Any]]:
    return [
        {
            "model": model,
            "ticker": ticker,
            "cutoff": DAY0 + timedelta(start + i),
            "step": step,
            "loss": value,
        }
        for i, value in enumerate(values)
    ]


def losses_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    schema = {"model": pl.String, "ticker": pl.String, "cutoff": pl.Date}
    return pl.DataFrame(rows, schema=schema | {"step": pl.Int32, "loss": pl.Float64})


@pytest.fixture(scope="module")
def three_models() -> tuple[pl.DataFrame, dict[str, Array]]:
    rng = np.random.default_rng(42)
    series = {
        "garch": rng.gamma(2.0, 0.5, 40),
        "random_walk": rng.gamma(2.0, 0.7, 40),
        "spx-mlp@3": rng.gamma(2.0, 0.6, 40),
    }
    rows: list[dict[str, Any]] = []
    for name, values in series.items():
        for step in (1, 2, 3):
            rows += loss_rows(name, list(values * step), step=step)
    # garch misses two origins; another model has an origin nobody else has
    frame = losses_frame(rows).filter(
        ~((pl.col("model") == "garch") & pl.col("cutoff").is_in([DAY0, DAY0 + timedelta(7)]))
    )
    frame = pl.concat([frame, losses_frame(loss_rows("random_walk", [9.0], step=3, start=99))])
    return frame, series


def test_compare_aligns_on_common_origins_ranks_and_tests_against_the_baseline(
    three_models: tuple[pl.DataFrame, dict[str, Array]],
) -> None:
    frame, series = three_models
    result = compare(frame, ["garch", "spx-mlp@3"], baseline="random_walk", h=3)
    keep = np.array([i not in (0, 7) for i in range(40)])
    aligned = {name: values[keep] * 3 for name, values in series.items()}
    assert result.origins == 38
    assert (result.first_origin, result.last_origin) == (DAY0 + timedelta(1), DAY0 + timedelta(39))
    means = {name: float(values.mean()) for name, values in aligned.items()}
    assert [m.model for m in result.models] == sorted(means, key=means.__getitem__)
    assert [m.rank for m in result.models] == [1, 2, 3]
    assert [m.best for m in result.models] == [True, False, False]
    for score in result.models:
        assert score.mean_loss == pytest.approx(means[score.model])
        if score.model == "random_walk":
            assert score.versus_baseline is None
            continue
        expected = diebold_mariano(aligned[score.model], aligned["random_walk"], 3)
        assert score.versus_baseline == expected
        zeros = np.zeros(38)
        statistic, _ = dm_test(
            zeros, aligned[score.model], aligned["random_walk"], h=3, loss=lambda _, v: v
        )
        assert expected.statistic == pytest.approx(statistic, rel=1e-10)
    pairs = [(p.model_1, p.model_2) for p in result.pairwise]
    assert pairs == [("garch", "spx-mlp@3"), ("garch", "random_walk"), ("spx-mlp@3", "random_walk")]
    assert result.pairwise[0].test == diebold_mariano(aligned["garch"], aligned["spx-mlp@3"], 3)


def test_compare_scores_losses_computed_from_scored_points() -> None:
    rng = np.random.default_rng(3)
    rows: list[dict[str, Any]] = []
    for model, scale in (("garch", 1.0), ("random_walk", 1.5)):
        for c in range(25):
            actual = 100 + rng.normal()
            rows.append(
                {
                    "model": model,
                    "ticker": "SPX",
                    "prediction_id": f"{model}-{c}",
                    "cutoff": DAY0 + timedelta(c),
                    "step": 2,
                    "target_date": DAY0 + timedelta(c + 2),
                    "last_close": 100.0,
                    "point": actual + scale * rng.normal(),
                    "actual": actual,
                    "vol_forecast": 0.2,
                    "vol_proxy": 0.2,
                }
            )
    points = pl.DataFrame(rows, schema=POINTS_SCHEMA, orient="row")
    squared = losses(points, pl.DataFrame(schema=BANDS_SCHEMA), "squared")
    result = compare(squared, ["garch"], baseline="random_walk", h=2)
    assert result.origins == 25
    err = {m: points.filter(pl.col("model") == m).sort("cutoff") for m in ("garch", "random_walk")}
    expected = diebold_mariano(
        ((err["garch"]["point"] - err["garch"]["actual"]) ** 2).to_numpy(),
        ((err["random_walk"]["point"] - err["random_walk"]["actual"]) ** 2).to_numpy(),
        2,
    )
    garch = next(m for m in result.models if m.model == "garch")
    assert garch.versus_baseline == expected


def test_compare_averages_several_forecasts_of_one_origin() -> None:
    rows = loss_rows("a", [1.0] * 12) + loss_rows("a", [3.0] * 12) + loss_rows("b", [1.5] * 12)
    result = compare(losses_frame(rows), ["a"], baseline="b", h=1)
    assert result.origins == 12
    assert {m.model: m.mean_loss for m in result.models} == {"a": 2.0, "b": 1.5}


def test_tied_models_share_the_better_rank_and_are_both_best() -> None:
    rows = loss_rows("b", [1.0, 2.0] * 6) + loss_rows("a", [2.0, 1.0] * 6)
    rows += loss_rows("c", [5.0] * 12)
    result = compare(losses_frame(rows), ["b", "a"], baseline="c", h=1)
    assert [(m.model, m.rank, m.best) for m in result.models] == [
        ("a", 1, True),
        ("b", 1, True),
        ("c", 3, False),
    ]


def test_the_baseline_is_added_when_not_listed_and_duplicates_are_dropped() -> None:
    rows = loss_rows("a", [1.0, 2.0] * 6) + loss_rows("b", [2.0, 2.5] * 6)
    result = compare(losses_frame(rows), ["a", "a"], baseline="b", h=1)
    assert sorted(m.model for m in result.models) == ["a", "b"]
    assert len(result.pairwise) == 1


def test_too_few_common_origins_is_refused_with_the_count_and_the_need() -> None:
    rows = loss_rows("a", [1.0, 2.0] * 6) + loss_rows("b", [2.0, 2.5] * 6, start=3)
    with pytest.raises(TooFewOriginsError) as refused:
        compare(losses_frame(rows), ["a"], baseline="b", h=1)
    assert (refused.value.count, refused.value.needed) == (9, MIN_ORIGINS)
    assert isinstance(refused.value, DomainError)


def test_a_long_horizon_needs_twice_as_many_origins() -> None:
    rows = loss_rows("a", [1.0, 2.0] * 7, step=8) + loss_rows("b", [2.0, 2.5] * 7, step=8)
    with pytest.raises(TooFewOriginsError) as refused:
        compare(losses_frame(rows), ["a"], baseline="b", h=8)
    assert (refused.value.count, refused.value.needed) == (14, 16)


def test_a_model_without_losses_at_that_step_leaves_no_common_origin() -> None:
    rows = loss_rows("a", [1.0, 2.0] * 6) + loss_rows("b", [2.0, 2.5] * 6, step=2)
    with pytest.raises(TooFewOriginsError) as refused:
        compare(losses_frame(rows), ["a"], baseline="b", h=1)
    assert refused.value.count == 0


def test_an_empty_losses_frame_is_too_few_origins_not_a_crash() -> None:
    with pytest.raises(TooFewOriginsError):
        compare(losses_frame([]), ["a"], baseline="b", h=1)


def test_compare_refuses_losses_of_several_tickers() -> None:
    rows = loss_rows("a", [1.0] * 12) + loss_rows("b", [2.0] * 12, ticker="NDX")
    with pytest.raises(MixedTickersError):
        compare(losses_frame(rows), ["a"], baseline="b", h=1)


@pytest.mark.parametrize("h", [0, -2])
def test_compare_refuses_a_horizon_below_one(h: int) -> None:
    rows = loss_rows("a", [1.0] * 12) + loss_rows("b", [2.0] * 12)
    with pytest.raises(InvalidHorizonError):
        compare(losses_frame(rows), ["a"], baseline="b", h=h)
