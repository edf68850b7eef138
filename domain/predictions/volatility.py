"""Realised volatility of daily OHLC bars: three rolling estimators and a one-day proxy.

Pure: a Polars frame of bars in (``date``, ``open``, ``high``, ``low``, ``close``, one
ticker; sorted by date here), a frame out with ``date`` and the estimate, one row per bar
in date order (the ``*_expr`` builders assume sorted rows). Every figure is annualised
with ``TRADING_DAYS`` = 252 trading days: a daily variance v gives the annualised
volatility sqrt(252 v). "Day" means the previous bar; calendar gaps are not filled.
With O, H, L, C the day's open, high, low and close:

- ``close_to_close``: the sample standard deviation (ddof 1) of the log returns
  r_t = ln(C_t / C_{t-1}) over the last ``window`` days (t included) x sqrt(252). The
  classical historical estimator (e.g. Hull, *Options, Futures and Other Derivatives*,
  "Estimating volatility from historical data"). It needs ``window`` + 1 closes.
- ``parkinson``: sqrt(mean over the window of ln(H/L)^2 / (4 ln 2)) x sqrt(252) (Parkinson
  1980, "The Extreme Value Method for Estimating the Variance of the Rate of Return",
  *Journal of Business* 53(1), 61-65). Uses the range only; it ignores drift and the
  overnight gap, so it reads low when prices jump between sessions.
- ``garman_klass``: sqrt(mean over the window of 0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2)
  x sqrt(252) (Garman & Klass 1980, "On the Estimation of Security Price Volatilities from
  Historical Data", *Journal of Business* 53(1), 67-78: their practical simplified form).
  Open to close only, so it also misses the overnight gap.
- ``daily_proxy`` (column ``vol_proxy``): the realised volatility of one day, against
  which a forecast of that day's volatility is scored (QLIKE and MSE are robust to such a
  noisy but conditionally unbiased variance proxy: Patton 2011, "Volatility forecast
  comparison using imperfect volatility proxies", *Journal of Econometrics* 160(1),
  246-256). It is sqrt(252 v_t) with v_t the day's Garman-Klass variance
  0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2; when v_t is not positive (a bar with H = L,
  as old index data often has) or cannot be computed, the squared close-to-close log
  return r_t^2 is used instead, i.e. sqrt(252) |r_t|; when that is zero too, or cannot
  be computed (the first bar), the proxy is null: a zero variance would make QLIKE
  infinite.

Bad prices never raise: a price that is not finite or not positive (a zero close, a
missing low stored as 0) makes every term that uses it null, and a rolling estimate is
null unless all ``window`` terms of its window are present, so such a day blanks the
windows that contain it. The first ``window`` - 1 rows (``window`` for close-to-close)
are null too. A window whose mean Garman-Klass term is negative (only possible with bars
whose close or open lie outside [low, high]) gives null, not the root of a negative.
The bars are not otherwise checked (high >= low is assumed, not enforced).
"""

from __future__ import annotations

import math

import polars as pl

from domain.errors import InvalidFieldsError

TRADING_DAYS = 252
DEFAULT_WINDOW = 21  # about one trading month
MIN_WINDOW = 2  # a sample standard deviation needs two returns

_ANNUALISE = math.sqrt(TRADING_DAYS)
_GK_CLOSE_WEIGHT = 2 * math.log(2) - 1


def _price(name: str) -> pl.Expr:
    """The price column, null where it is not a finite positive number."""
    column = pl.col(name).cast(pl.Float64)
    return pl.when(column.is_finite() & (column > 0)).then(column)


def _log_ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    return (numerator / denominator).log()


def _log_return() -> pl.Expr:
    """r_t = ln(C_t / C_{t-1}); null on the first bar or next to a bad close."""
    close = _price("close")
    return _log_ratio(close, close.shift(1))


def _range_squared() -> pl.Expr:
    """ln(H/L)^2 of the day."""
    return _log_ratio(_price("high"), _price("low")) ** 2


