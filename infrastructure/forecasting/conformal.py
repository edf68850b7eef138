"""Adaptive conformal calibration of forecast bands: weighted split conformal, in numpy.

Pure functions of arrays; :mod:`infrastructure.forecasting.engine` feeds them a
forecaster's own rolling-origin forecasts. Notation: origins are bar indices, ``c_i`` the
close of bar ``i``, and a forecaster's raw forecast at origin ``i`` gives, per step
``k = 1..H``, a location ``loc[i, k]`` and scale ``scale[i, k]`` of the cumulative log
return ``ln(c_{i+k} / c_i)``.

Scores (:func:`studentized_scores`): ``u[i, k] = (ln(c_{i+k} / c_i) - loc[i, k]) /
scale[i, k]``, the residual in units of the model's own scale (NaN where the origin has no
raw forecast or ``i + k`` is past the series).

Calibration set (:func:`calibrate`) of origin ``t`` and step ``k``: the scores
``u[t', k]`` of the previous origins ``t' = t - k - j``, ``j = 0 .. window - 1``, that
have a raw forecast, i.e. the last ``window`` origins whose ``k``-step target was realised
by ``t`` (``t' + k <= t``). Nothing later than bar ``t`` enters. Score ``t'`` has weight
``w = decay ** (t - t')`` (its age in origins; the newest usable one, ``t' = t - k``, has
``decay ** k``) and the test point weight 1: the non-exchangeable weighted conformal
prediction of Barber, Candès, Ramdas & Tibshirani (2023, "Conformal prediction beyond
exchangeability"), with fixed, data-independent weights that favour recent scores
because returns are not exchangeable (volatility regimes, drifting model error). Its
guarantee degrades by at most ``sum_j p_j d_TV(...)`` (their coverage-gap bound) when scores
drift; the k-step scores of neighbouring origins overlap, so for long steps the window
holds few independent targets and the bands lag a volatility shift (measured: 95 % bands
at 20 steps cover about 93-94 % on the sample data; ``benchmarks/coverage.py``).
Adaptive conformal inference (Gibbs & Candès 2021) was not taken: its level at ``t`` is
a recursion over every earlier origin from a fixed start, so one forecast would need the
raw forecasts of the whole history, and a series' first bar would change every later
band. The window and decay were chosen by measurement (``forecasters.py``).

Quantiles: with ``W = sum w`` and normalised weights ``p_j = w_j / (W + 1)``, the test
point's mass ``1 / (W + 1)`` is put at ``+infinity`` for the upper quantile and at
``-infinity`` for the lower one (each tail is a one-sided conformal bound, so each misses
at most ``(1 - L) / 2`` under exchangeability, and the band at least ``L``):

    Q_hi(b) = min { u_j : sum_{u_i <= u_j} p_i >= b }       (+inf when none: W / (W + 1) < b)
    Q_lo(b) = max { u_j : sum_{u_i >= u_j} p_i >= b }       (-inf when none)

and the band at level ``L`` (a fraction) is ``loc + scale * [Q_lo(b), Q_hi(b)]`` with
``b = (1 + L) / 2``. Cumulative sums are compared with ``b - 1e-12`` so that float
rounding of the sums does not move a quantile that lands exactly on a score.
The effective number of scores is Kish's ``(sum w)^2 / sum w^2``.

A step is calibrated when it has at least ``min_scores`` scores; a level of a calibrated
step only when its quantiles are finite, i.e. ``W / (W + 1) >= (1 + L) / 2`` (with the
defaults, 500 scores of decay 0.995, ``W`` is 183 at step 1 and 166 at step 20, and the
effective number of scores 339: levels up to 98.8 % are calibrated, a 99 % band would
need ``W >= 199``; 95 % needs ``W >= 39``, about 41 scores). Elsewhere the model's own
quantiles stand, and the forecast's ``method`` says so.

Nesting and widening (:func:`band_offsets`), by construction: the offsets of the bands
from ``loc`` (``lower - loc``, ``upper - loc``), whichever way each was made, are made
monotone, first across levels starting from the median (lower offsets non-positive and
non-increasing, upper non-negative and non-decreasing as the level rises: a running
min/max in level order from 0, so the median lies in every band even when a biased
model's scores put a calibrated 50 % band on one side of it), then across steps (the
same running min/max in step order). Both steps keep the other's order (a running max over steps of
sequences ordered by level stays ordered by level), so 50 lies inside 80 inside 95 at
every step and each band's half-widths never shrink as the horizon grows. Weighted
quantiles of one score set are already monotone in the level, so the first pass only
acts where a level fell back to the model; the second acts where a later step's
calibrated multipliers are smaller than an earlier step's by more than the growth of
the scale. The adjustment only widens, and only from the same origin's own numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from domain.predictions.forecasters import (
    CALIBRATION_DECAY,
    CALIBRATION_MIN_SCORES,
    CALIBRATION_WINDOW,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_CUMSUM_SLACK = 1e-12
_ORIGIN_CHUNK = 64  # origins gathered at once: (64, horizon, window) scores stay small


@dataclass(frozen=True)
class CalibrationSettings:
    """How many previous origins calibrate a band, how few fall back, and the decay."""

    window: int = CALIBRATION_WINDOW
    min_scores: int = CALIBRATION_MIN_SCORES
    decay: float = CALIBRATION_DECAY

    def __post_init__(self) -> None:
        if self.window < 1 or self.min_scores < 1:
            raise ValueError("the calibration window and minimum must be at least 1")
        if not 0.0 < self.decay <= 1.0:
            raise ValueError("the calibration decay must lie in (0, 1]")


@dataclass(frozen=True)
class Calibration:
    """Per requested origin (rows), step (columns) and level (last axis)."""

    lower: FloatArray  # Q_lo multipliers; NaN where the step has too few scores, -inf
    upper: FloatArray  # Q_hi multipliers; NaN likewise, +inf where the mass is short
    scores: IntArray  # (origins, steps): how many scores calibrate each step
    effective: FloatArray  # (origins, steps): Kish's effective number of them
    weight: FloatArray  # (origins, steps): W, the total weight of the scores

    @property
    def calibrated(self) -> BoolArray:
        """(origins, steps, levels): the conformal quantiles, not the model's, apply."""
        return np.isfinite(self.lower) & np.isfinite(self.upper)


