"""Scoring a prediction against what then happened: each step once, with its actual close.

Step ``k`` of a prediction made at cutoff ``T`` is the ``k``-th bar after ``T`` in the
ticker's bars (the target date is that bar's own date; the prediction's ``date`` was
only the expected weekday). A step is scored as soon as that bar exists, and never
again: ``Prediction.score`` refuses a second score of a step.

What a score records (all from the prediction's own ``Made`` fields and the target bar):

- ``actual``: the target bar's close; ``point``: the forecast's median price;
  ``error = actual - point``, ``abs_error``, ``pct_error = 100 |error| / actual``;
- ``log_error``: ``ln(actual / last_close) - loc``, the error of the log-return forecast;
- ``covered``: per level, whether ``lower <= actual <= upper``;
- ``vol_forecast``: the step's annualised volatility forecast; ``vol_proxy``: the
  annualised realised volatility of the target day (``proxies``, computed once per bars
  by ``domain.predictions.volatility.daily_proxy``: Garman–Klass from its bar, the
  squared close-to-close return where that is not positive), null when neither says
  anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from domain.market_data import FIELDS, Bar
from domain.predictions.volatility import daily_proxy

_SCHEMA = dict(zip(FIELDS, (pl.String, *[pl.Float64] * 5), strict=True))


def bars_frame(bars: Sequence[Bar]) -> pl.DataFrame:
    """Bars (sorted by date) as the Polars frame the volatility estimators read."""
    return pl.DataFrame(list(bars), schema=_SCHEMA, orient="row").with_columns(
        pl.col("date").str.to_date("%Y-%m-%d")
    )


def volatility_proxies(bars: Sequence[Bar]) -> list[float | None]:
    """Each bar's one-day realised volatility proxy (annualised), aligned with ``bars``."""
    if not bars:
        return []
    return list(daily_proxy(bars_frame(bars))["vol_proxy"].to_list())


def score_steps(  # noqa: PLR0913
    *,
    cutoff: str,
    last_close: float,
    steps: Sequence[Mapping[str, Any]],
    unscored: Sequence[int],
    bars: Sequence[Bar],
    index: Mapping[str, int],
    proxies: Sequence[float | None],
) -> list[dict[str, Any]]:
    """Scores of the ``unscored`` steps whose target bar is in ``bars`` (sorted by date;
    ``index`` maps a date to its position, ``proxies`` holds each bar's volatility proxy)."""
    at = index.get(cutoff)
    if at is None:
        return []
    scores = []
    for k in unscored:
        target = at + k
        if target >= len(bars):
            break
        scores.append(_score(last_close, steps[k - 1], bars[target], proxies[target]))
    return scores


def _score(
    last_close: float, step: Mapping[str, Any], bar: Bar, proxy: float | None
) -> dict[str, Any]:
    day, close = bar[0], bar[4]
    point = float(step["median"])
    error = close - point
    return {
        "step": int(step["step"]),
        "target_date": day,
        "actual": close,
        "point": point,
        "error": error,
        "abs_error": abs(error),
        "pct_error": 100.0 * abs(error) / close if close > 0 else None,
        "log_error": (
            math.log(close / last_close) - float(step["loc"])
            if close > 0 and last_close > 0
            else None
        ),
        "covered": {
            level: bool(lower <= close <= upper) for level, (lower, upper) in step["bands"].items()
        },
        "vol_forecast": float(step["volatility"]),
        "vol_proxy": proxy,
    }