def _garman_klass_variance() -> pl.Expr:
    """The day's Garman-Klass variance 0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2."""
    body = _log_ratio(_price("close"), _price("open"))
    return 0.5 * _range_squared() - _GK_CLOSE_WEIGHT * body**2


def _root_annualised(daily_variance: pl.Expr) -> pl.Expr:
    """sqrt(252 v), null for a negative (or null) v."""
    return pl.when(daily_variance >= 0).then((daily_variance * TRADING_DAYS).sqrt())


def _check_window(window: int) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window < MIN_WINDOW:
        raise InvalidFieldsError(
            [{"field": "window", "message": f"must be an integer of at least {MIN_WINDOW}"}]
        )


def _estimate(bars: pl.DataFrame, name: str, value: pl.Expr) -> pl.DataFrame:
    return bars.sort("date").select(pl.col("date"), value.alias(name))


def close_to_close_expr(window: int = DEFAULT_WINDOW) -> pl.Expr:
    """Close-to-close volatility: std (ddof 1) of r over ``window`` days x sqrt(252)."""
    _check_window(window)
    return _log_return().rolling_std(window, min_samples=window, ddof=1) * _ANNUALISE


def parkinson_expr(window: int = DEFAULT_WINDOW) -> pl.Expr:
    """Parkinson volatility: sqrt(mean of ln(H/L)^2 / (4 ln 2)) over ``window`` x sqrt(252)."""
    _check_window(window)
    mean = _range_squared().rolling_mean(window, min_samples=window)
    return _root_annualised(mean / (4 * math.log(2)))


def garman_klass_expr(window: int = DEFAULT_WINDOW) -> pl.Expr:
    """Garman-Klass volatility: sqrt(mean of the daily GK variance) over ``window`` x sqrt(252)."""
    _check_window(window)
    return _root_annualised(_garman_klass_variance().rolling_mean(window, min_samples=window))


def daily_proxy_expr() -> pl.Expr:
    """The one-day proxy: sqrt(252 GK variance), else sqrt(252) |r| when GK <= 0, else null."""
    gk = _garman_klass_variance()
    squared_return = _log_return() ** 2
    variance = pl.when(gk > 0).then(gk).when(squared_return > 0).then(squared_return)
    return _root_annualised(variance)


def close_to_close(bars: pl.DataFrame, window: int = DEFAULT_WINDOW) -> pl.DataFrame:
    """``date``, ``close_to_close``: the annualised close-to-close volatility per bar."""
    return _estimate(bars, "close_to_close", close_to_close_expr(window))


def parkinson(bars: pl.DataFrame, window: int = DEFAULT_WINDOW) -> pl.DataFrame:
    """``date``, ``parkinson``: the annualised Parkinson volatility per bar."""
    return _estimate(bars, "parkinson", parkinson_expr(window))


def garman_klass(bars: pl.DataFrame, window: int = DEFAULT_WINDOW) -> pl.DataFrame:
    """``date``, ``garman_klass``: the annualised Garman-Klass volatility per bar."""
    return _estimate(bars, "garman_klass", garman_klass_expr(window))


def daily_proxy(bars: pl.DataFrame) -> pl.DataFrame:
    """``date``, ``vol_proxy``: each day's annualised realised volatility proxy."""
    return _estimate(bars, "vol_proxy", daily_proxy_expr())


def realized_volatility(bars: pl.DataFrame, window: int = DEFAULT_WINDOW) -> pl.DataFrame:
    """``date``, ``close_to_close``, ``parkinson``, ``garman_klass``, ``vol_proxy``.

    Lazily: the estimators share their log ratios, which the query optimiser computes
    once (half the time of the eager select on the dashboard's few hundred bars).
    """
    return (
        bars.lazy()
        .sort("date")
        .select(
            pl.col("date"),
            close_to_close_expr(window).alias("close_to_close"),
            parkinson_expr(window).alias("parkinson"),
            garman_klass_expr(window).alias("garman_klass"),
            daily_proxy_expr().alias("vol_proxy"),
        )
        .collect()
    )
