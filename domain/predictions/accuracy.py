"""Forecast accuracy of scored predictions: grouped tables, rolling tracking, per-row losses.

Pure Polars: frames in, frames (or plain dicts) out. No I/O.

Inputs (``POINTS_SCHEMA``, ``BANDS_SCHEMA``; columns are cast to these types, other
columns of ``points`` are kept for grouping, and an empty frame may lack columns):

- ``points``: one row per scored (prediction, step): ``model``, ``ticker``,
  ``prediction_id``, ``cutoff`` (the last bar the forecast used), ``step`` (bars after the
  cutoff), ``target_date``, ``last_close`` (close at the cutoff), ``point`` (the median
  price forecast), ``actual`` (close at the target date), ``vol_forecast`` (annualised
  volatility forecast for that day) and ``vol_proxy`` (that day's annualised realised
  volatility proxy, see ``domain.predictions.volatility``; may be null).
- ``bands``: one row per (prediction, step, level): ``prediction_id``, ``step``,
  ``level`` (central coverage in percent), ``lower``, ``upper`` (prices). A band is
  joined to its point by (prediction_id, step); bands without a scored point and bands
  whose level is not strictly between 0 and 100 are ignored.

With e = point - actual, y = actual, over the rows of a group (``accuracy``; default
groups (model, ticker, step)):

- ``n``: rows. ``mae`` = mean |e|; ``rmse`` = sqrt(mean e^2) (price units).
- ``mape`` = 100 x mean |e| / |y| (percent), over the rows with y != 0; null when none.
- ``mase`` = mae / mean |last_close - y| over the same rows: the MAE relative to the
  no-change (random-walk) forecast of the same horizon on exactly those rows, so 1.0 is
  "as good as the random walk" and below 1 is better. (Hyndman & Koehler 2006, "Another
  look at measures of forecast accuracy", *IJF* 22(4), scale by an in-sample naive MAE;
  here the scale is the naive forecast's out-of-sample MAE, a relative MAE, so models
  scored on the same rows compare directly.) Null when that denominator is 0.
- ``direction_hit_rate``: the share of rows where sign(point - last_close) equals
  sign(y - last_close), over the rows where the forecast calls a direction
  (point != last_close). Ties: a forecast of no change calls no direction and is left
  out (so the random walk's rate is null, not 0); an actual close equal to last_close
  with a forecast that called a move is a miss. Null when no row calls a direction.
- per level, over the rows with a band at that level: ``coverage`` = share of rows
  with lower <= y <= upper (inclusive); ``mean_width`` = mean (upper - lower);
  ``winkler`` = mean Winkler interval score (Winkler 1972, "A decision-theoretic approach
  to interval estimation", *JASA* 67, 187-191; Gneiting & Raftery 2007, *JASA* 102,
  359-378): with alpha = 1 - level/100, (upper - lower) + (2/alpha)(lower - y) if
  y < lower, + (2/alpha)(y - upper) if y > upper. Lower is better; it rewards narrow
  bands and charges misses in proportion to their distance.
- ``pinball``: the quantile (pinball) loss rho_tau(y, q) = (tau - 1[y < q])(y - q)
  (Koenker & Bassett 1978), averaged per row over the quantiles the row's forecast
  defines: tau = 0.5 at the point and, for each band level, tau = (1 - level/100)/2 at
  the lower and (1 + level/100)/2 at the upper bound; then averaged over the rows.
  A row without bands is scored on its median alone (0.5 |e|). Price units.
- volatility, on annualised variances s = vol_proxy^2 and f = vol_forecast^2, over the
  rows where both are finite and positive (a null proxy is left out): ``qlike`` = mean
  (s/f - ln(s/f) - 1), 0 for a perfect forecast, and ``vol_mse`` = mean (s - f)^2. Both
  rank forecasts consistently with a noisy unbiased proxy (Patton 2011, *Journal of
  Econometrics* 160(1), 246-256). Null when no row qualifies.

``rolling_accuracy`` tracks the point metrics through time: per group, rows ordered by
(target_date, cutoff, prediction_id), each metric over the trailing ``window`` scored
rows (fewer at the start; ``n`` says how many), with ``coverage`` per level over those
of them with a band at that level; one output row per target_date, the one of its last
row, so all rows of a date are in.

``losses`` gives one loss per scored row for ``domain.predictions.comparison``:
``squared`` e^2, ``absolute`` |e|, ``pinball`` (the row's mean pinball loss above),
``winkler`` (at ``level``, default 95; rows without that band are left out), ``qlike``
(rows without a usable proxy are left out).

Empty inputs give empty outputs with the same columns. Non-finite values in the output
of ``accuracy_records``/``rolling_records`` become None, so the dicts encode as JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal, get_args

import polars as pl

from domain.errors import InvalidFieldsError

POINTS_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String(),
    "ticker": pl.String(),
    "prediction_id": pl.String(),
    "cutoff": pl.Date(),
    "step": pl.Int32(),
    "target_date": pl.Date(),
    "last_close": pl.Float64(),
    "point": pl.Float64(),
    "actual": pl.Float64(),
    "vol_forecast": pl.Float64(),
    "vol_proxy": pl.Float64(),
}
BANDS_SCHEMA: dict[str, pl.DataType] = {
    "prediction_id": pl.String(),
    "step": pl.Int32(),
    "level": pl.Float64(),
    "lower": pl.Float64(),
    "upper": pl.Float64(),
}
DEFAULT_BY: tuple[str, ...] = ("model", "ticker", "step")
DEFAULT_ROLLING_WINDOW = 20
DEFAULT_LOSS_LEVEL = 95.0

Loss = Literal["squared", "absolute", "pinball", "winkler", "qlike"]
LOSSES: tuple[str, ...] = get_args(Loss)

POINT_METRICS: tuple[str, ...] = ("mae", "rmse", "mape", "mase", "direction_hit_rate")
METRICS: tuple[str, ...] = (*POINT_METRICS, "pinball", "qlike", "vol_mse")
LOSS_COLUMNS: tuple[str, ...] = (
    "prediction_id", "model", "ticker", "cutoff", "step", "target_date", "loss",
)  # fmt: skip

_ROW_KEY = ("prediction_id", "step")
_ORDER = ("target_date", "cutoff", "prediction_id")
_LEVEL_STRUCT = pl.Struct(
    {"level": pl.Float64, "coverage": pl.Float64, "mean_width": pl.Float64, "winkler": pl.Float64}
)
_ROLLING_LEVEL_STRUCT = pl.Struct({"level": pl.Float64, "coverage": pl.Float64})


# -- inputs -----------------------------------------------------------------------------


def _conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """``frame`` with the schema's columns cast to their types (an empty one may lack them)."""
    if frame.is_empty() and not set(schema) <= set(frame.columns):
        return pl.DataFrame(schema=schema)
    return frame.with_columns(pl.col(name).cast(dtype) for name, dtype in schema.items())