def studentized_scores(loc: FloatArray, scale: FloatArray, log_close: FloatArray) -> FloatArray:
    """``u[i, k-1] = (ln c_{i+k} - ln c_i - loc[i, k-1]) / scale[i, k-1]``, shape of ``loc``.

    ``loc``/``scale``: (bars, H), NaN rows for origins without a raw forecast;
    ``log_close``: (bars,). NaN where ``i + k`` is past the last bar.
    """
    bars, horizon = loc.shape
    realised = np.full((bars, horizon), np.nan)
    for k in range(1, horizon + 1):
        realised[: bars - k, k - 1] = log_close[k:] - log_close[: bars - k]
    scores: FloatArray = (realised - loc) / scale
    return scores


def weighted_quantiles(
    scores: FloatArray, weights: FloatArray, probs: FloatArray, test_weight: float = 1.0
) -> tuple[FloatArray, FloatArray]:
    """``Q_lo(b)`` and ``Q_hi(b)`` per ``b`` in ``probs``, each ``(..., len(probs))``.

    ``scores``/``weights``: (..., m); a NaN score must have weight 0 (it is ignored).
    The test point's ``test_weight`` sits at -infinity for ``Q_lo`` and +infinity for
    ``Q_hi``. One sort serves both tails: along the sorted scores, the mass at or below
    a score only grows and the mass at or above it only shrinks, so ``Q_hi`` is the first
    score whose mass below reaches ``b`` and ``Q_lo`` the last whose mass above does.
    """
    present = weights > 0
    keyed = np.where(present, scores, np.inf)  # absent scores sort last, with weight 0
    order = np.argsort(keyed, axis=-1)
    ordered = np.take_along_axis(keyed, order, axis=-1)
    w = np.take_along_axis(np.where(present, weights, 0.0), order, axis=-1)
    total = np.sum(w, axis=-1, keepdims=True) + test_weight
    below = np.cumsum(w, axis=-1) / total
    above = np.flip(np.cumsum(np.flip(w, axis=-1), axis=-1), axis=-1) / total
    m = ordered.shape[-1]
    shape = (*ordered.shape[:-1], len(probs))
    lower, upper = np.empty(shape), np.empty(shape)
    for i, b in enumerate(np.asarray(probs, dtype=np.float64)):
        first = np.sum(below < b - _CUMSUM_SLACK, axis=-1)  # m: never reached
        last = np.sum(above >= b - _CUMSUM_SLACK, axis=-1) - 1  # -1: never reached
        at_first = np.take_along_axis(ordered, np.minimum(first, m - 1)[..., None], axis=-1)
        at_last = np.take_along_axis(ordered, np.maximum(last, 0)[..., None], axis=-1)
        upper[..., i] = np.where(first < m, at_first[..., 0], np.inf)
        lower[..., i] = np.where(last >= 0, at_last[..., 0], -np.inf)
    return lower, upper


