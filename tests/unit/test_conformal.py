"""Weighted conformal calibration: quantiles as defined, causal, covering, monotone bands."""

from __future__ import annotations

import math

import numpy as np
import pytest

from infrastructure.forecasting.conformal import (
    Calibration,
    CalibrationSettings,
    band_offsets,
    calibrate,
    effective_size,
    studentized_scores,
    weighted_lower_quantiles,
    weighted_upper_quantiles,
)


def brute_upper(scores: list[float], weights: list[float], prob: float) -> float:
    """The definition: the smallest score whose weighted CDF (test mass at +inf) reaches prob."""
    total = sum(weights) + 1.0
    for candidate in sorted(scores):
        mass = sum(w for s, w in zip(scores, weights, strict=True) if s <= candidate) / total
        if mass >= prob - 1e-12:
            return candidate
    return math.inf


def test_weighted_quantiles_match_the_definition() -> None:
    rng = np.random.default_rng(3)
    probs = np.asarray([0.6, 0.9, 0.975])
    for _ in range(50):
        m = int(rng.integers(1, 40))
        scores = rng.normal(size=m)
        weights = rng.uniform(0.0, 1.0, size=m)
        weights[rng.uniform(size=m) < 0.2] = 0.0  # absent scores
        scores[weights == 0.0] = np.nan
        present = weights > 0
        upper = weighted_upper_quantiles(scores, weights, probs)
        lower = weighted_lower_quantiles(scores, weights, probs)
        kept_s, kept_w = list(scores[present]), list(weights[present])
        for j, p in enumerate(probs):
            assert upper[j] == brute_upper(kept_s, kept_w, p)
            assert lower[j] == -brute_upper([-s for s in kept_s], kept_w, p)


def test_equal_weights_give_the_split_conformal_order_statistic() -> None:
    scores = np.arange(1.0, 20.0)  # 19 scores: the 0.95 quantile is the 19th of 20 slots
    weights = np.ones(19)
    assert weighted_upper_quantiles(scores, weights, np.asarray([0.95]))[0] == 19.0
    assert weighted_lower_quantiles(scores, weights, np.asarray([0.95]))[0] == 1.0
    # the test point's mass 1/19 exceeds 1 - 0.975: the quantile is unbounded
    assert weighted_upper_quantiles(scores[:18], weights[:18], np.asarray([0.975]))[0] == np.inf
    assert weighted_lower_quantiles(scores[:18], weights[:18], np.asarray([0.975]))[0] == -np.inf


def test_effective_size_is_kish() -> None:
    assert effective_size(np.ones(10)) == pytest.approx(10.0)
    w = 0.9 ** np.arange(30, dtype=np.float64)
    assert effective_size(w) == pytest.approx(w.sum() ** 2 / (w**2).sum())
    assert effective_size(np.zeros(3)) == 0.0


def test_scores_are_studentized_cumulative_residuals() -> None:
    log_close = np.log(np.asarray([100.0, 101.0, 99.0, 102.0]))
    loc = np.full((4, 2), 0.001)
    scale = np.full((4, 2), 0.02)
    u = studentized_scores(loc, scale, log_close)
    assert u[0, 0] == pytest.approx((math.log(101 / 100) - 0.001) / 0.02)
    assert u[1, 1] == pytest.approx((math.log(102 / 101) - 0.001) / 0.02)
    assert np.isnan(u[3, 0]) and np.isnan(u[2, 1])  # not realised within the series


def test_an_origin_reads_only_scores_realised_by_its_cutoff() -> None:
    rng = np.random.default_rng(5)
    scores = rng.normal(size=(200, 3))
    settings = CalibrationSettings(window=50, min_scores=10, decay=0.98)
    levels = np.asarray([0.5, 0.8])
    t = 150
    base = calibrate(scores, np.asarray([t]), levels, settings)
    changed = scores.copy()
    for k in range(1, 4):
        changed[t - k + 1 :, k - 1] = 1e6  # scores whose target lies after the cutoff
    again = calibrate(changed, np.asarray([t]), levels, settings)
    np.testing.assert_array_equal(base.upper, again.upper)
    np.testing.assert_array_equal(base.lower, again.lower)
    # and by hand for step 2: origins t-2 .. t-51, weight decay**(t - t')
    previous = np.arange(t - 2, t - 52, -1)
    weights = settings.decay ** (t - previous).astype(np.float64)
    expected = weighted_upper_quantiles(scores[previous, 1], weights, (1 + levels) / 2)
    np.testing.assert_array_equal(base.upper[0, 1], expected)
    assert base.scores[0].tolist() == [50, 50, 50]