def _check_by(by: Sequence[str]) -> list[str]:
    if not by or any(name not in POINTS_SCHEMA for name in by):
        message = f"must be a non-empty subset of {', '.join(POINTS_SCHEMA)}"
        raise InvalidFieldsError([{"field": "by", "message": message}])
    return list(dict.fromkeys(by))


def _check_level(level: float) -> None:
    if not 0 < level < 100:
        raise InvalidFieldsError([{"field": "level", "message": "must lie between 0 and 100"}])


# -- per row and per band ---------------------------------------------------------------


def _pinball(y: pl.Expr, quantile: pl.Expr, tau: pl.Expr | float) -> pl.Expr:
    """rho_tau(y, q) = (tau - 1[y < q]) (y - q)."""
    return (tau - (y < quantile).cast(pl.Float64)) * (y - quantile)


def _band_rows(points: pl.DataFrame, bands: pl.DataFrame, keys: Iterable[str]) -> pl.DataFrame:
    """Each usable band with its point's ``actual`` and ``keys``, and its scores."""
    y, lower, upper = pl.col("actual"), pl.col("lower"), pl.col("upper")
    alpha = 1 - pl.col("level") / 100
    width = upper - lower
    below = (2 / alpha) * (lower - y)
    above = (2 / alpha) * (y - upper)
    carried = list(dict.fromkeys([*_ROW_KEY, "actual", *keys]))
    return (
        bands.filter((pl.col("level") > 0) & (pl.col("level") < 100))
        .join(points.select(carried), on=list(_ROW_KEY), how="inner")
        .with_columns(
            _inside=((lower <= y) & (y <= upper)).cast(pl.Float64),
            _width=width,
            _winkler=pl.when(y < lower)
            .then(width + below)
            .when(y > upper)
            .then(width + above)
            .otherwise(width),
            _band_pinball=_pinball(y, lower, alpha / 2) + _pinball(y, upper, 1 - alpha / 2),
        )
    )