def weighted_upper_quantiles(
    scores: FloatArray, weights: FloatArray, probs: FloatArray, test_weight: float = 1.0
) -> FloatArray:
    """``Q_hi(b)`` alone (see :func:`weighted_quantiles`)."""
    return weighted_quantiles(scores, weights, probs, test_weight)[1]


def weighted_lower_quantiles(
    scores: FloatArray, weights: FloatArray, probs: FloatArray, test_weight: float = 1.0
) -> FloatArray:
    """``Q_lo(b)`` alone: the mirror image of ``Q_hi`` (test mass at -infinity)."""
    return weighted_quantiles(scores, weights, probs, test_weight)[0]


def effective_size(weights: FloatArray) -> FloatArray:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` along the last axis (0 if empty)."""
    total = np.sum(weights, axis=-1)
    squares = np.sum(weights**2, axis=-1)
    safe = np.where(squares > 0, squares, 1.0)
    size: FloatArray = np.where(squares > 0, total**2 / safe, 0.0)
    return size


def calibrate(
    scores: FloatArray, origins: IntArray, levels: FloatArray, settings: CalibrationSettings
) -> Calibration:
    """The conformal multipliers of each origin in ``origins`` from ``scores`` (bars, H).

    ``levels``: fractions in (0, 1). Origin ``t``'s row reads ``scores[t', k]`` with
    ``t' <= t - k`` only (see the module docstring), so it is a function of the bars up
    to ``t`` whatever the rest of ``scores`` holds.
    """
    parts = [
        _calibrate_chunk(scores, origins[i : i + _ORIGIN_CHUNK], levels, settings)
        for i in range(0, len(origins), _ORIGIN_CHUNK)
    ]
    if not parts:
        empty = np.zeros((0, scores.shape[1]))
        no_levels = np.zeros((0, scores.shape[1], len(levels)))
        return Calibration(no_levels, no_levels, empty.astype(np.int64), empty, empty)
    return Calibration(
        lower=np.concatenate([p.lower for p in parts]),
        upper=np.concatenate([p.upper for p in parts]),
        scores=np.concatenate([p.scores for p in parts]),
        effective=np.concatenate([p.effective for p in parts]),
        weight=np.concatenate([p.weight for p in parts]),
    )


def _calibrate_chunk(
    scores: FloatArray, origins: IntArray, levels: FloatArray, settings: CalibrationSettings
) -> Calibration:
    horizon = scores.shape[1]
    steps = np.arange(1, horizon + 1)
    ages = steps[:, None] + np.arange(settings.window)[None, :]  # (H, window): t - t'
    previous = origins[:, None, None] - ages[None, :, :]  # (origins, H, window): t'
    inside = previous >= 0
    gathered = scores[np.where(inside, previous, 0), (steps - 1)[None, :, None]]
    present = inside & np.isfinite(gathered)
    weights = np.where(present, float(settings.decay) ** ages[None, :, :], 0.0)
    probs = (1.0 + np.asarray(levels, dtype=np.float64)) / 2.0
    lower, upper = weighted_quantiles(gathered, weights, probs)
    count = np.sum(present, axis=-1)
    enough = (count >= settings.min_scores)[..., None]
    return Calibration(
        lower=np.where(enough, lower, np.nan),
        upper=np.where(enough, upper, np.nan),
        scores=count.astype(np.int64),
        effective=effective_size(weights),
        weight=np.sum(weights, axis=-1),
    )


def band_offsets(
    model_lower: FloatArray, model_upper: FloatArray, scale: FloatArray, calibration: Calibration
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Offsets from ``loc`` of the bands' lower and upper ends: (origins, H, levels).

    ``model_lower``/``model_upper``: the model's own quantile offsets (``q - loc``) at
    ``(1 - L) / 2`` and ``(1 + L) / 2``; ``scale``: (origins, H); levels in increasing
    order. Calibrated (step, level) cells take ``scale * Q``, the others the model's; then
    the running min/max from 0 across levels and across steps (module docstring). Also returns,
    per origin, how many offsets the monotone passes moved.
    """
    use = calibration.calibrated
    lower = np.where(use, scale[..., None] * calibration.lower, model_lower)
    upper = np.where(use, scale[..., None] * calibration.upper, model_upper)
    nested_lower = np.minimum.accumulate(np.minimum(lower, 0.0), axis=2)
    nested_upper = np.maximum.accumulate(np.maximum(upper, 0.0), axis=2)
    wide_lower = np.minimum.accumulate(nested_lower, axis=1)
    wide_upper = np.maximum.accumulate(nested_upper, axis=1)
    moved: IntArray = np.sum(wide_lower != lower, axis=(1, 2)) + np.sum(
        wide_upper != upper, axis=(1, 2)
    )
    return wide_lower, wide_upper, moved