def test_too_few_scores_leave_the_step_uncalibrated() -> None:
    scores = np.full((100, 3), np.nan)
    scores[:40] = np.random.default_rng(1).normal(size=(40, 3))
    settings = CalibrationSettings(window=250, min_scores=30, decay=1.0)
    cal = calibrate(scores, np.asarray([41, 60]), np.asarray([0.8]), settings)
    # origin 41: steps 1, 2, 3 see origins <= 40, 39, 38, of which 0..39 have scores
    assert cal.scores.tolist() == [[40, 40, 39], [40, 40, 40]]
    assert cal.calibrated.all()
    few = calibrate(scores, np.asarray([31]), np.asarray([0.8]), settings)
    assert few.scores.tolist() == [[31, 30, 29]]
    assert few.calibrated[0, :, 0].tolist() == [True, True, False]
    assert np.isnan(few.upper[0, 2, 0])


def test_exchangeable_scores_cover_at_least_the_level() -> None:
    """iid scores: each test point's band from the 200 before it covers it with P >= L."""
    rng = np.random.default_rng(11)
    n, window = 6000, 200
    scores = rng.standard_t(5, size=(n, 1))
    settings = CalibrationSettings(window=window, min_scores=30, decay=1.0)
    origins = np.arange(window + 1, n - 1)
    levels = np.asarray([0.8, 0.95])
    cal = calibrate(scores, origins, levels, settings)
    y = scores[origins, 0]  # the score of origin t is realised at t + 1, after its band
    for j, level in enumerate(levels):
        covered = (y >= cal.lower[:, 0, j]) & (y <= cal.upper[:, 0, j])
        # conformal: coverage in [L, L + 2/(n+1)] in expectation; binomial noise around it
        se = math.sqrt(level * (1 - level) / len(origins))
        assert level - 4 * se <= covered.mean() <= level + 2 / (window + 1) + 4 * se


def calibration_of(lower: np.ndarray, upper: np.ndarray, count: int = 100) -> Calibration:
    shape = lower.shape[:2]
    return Calibration(
        lower=lower,
        upper=upper,
        scores=np.full(shape, count),
        effective=np.full(shape, float(count)),
        weight=np.full(shape, float(count)),
    )


def test_offsets_nest_across_levels_and_widen_across_steps() -> None:
    scale = np.asarray([[1.0, 1.0, 1.0]])
    z = np.asarray([0.67, 1.28, 1.96])  # model multipliers of 50, 80, 95
    model_lower = -np.broadcast_to(z, (1, 3, 3)).copy()
    model_upper = np.broadcast_to(z, (1, 3, 3)).copy()
    # step 2 narrower than step 1; the 95 level not reachable (falls back to the model)
    cal_upper = np.asarray([[[0.8, 1.5, np.inf], [0.5, 1.4, np.inf], [0.9, 2.5, np.inf]]])
    lower, upper, moved = band_offsets(
        model_lower, model_upper, scale, calibration_of(-cal_upper, cal_upper)
    )
    assert upper[0].tolist() == [[0.8, 1.5, 1.96], [0.8, 1.5, 1.96], [0.9, 2.5, 2.5]]
    np.testing.assert_array_equal(lower, -upper)
    assert moved.tolist() == [2 * 3]  # step 2's 0.5 and 1.4, step 3's 95 (each side)
    assert np.all(np.diff(upper, axis=2) >= 0) and np.all(np.diff(lower, axis=2) <= 0)
    assert np.all(np.diff(upper, axis=1) >= 0) and np.all(np.diff(lower, axis=1) <= 0)


def test_the_median_lies_in_every_band_even_when_the_scores_are_one_sided() -> None:
    model = np.full((1, 1, 2), 1.0)
    # the calibrated 50 % band [0.3, 0.9] lies above the median
    cal = calibration_of(np.asarray([[[0.3, -0.2]]]), np.asarray([[[0.9, 1.8]]]))
    lower, upper, moved = band_offsets(-model, model, np.ones((1, 1)), cal)
    assert lower[0, 0].tolist() == [0.0, -0.2] and upper[0, 0].tolist() == [0.9, 1.8]
    assert moved.tolist() == [1]


def test_uncalibrated_steps_keep_the_model_offsets() -> None:
    model_lower = np.full((1, 2, 1), -1.0)
    model_upper = np.full((1, 2, 1), 1.0)
    nan = np.full((1, 2, 1), np.nan)
    lower, upper, moved = band_offsets(
        model_lower, model_upper, np.ones((1, 2)), calibration_of(nan, nan)
    )
    np.testing.assert_array_equal(lower, model_lower)
    np.testing.assert_array_equal(upper, model_upper)
    assert moved.tolist() == [0]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="decay"):
        CalibrationSettings(decay=0.0)
    with pytest.raises(ValueError, match="at least 1"):
        CalibrationSettings(window=0)