def _with_row_scores(points: pl.DataFrame, band_rows: pl.DataFrame) -> pl.DataFrame:
    """``points`` with the per-row terms every metric and loss averages."""
    per_row = band_rows.group_by(list(_ROW_KEY)).agg(
        _band_pinball_sum=pl.col("_band_pinball").sum(), _quantiles=pl.len() * 2
    )
    e = pl.col("point") - pl.col("actual")
    y, last = pl.col("actual"), pl.col("last_close")
    called = pl.col("point") != last
    proxy_var, forecast_var = pl.col("vol_proxy") ** 2, pl.col("vol_forecast") ** 2
    usable = (
        pl.col("vol_proxy").is_finite()
        & pl.col("vol_forecast").is_finite()
        & (pl.col("vol_proxy") > 0)
        & (pl.col("vol_forecast") > 0)
    )
    ratio = proxy_var / forecast_var
    pinball_sum = 0.5 * e.abs() + pl.col("_band_pinball_sum").fill_null(0.0)
    return points.join(per_row, on=list(_ROW_KEY), how="left").with_columns(
        _abs=e.abs(),
        _sq=e**2,
        _ape=pl.when(y != 0).then(100 * e.abs() / y.abs()),
        _naive=(last - y).abs(),
        _hit=pl.when(called).then((pl.col("point") - last).sign() == (y - last).sign()),
        _pinball=pinball_sum / (1 + pl.col("_quantiles").fill_null(0)),
        _qlike=pl.when(usable).then(ratio - ratio.log() - 1),
        _vol_se=pl.when(usable).then((proxy_var - forecast_var) ** 2),
    )


def _ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """numerator / denominator, null when the denominator is 0 or null."""
    return pl.when(denominator != 0).then(numerator / denominator)


# -- grouped accuracy -------------------------------------------------------------------


