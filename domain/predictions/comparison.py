"""Model comparison: the Diebold-Mariano test of equal predictive accuracy, and a ranking.

Pure: loss series (or a frame of them, from ``domain.predictions.accuracy.losses``) in,
frozen dataclasses out. No I/O.

``diebold_mariano(losses_1, losses_2, h)``: two loss series of h-step-ahead forecasts,
aligned by forecast origin and ordered in time, n values each.

- d_t = L1_t - L2_t, m = mean(d); autocovariances
  gamma_k = (1/n) sum_{t=k+1..n} (d_t - m)(d_{t-k} - m).
- Long-run variance of m, truncated (rectangular) kernel at lag h - 1, since optimal
  h-step errors are at most MA(h-1) (Diebold & Mariano 1995, "Comparing predictive
  accuracy", *JBES* 13(3), 253-263; Harvey, Leybourne & Newbold 1997, "Testing the
  equality of prediction mean squared errors", *IJF* 13(2), 281-291):
  V = (gamma_0 + 2 sum_{k=1..h-1} gamma_k) / n  (``variance_method`` "rectangular").
  That estimate can be negative for h > 1; then the Bartlett kernel with h - 1 lags
  is used (Newey & West 1987, "A simple, positive semi-definite, heteroskedasticity and
  autocorrelation consistent covariance matrix", *Econometrica* 55(3), 703-708), which
  never is: V = (gamma_0 + 2 sum_{k=1..h-1} (1 - k/h)
  gamma_k) / n (``variance_method`` "bartlett"). For h = 1 both are gamma_0 / n.
- Statistic, with the Harvey-Leybourne-Newbold small-sample correction:
  DM = sqrt((n + 1 - 2h + h(h-1)/n) / n) x m / sqrt(V). The factor equals
  sqrt((n - h)(n - h + 1)) / n, real and positive exactly when h < n: so 1 <= h < n is
  required (``InvalidHorizonError``), and n >= 2 (``TooFewOriginsError``).
- p-values from Student's t with n - 1 degrees of freedom: ``p_value`` two-sided
  (H0: equal expected loss), ``p_value_first_better`` = P(T <= DM), one-sided against
  "model 1 has the smaller expected loss" (a small value is evidence that model 1 is
  more accurate).
- When d is constant (identical forecasts, for instance) there is no variance to test
  against: ``statistic`` and both p-values are None and ``variance_method`` is "none".
  "Constant" allows for rounding: a spread of d within 64 machine epsilons of the largest
  loss (losses that differ by a constant give such d through rounding, which would
  otherwise make an astronomically large DM).

``compare(losses_frame, models, baseline, h)``: ``losses_frame`` has ``model``,
``cutoff``, ``step`` and ``loss`` (and optionally ``ticker``, which must then hold one
ticker: comparisons are per ticker, a panel is not one time series,
``MixedTickersError``). Only the rows with step == h count. Where one model has several
rows at the same cutoff (two jobs forecast the same origin), their mean loss is that
origin's loss. The models (``baseline`` included, added when missing, duplicates
dropped) are aligned on the cutoffs all of them have, in time order. Fewer than
``max(MIN_ORIGINS, 2h)`` such origins raises ``TooFewOriginsError`` (``count``,
``needed``): below ten origins a variance estimated from the sample itself is too noisy
for a useful test (a judgement, not a theorem), and 2h leaves each of the h - 1
autocovariances at least h + 1 pairs. (With consecutive daily cutoffs the h-step errors
overlap, hence the MA(h-1) allowance; with cutoffs h or more bars apart the extra lags
are merely unneeded.) On the aligned rows: each model's mean loss; a ranking by mean
loss, lower is better, ties sharing the better rank ("1, 1, 3") and listed by name,
``best`` on every model ranked 1; the DM test of each model against the baseline (model
first, so ``p_value_first_better`` is "beats the baseline"); and the DM test of every
pair, in the order the models were given (baseline last when it was added).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from itertools import combinations
from typing import Literal

import numpy as np
import numpy.typing as npt
import polars as pl
from scipy import stats

from domain.errors import DomainError

MIN_ORIGINS = 10
MIN_SERIES = 2  # the fewest values a test (n - 1 degrees of freedom) accepts
_ROUNDING = 64 * float(np.finfo(np.float64).eps)

VarianceMethod = Literal["rectangular", "bartlett", "none"]
FloatArray = npt.NDArray[np.float64]


class TooFewOriginsError(DomainError):
    """Fewer forecast origins than the test needs (HTTP 422)."""

    def __init__(self, count: int, needed: int, detail: str = "") -> None:
        message = f"{count} common forecast origins{detail}; at least {needed} are needed"
        super().__init__(message)
        self.count = count
        self.needed = needed


class InvalidHorizonError(DomainError):
    """A horizon outside 1 <= h < n (HTTP 422)."""

    def __init__(self, h: int, n: int | None = None) -> None:
        bound = "at least 1" if n is None else f"between 1 and {n - 1} for {n} origins"
        super().__init__(f"the horizon h = {h} must be {bound}")
        self.h = h
        self.n = n


class MixedTickersError(DomainError):
    """Losses of several tickers were given to one comparison (HTTP 422)."""


@dataclass(frozen=True)
class DieboldMarianoResult:
    statistic: float | None
    p_value: float | None
    p_value_first_better: float | None
    n: int
    mean_difference: float
    variance_method: VarianceMethod


@dataclass(frozen=True)
class ModelScore:
    model: str
    mean_loss: float
    rank: int
    best: bool
    versus_baseline: DieboldMarianoResult | None  # None for the baseline itself


@dataclass(frozen=True)
class PairwiseTest:
    model_1: str
    model_2: str
    test: DieboldMarianoResult


@dataclass(frozen=True)
class Comparison:
    h: int
    baseline: str
    origins: int
    first_origin: date
    last_origin: date
    models: tuple[ModelScore, ...]  # in ranking order
    pairwise: tuple[PairwiseTest, ...]


# -- the test ---------------------------------------------------------------------------


def _autocovariances(d: FloatArray, lags: int) -> FloatArray:
    """gamma_0 .. gamma_lags of d, each a sum over the available pairs divided by n."""
    centred = d - d.mean()
    n = len(d)
    return np.array([centred[k:] @ centred[: n - k] / n for k in range(lags + 1)])


def _long_run_variance(d: FloatArray, h: int) -> tuple[float, VarianceMethod]:
    gamma = _autocovariances(d, h - 1)
    rectangular = float(gamma[0] + 2 * gamma[1:].sum())
    if rectangular > 0:
        return rectangular / len(d), "rectangular"
    weights = 1 - np.arange(1, h) / h
    bartlett = float(gamma[0] + 2 * (weights @ gamma[1:]))
    if bartlett > 0:
        return bartlett / len(d), "bartlett"
    return 0.0, "none"


def _constant(d: FloatArray, scale: float) -> bool:
    """Whether d is constant up to the rounding of losses of magnitude ``scale``."""
    return bool(d.max() - d.min() <= _ROUNDING * scale)


def _series(values: Sequence[float] | FloatArray) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def diebold_mariano(
    losses_1: Sequence[float] | FloatArray, losses_2: Sequence[float] | FloatArray, h: int = 1
) -> DieboldMarianoResult:
    """The HLN-corrected Diebold-Mariano test of L1 against L2 (see the module docstring).

    Raises ``ValueError`` for series of different lengths or with non-finite values,
    ``TooFewOriginsError`` below two values and ``InvalidHorizonError`` unless 1 <= h < n.
    """
    first, second = _series(losses_1), _series(losses_2)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError("the two loss series must be one-dimensional and of the same length")
    if not (np.isfinite(first).all() and np.isfinite(second).all()):
        raise ValueError("the loss series must be finite")
    n = len(first)
    if n < MIN_SERIES:
        raise TooFewOriginsError(n, MIN_SERIES)
    if isinstance(h, bool) or not isinstance(h, int) or not 1 <= h < n:
        raise InvalidHorizonError(h, n)
    d = first - second
    mean = float(d.mean())
    if _constant(d, max(np.abs(first).max(), np.abs(second).max())):
        return DieboldMarianoResult(None, None, None, n, mean, "none")
    variance, method = _long_run_variance(d, h)
    if method == "none":
        return DieboldMarianoResult(None, None, None, n, mean, "none")
    correction = math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    statistic = correction * mean / math.sqrt(variance)
    return DieboldMarianoResult(
        statistic=statistic,
        p_value=float(2 * stats.t.sf(abs(statistic), n - 1)),
        p_value_first_better=float(stats.t.cdf(statistic, n - 1)),
        n=n,
        mean_difference=mean,
        variance_method=method,
    )


# -- comparing models -------------------------------------------------------------------


def _names(models: Sequence[str], baseline: str) -> list[str]:
    return list(dict.fromkeys([*models, baseline]))


def _aligned(losses_frame: pl.DataFrame, names: list[str], h: int) -> pl.DataFrame:
    """``cutoff`` and one loss column per model, on the cutoffs every model has, in order."""
    rows = losses_frame.filter((pl.col("step") == h) & pl.col("model").is_in(names))
    if "ticker" in rows.columns and rows["ticker"].n_unique() > 1:
        raise MixedTickersError(
            f"the losses hold {rows['ticker'].n_unique()} tickers; compare one ticker at a time"
        )
    per_origin = rows.group_by("model", "cutoff").agg(pl.col("loss").cast(pl.Float64).mean())
    aligned: pl.DataFrame | None = None
    for name in names:
        series = per_origin.filter(pl.col("model") == name).select(
            "cutoff", pl.col("loss").alias(name)
        )
        aligned = series if aligned is None else aligned.join(series, on="cutoff", how="inner")
    assert aligned is not None  # names holds the baseline at least
    return aligned.sort("cutoff")


def _ranked(
    means: dict[str, float], tests: dict[str, DieboldMarianoResult]
) -> tuple[ModelScore, ...]:
    order = sorted(means, key=lambda name: (means[name], name))
    scores: list[ModelScore] = []
    for name in order:
        rank = 1 + sum(1 for other in means.values() if other < means[name])
        scores.append(ModelScore(name, means[name], rank, rank == 1, tests.get(name)))
    return tuple(scores)


def compare(
    losses_frame: pl.DataFrame,
    models: Sequence[str],
    baseline: str,
    h: int,
    min_origins: int = MIN_ORIGINS,
) -> Comparison:
    """Mean loss, ranking and DM tests of ``models`` against ``baseline`` at step ``h``."""
    if isinstance(h, bool) or not isinstance(h, int) or h < 1:
        raise InvalidHorizonError(h)
    names = _names(models, baseline)
    aligned = _aligned(losses_frame, names, h)
    needed = max(min_origins, 2 * h, MIN_SERIES)
    if aligned.height < needed:
        raise TooFewOriginsError(aligned.height, needed, f" at step {h} for {', '.join(names)}")
    series = {name: aligned[name].to_numpy().astype(np.float64) for name in names}
    means = {name: float(values.mean()) for name, values in series.items()}
    versus = {
        name: diebold_mariano(series[name], series[baseline], h)
        for name in names
        if name != baseline
    }
    pairwise = tuple(
        PairwiseTest(a, b, diebold_mariano(series[a], series[b], h))
        for a, b in combinations(names, 2)
    )
    first_origin: date = aligned["cutoff"][0]
    last_origin: date = aligned["cutoff"][-1]
    return Comparison(
        h=h,
        baseline=baseline,
        origins=aligned.height,
        first_origin=first_origin,
        last_origin=last_origin,
        models=_ranked(means, versus),
        pairwise=pairwise,
    )