def _point_metrics(rows: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    return rows.group_by(by).agg(
        n=pl.len().cast(pl.Int64),
        mae=pl.col("_abs").mean(),
        rmse=pl.col("_sq").mean().sqrt(),
        mape=pl.col("_ape").mean(),
        mase=_ratio(pl.col("_abs").mean(), pl.col("_naive").mean()),
        direction_hit_rate=pl.col("_hit").cast(pl.Float64).mean(),
        pinball=pl.col("_pinball").mean(),
        qlike=pl.col("_qlike").mean(),
        vol_mse=pl.col("_vol_se").mean(),
    )


def _level_metrics(band_rows: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    return (
        band_rows.group_by([*by, "level"])
        .agg(
            coverage=pl.col("_inside").mean(),
            mean_width=pl.col("_width").mean(),
            winkler=pl.col("_winkler").mean(),
        )
        .sort("level")
        .group_by(by, maintain_order=True)
        .agg(levels=pl.struct("level", "coverage", "mean_width", "winkler"))
    )


def accuracy(
    points: pl.DataFrame, bands: pl.DataFrame, by: Sequence[str] = DEFAULT_BY
) -> pl.DataFrame:
    """One row per group: ``by``, ``n``, the ``METRICS`` and ``levels``.

    ``levels`` is a list of {level, coverage, mean_width, winkler} structs sorted by level
    (empty for a group without bands). Rows are sorted by ``by``.
    """
    keys = _check_by(by)
    points = _conform(points, POINTS_SCHEMA)
    band_rows = _band_rows(points, _conform(bands, BANDS_SCHEMA), keys)
    rows = _with_row_scores(points, band_rows)
    return (
        _point_metrics(rows, keys)
        .join(_level_metrics(band_rows, keys), on=keys, how="left", nulls_equal=True)
        .with_columns(pl.col("levels").fill_null(pl.lit([], dtype=pl.List(_LEVEL_STRUCT))))
        .select(*keys, "n", *METRICS, "levels")
        .sort(keys, nulls_last=True)
    )


# -- rolling accuracy -------------------------------------------------------------------


def _with_level_hits(
    rows: pl.DataFrame, band_rows: pl.DataFrame
) -> tuple[pl.DataFrame, list[float]]:
    """``rows`` with ``_in_<i>`` (1/0, null without that band) for each level i, and the levels."""
    levels = sorted(band_rows["level"].unique().to_list())
    for i, level in enumerate(levels):
        hits = band_rows.filter(pl.col("level") == level).select(
            *_ROW_KEY, pl.col("_inside").alias(f"_in_{i}")
        )
        rows = rows.join(hits.unique(list(_ROW_KEY)), on=list(_ROW_KEY), how="left")
    return rows, levels


def _trailing(column: str, window: int, by: list[str]) -> tuple[pl.Expr, pl.Expr]:
    """The trailing-window sum of the non-null values of ``column`` and their count."""
    value = pl.col(column).cast(pl.Float64)
    total = value.fill_null(0.0).rolling_sum(window, min_samples=1).over(by)
    count = value.is_not_null().cast(pl.Int64).rolling_sum(window, min_samples=1).over(by)
    return total, count


def _rolling_levels(levels: list[float], window: int, by: list[str]) -> pl.Expr:
    if not levels:
        return pl.lit([], dtype=pl.List(_ROLLING_LEVEL_STRUCT))
    structs = []
    for i, level in enumerate(levels):
        total, count = _trailing(f"_in_{i}", window, by)
        coverage = _ratio(total, count.cast(pl.Float64))
        structs.append(
            pl.struct(pl.lit(level, pl.Float64).alias("level"), coverage.alias("coverage"))
        )
    return pl.concat_list(structs)


def rolling_accuracy(
    points: pl.DataFrame,
    bands: pl.DataFrame,
    window: int = DEFAULT_ROLLING_WINDOW,
    by: Sequence[str] = DEFAULT_BY,
) -> pl.DataFrame:
    """Per group and target_date: ``n`` and the ``POINT_METRICS`` over the trailing rows.

    Columns: ``by``, ``target_date``, ``n``, the point metrics and ``levels``, a list of
    {level, coverage} structs (coverage null when no row of the window has that band).
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise InvalidFieldsError([{"field": "window", "message": "must be a positive integer"}])
    keys = [k for k in _check_by(by) if k != "target_date"]
    if not keys:
        raise InvalidFieldsError(
            [{"field": "by", "message": "must name a column besides target_date"}]
        )
    points = _conform(points, POINTS_SCHEMA)
    band_rows = _band_rows(points, _conform(bands, BANDS_SCHEMA), keys)
    rows = _with_row_scores(points, band_rows).sort([*keys, *_ORDER], nulls_last=True)
    rows, levels = _with_level_hits(rows, band_rows)
    rows = rows.with_columns(_one=pl.lit(1, pl.Int64))
    sums = {c: _trailing(c, window, keys) for c in ("_abs", "_sq", "_naive", "_ape", "_hit")}
    scored = sums["_abs"][1].cast(pl.Float64)
    return (
        rows.with_columns(
            n=pl.col("_one").rolling_sum(window, min_samples=1).over(keys),
            mae=_ratio(sums["_abs"][0], scored),
            rmse=_ratio(sums["_sq"][0], scored).sqrt(),
            mape=_ratio(sums["_ape"][0], sums["_ape"][1].cast(pl.Float64)),
            mase=_ratio(sums["_abs"][0], sums["_naive"][0]),
            direction_hit_rate=_ratio(sums["_hit"][0], sums["_hit"][1].cast(pl.Float64)),
            levels=_rolling_levels(levels, window, keys),
        )
        .unique([*keys, "target_date"], keep="last")
        .select(*keys, "target_date", "n", *POINT_METRICS, "levels")
        .sort([*keys, "target_date"], nulls_last=True)
    )


# -- per-row losses ---------------------------------------------------------------------


def losses(
    points: pl.DataFrame,
    bands: pl.DataFrame,
    loss: Loss | str,
    level: float = DEFAULT_LOSS_LEVEL,
) -> pl.DataFrame:
    """One ``loss`` per scored row: ``LOSS_COLUMNS``, sorted by model, cutoff, step."""
    if loss not in LOSSES:
        raise InvalidFieldsError(
            [{"field": "loss", "message": f"must be one of {', '.join(LOSSES)}"}]
        )
    _check_level(level)
    points = _conform(points, POINTS_SCHEMA)
    bands = _conform(bands, BANDS_SCHEMA)
    if loss == "winkler":
        rows = _band_rows(points, bands.filter(pl.col("level") == level), LOSS_COLUMNS[:-1])
        value = pl.col("_winkler")
    else:
        rows = _with_row_scores(points, _band_rows(points, bands, ()))
        column = {"squared": "_sq", "absolute": "_abs", "pinball": "_pinball", "qlike": "_qlike"}
        value = pl.col(column[loss])
    return (
        rows.with_columns(value.alias("loss"))
        .filter(pl.col("loss").is_not_null())
        .select(LOSS_COLUMNS)
        .sort("model", "cutoff", "step", "prediction_id")
    )


# -- JSON-shaped records ----------------------------------------------------------------


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _level_key(level: float) -> str:
    return f"{level:g}"


def accuracy_records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """``accuracy``'s rows as plain dicts: the group keys, ``n``, the metrics and
    ``levels`` as {"95": {coverage, mean_width, winkler}, ...} (keys ``f"{level:g}"``)."""
    records: list[dict[str, Any]] = []
    for row in frame.to_dicts():
        levels = {
            _level_key(item["level"]): {
                name: _json_number(item[name]) for name in ("coverage", "mean_width", "winkler")
            }
            for item in row.pop("levels")
        }
        records.append({k: _json_number(v) for k, v in row.items()} | {"levels": levels})
    return records


def rolling_records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """``rolling_accuracy``'s rows as plain dicts, ``levels`` as {"95": coverage, ...}."""
    records: list[dict[str, Any]] = []
    for row in frame.to_dicts():
        levels = {
            _level_key(item["level"]): _json_number(item["coverage"]) for item in row.pop("levels")
        }
        records.append({k: _json_number(v) for k, v in row.items()} | {"levels": levels})
    return records
