"""Training datasets: features and target from daily bars, a dated split and a content hash.

Pure: bars in, a Polars frame and its canonical bytes out. No I/O.

Spec (``parse_dataset_spec``, every bad field reported at once as ``InvalidFieldsError``):
``tickers`` (1-20, normalised with ``check_ticker``, duplicates dropped, order kept),
``start`` <= ``end`` (ISO dates), ``features`` (non-empty subset of ``FEATURES``, default
all; stored in ``FEATURES`` order whatever the request order, so the same set gives the
same columns and hash), ``lags`` (1-20, default 5), ``window`` (2-250, default 20),
``target`` (``direction`` or ``log_return``, default ``direction``), ``validation_start``
(within [start, end], default none) and ``validation_fraction`` (0.05-0.5, default 0.2).
``DatasetSpec.as_dict`` holds every field, defaults filled in, and parses back to the
same spec; ``build_dataset`` passes a hand-built spec through the parser the same way.

Features, per ticker over its bars inside [start, end] sorted by date (nothing before
``start`` is used, so rows without a full history are dropped; "day" means the ticker's
previous bar, calendar gaps are not filled), with r_t = ln(close_t / close_{t-1}):

- ``log_returns``: ``log_return_lag_1`` ... ``log_return_lag_{lags}``, lag_k = r_{t-k+1};
- ``rolling_volatility``: ``rolling_volatility_{window}``, sample standard deviation
  (ddof 1) of r over the last ``window`` days, t included;
- ``range_volatility``: ``range_volatility_{window}``, Parkinson's estimator
  sqrt(mean over the last ``window`` days of ln(high/low)^2 / (4 ln 2));
- ``volume_change``: ln(volume_t / volume_{t-1}), null when either volume is 0.

Everything is known at the close of day t. ``with_feature_columns`` computes these
columns for every bar it is given, the last one included (serving needs the row of a
cutoff, which has no next day), and is the one code path: ``build_dataset`` calls it on
the bars inside [start, end], a forecast with a trained model on the bars up to its
cutoff. The target is about day t+1: ``direction`` is 1.0 when r_{t+1} > 0 else 0.0,
``log_return`` is r_{t+1}. Non-finite intermediate values (a zero close, low or volume)
become null, and every row with a null feature or target is dropped: the first rows of
each ticker (until lags/window are full), its last day (no next day), and days touching
a zero volume or price. ``lags`` only matters with ``log_returns`` and ``window`` only
with the two volatilities.

Frame: ``date`` (Date), ``ticker``, ``split``, the feature columns in ``FEATURES``
order, ``target`` (Float64); rows sorted by (date, ticker). Split: rows dated on or
after ``validation_start`` are ``validation``, the others ``train``. By default
``validation_start`` is the first of the last k distinct dates of the kept rows, with
k = max(1, n * validation_fraction rounded half up). The last train row's target is the
return into the next date, which may lie in the validation period: a one-day label
overlap, no embargo. Refused (``InvalidDatasetError``): a ticker without bars in range
or without a row left, fewer than ``MIN_ROWS`` rows, a split under ``MIN_SPLIT_ROWS``.

Canonical bytes: msgspec JSON of ``{"columns": [...], "data": {column: [values]}}``,
dates as ISO strings and floats in their shortest round-trip form, so equal rows give
equal bytes on any machine (Parquet or IPC bytes may change with the library version).
``content_hash`` is ``"sha256:"`` + the SHA-256 of those bytes; it identifies the exact
rows, split included (a float computed differently in its last bit by another Polars
version gives another hash). ``load_dataset`` restores the identical frame.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any, Literal, get_args

import msgspec
import numpy as np
import numpy.typing as npt
import polars as pl

from domain.errors import DomainError, InvalidFieldsError
from domain.market_data import Bar, InvalidTickerError, check_ticker

# One definition of the choices and bounds: the API's schemas are built from them too.
Feature = Literal["log_returns", "rolling_volatility", "range_volatility", "volume_change"]
Target = Literal["direction", "log_return"]
FEATURES: tuple[str, ...] = get_args(Feature)
TARGETS: tuple[str, ...] = get_args(Target)

MIN_ROWS = 50  # rows of the whole dataset, after dropping incomplete rows
MIN_SPLIT_ROWS = 10  # rows of each of the train and validation splits
MAX_TICKERS = 20
# field -> (low, high) inclusive
BOUNDS: dict[str, tuple[float, float]] = {
    "lags": (1, 20),
    "window": (2, 250),
    "validation_fraction": (0.05, 0.5),
}
KEY_COLUMNS = ("date", "ticker", "split")
TARGET_COLUMN = "target"
Float32Array = npt.NDArray[np.float32]

_BAR_SCHEMA = {
    "date": pl.String, "open": pl.Float64, "high": pl.Float64, "low": pl.Float64,
    "close": pl.Float64, "volume": pl.Float64,
}  # fmt: skip


class InvalidDatasetError(DomainError):
    """The bars cannot make the dataset the spec asks for (HTTP 422)."""


@dataclass(frozen=True)
class DatasetSpec:
    tickers: tuple[str, ...]
    start: date
    end: date
    features: tuple[str, ...] = FEATURES
    lags: int = 5
    window: int = 20
    target: str = "direction"
    validation_start: date | None = None
    validation_fraction: float = 0.2

    def as_dict(self) -> dict[str, Any]:
        return {
            "tickers": list(self.tickers),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "features": list(self.features),
            "lags": self.lags,
            "window": self.window,
            "target": self.target,
            "validation_start": (
                self.validation_start.isoformat() if self.validation_start else None
            ),
            "validation_fraction": self.validation_fraction,
        }


@dataclass(frozen=True)
class BuiltDataset:
    frame: pl.DataFrame
    feature_columns: tuple[str, ...]
    validation_start: date
    row_count: int
    train_rows: int
    validation_rows: int
    content_hash: str
    canonical_bytes: bytes


_KNOWN_FIELDS = frozenset(f.name for f in fields(DatasetSpec))


def _date(value: Any) -> date | None:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _parse_tickers(raw: Any, errors: list[dict[str, str]]) -> tuple[str, ...]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_TICKERS:
        errors.append(
            {"field": "tickers", "message": f"must be a list of 1 to {MAX_TICKERS} tickers"}
        )
        return ()
    tickers: list[str] = []
    for i, item in enumerate(raw):
        try:
            if not isinstance(item, str):
                raise InvalidTickerError("must be a string")
            ticker = check_ticker(item)
        except InvalidTickerError as exc:
            errors.append({"field": f"tickers[{i}]", "message": str(exc)})
            continue
        if ticker not in tickers:
            tickers.append(ticker)
    return tuple(tickers)


def _parse_features(raw: Any, errors: list[dict[str, str]]) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        errors.append({"field": "features", "message": "must be a non-empty list"})
        return ()
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        if not isinstance(item, str) or item not in FEATURES:
            errors.append(
                {"field": f"features[{i}]", "message": f"must be one of {', '.join(FEATURES)}"}
            )
        elif item in seen:
            errors.append({"field": f"features[{i}]", "message": f"repeats features[{seen[item]}]"})
        else:
            seen[item] = i
    return tuple(f for f in FEATURES if f in seen)


def _parse_number(name: str, value: Any, errors: list[dict[str, str]]) -> float:
    integer = name != "validation_fraction"
    kind = "an integer" if integer else "a number"
    low, high = BOUNDS[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        errors.append({"field": name, "message": f"must be {kind}"})
    elif integer and not float(value).is_integer():
        errors.append({"field": name, "message": "must be an integer"})
    elif not math.isfinite(value) or not low <= value <= high:
        errors.append({"field": name, "message": f"must be between {low:g} and {high:g}"})
    else:
        return float(value)
    return math.nan


def parse_dataset_spec(raw: dict[str, Any]) -> DatasetSpec:
    """A dataset spec from a request mapping; every bad field is reported at once."""
    errors: list[dict[str, str]] = [
        {"field": name, "message": "is not a known field"}
        for name in sorted(set(raw) - _KNOWN_FIELDS)
    ]
    tickers = _parse_tickers(raw.get("tickers"), errors)
    days: dict[str, date | None] = {}
    for name in ("start", "end"):
        days[name] = _date(raw.get(name))
        if days[name] is None:
            errors.append({"field": name, "message": "must be an ISO date (YYYY-MM-DD)"})
    start, end = days["start"], days["end"]
    if start is not None and end is not None and start > end:
        errors.append({"field": "end", "message": "must not be before start"})
    features = _parse_features(raw.get("features", list(FEATURES)), errors)
    lags = _parse_number("lags", raw.get("lags", 5), errors)
    window = _parse_number("window", raw.get("window", 20), errors)
    fraction = _parse_number("validation_fraction", raw.get("validation_fraction", 0.2), errors)
    target = raw.get("target", "direction")
    if target not in TARGETS:
        errors.append({"field": "target", "message": f"must be one of {', '.join(TARGETS)}"})
    validation_start = None
    if raw.get("validation_start") is not None:
        validation_start = _date(raw["validation_start"])
        if validation_start is None:
            errors.append(
                {"field": "validation_start", "message": "must be an ISO date (YYYY-MM-DD)"}
            )
        elif start is not None and end is not None and not start <= validation_start <= end:
            errors.append(
                {"field": "validation_start", "message": "must lie between start and end"}
            )
    if errors:
        raise InvalidFieldsError(errors)
    assert start is not None and end is not None
    return DatasetSpec(
        tickers=tickers,
        start=start,
        end=end,
        features=features,
        lags=int(lags),
        window=int(window),
        target=target,
        validation_start=validation_start,
        validation_fraction=fraction,
    )


def feature_columns(spec: DatasetSpec) -> tuple[str, ...]:
    """The frame's feature columns for ``spec``, in ``FEATURES`` order."""
    columns: list[str] = []
    for feature in FEATURES:
        if feature not in spec.features:
            continue
        if feature == "log_returns":
            columns += [f"log_return_lag_{k}" for k in range(1, spec.lags + 1)]
        elif feature == "volume_change":
            columns.append("volume_change")
        else:
            columns.append(f"{feature}_{spec.window}")
    return tuple(columns)


def _finite_or_null(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr.is_finite()).then(expr)


def _bars_frame(spec: DatasetSpec, bars: Mapping[str, Sequence[Bar]]) -> pl.DataFrame:
    """All tickers' bars inside [start, end]; refuses a ticker without any, or a repeated date."""
    frames: list[pl.DataFrame] = []
    for ticker in spec.tickers:
        frame = (
            pl.DataFrame(list(bars.get(ticker, ())), schema=_BAR_SCHEMA, orient="row", strict=False)
            .with_columns(pl.col("date").str.to_date("%Y-%m-%d"), ticker=pl.lit(ticker))
            .filter(pl.col("date").is_between(spec.start, spec.end))
        )
        if frame.is_empty():
            raise InvalidDatasetError(f"no bars for {ticker} between {spec.start} and {spec.end}")
        repeated = frame.filter(pl.col("date").is_duplicated())["date"]
        if len(repeated):
            raise InvalidDatasetError(f"bars of {ticker} repeat the date {repeated.to_list()[0]}")
        frames.append(frame)
    return pl.concat(frames).sort("ticker", "date")


def _log_return() -> pl.Expr:
    """r_t = ln(close_t / close_{t-1}) within each ticker; null where not finite."""
    return _finite_or_null((pl.col("close") / pl.col("close").shift(1)).log()).over("ticker")


def with_feature_columns(spec: DatasetSpec, bars: pl.DataFrame) -> pl.DataFrame:
    """``bars`` with the feature columns of ``spec`` added, for EVERY bar (the last included).

    The one definition of the features: ``build_dataset`` calls it for its rows, and a
    forecast with a trained model (``infrastructure.forecasting.mlp``) for the bars up to
    its cutoff, so training and serving share one code path.

    ``bars``: one row per bar with ``date`` (Date), ``ticker``, ``open``, ``high``,
    ``low``, ``close`` and ``volume`` (Float64); dates strictly increasing within a ticker
    (``build_dataset`` refuses repeats). Returned: the same rows sorted by (ticker, date),
    every input column kept, plus ``feature_columns(spec)`` in that order. A feature that
    cannot be computed (history shorter than its lags or window, a zero price or volume in
    reach) is null; no row is dropped. Only ``features``, ``lags`` and ``window`` of the
    spec are read: the caller chooses the rows (``build_dataset``: its bars inside
    [start, end]). Every feature of a bar is a function of its ticker's bars up to and
    including it (trailing shifts and windows only): nothing later enters.
    """
    frame = bars.sort("ticker", "date")
    prev_volume = pl.col("volume").shift(1).over("ticker")
    frame = frame.with_columns(
        _r=_log_return(),
        _range2=_finite_or_null((pl.col("high") / pl.col("low")).log() ** 2),
        volume_change=pl.when((pl.col("volume") > 0) & (prev_volume > 0)).then(
            _finite_or_null((pl.col("volume") / prev_volume).log())
        ),
    )
    r, w, lag_range = pl.col("_r"), spec.window, range(1, spec.lags + 1)
    frame = frame.with_columns(
        *[r.shift(k - 1).over("ticker").alias(f"log_return_lag_{k}") for k in lag_range],
        r.rolling_std(w, min_samples=w).over("ticker").alias(f"rolling_volatility_{w}"),
        (pl.col("_range2").rolling_mean(w, min_samples=w).over("ticker") / (4 * math.log(2)))
        .sqrt()
        .alias(f"range_volatility_{w}"),
    )
    return frame.select(*bars.columns, *feature_columns(spec))


def _with_target(spec: DatasetSpec, frame: pl.DataFrame) -> pl.DataFrame:
    """The target of each row, about the next bar of its ticker (null on the last)."""
    frame = frame.with_columns(_r=_log_return())
    next_r = pl.col("_r").shift(-1).over("ticker")
    target = (next_r > 0).cast(pl.Float64) if spec.target == "direction" else next_r
    return frame.with_columns(target.alias(TARGET_COLUMN)).drop("_r")


def _default_validation_start(frame: pl.DataFrame, fraction: float) -> date:
    dates = frame["date"].unique().sort()
    count = max(1, math.floor(len(dates) * fraction + 0.5))
    day: date = dates[len(dates) - count]
    return day


def build_dataset(spec: DatasetSpec, bars: Mapping[str, Sequence[Bar]]) -> BuiltDataset:
    """The dataset of ``spec`` from each ticker's bars (any order; other tickers ignored)."""
    spec = parse_dataset_spec(spec.as_dict())  # a spec built by hand meets the same rules
    columns = feature_columns(spec)
    kept = [*columns, TARGET_COLUMN]
    frame = (
        _with_target(spec, with_feature_columns(spec, _bars_frame(spec, bars)))
        .filter(*[pl.col(c).is_not_null() & pl.col(c).is_finite() for c in kept])
        .select("date", "ticker", *kept)
    )
    present = set(frame["ticker"])
    missing = [t for t in spec.tickers if t not in present]
    if missing:
        raise InvalidDatasetError(
            f"no rows left for {', '.join(missing)} after dropping the days without full "
            f"history (lags {spec.lags}, window {spec.window}) or a next day"
        )
    if frame.height < MIN_ROWS:
        raise InvalidDatasetError(
            f"the dataset has {frame.height} rows after dropping the days without full "
            f"history or a next day; at least {MIN_ROWS} are needed"
        )
    validation_start = spec.validation_start or _default_validation_start(
        frame, spec.validation_fraction
    )
    split = pl.when(pl.col("date") >= validation_start).then(pl.lit("validation"))
    frame = (
        frame.with_columns(split=split.otherwise(pl.lit("train")))
        .select(*KEY_COLUMNS, *kept)
        .sort("date", "ticker")
    )
    validation_rows = int((frame["split"] == "validation").sum())
    train_rows = frame.height - validation_rows
    if min(train_rows, validation_rows) < MIN_SPLIT_ROWS:
        raise InvalidDatasetError(
            f"the split at {validation_start} leaves {train_rows} train and "
            f"{validation_rows} validation rows; each split needs at least {MIN_SPLIT_ROWS}"
        )
    data = dump_dataset(frame)
    return BuiltDataset(
        frame=frame,
        feature_columns=columns,
        validation_start=validation_start,
        row_count=frame.height,
        train_rows=train_rows,
        validation_rows=validation_rows,
        content_hash="sha256:" + hashlib.sha256(data).hexdigest(),
        canonical_bytes=data,
    )


class _Payload(msgspec.Struct, forbid_unknown_fields=True):
    columns: list[str]
    data: dict[str, list[Any]]


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(_Payload).decode


def dump_dataset(frame: pl.DataFrame) -> bytes:
    """The canonical bytes of a dataset frame (what ``content_hash`` covers)."""
    frame = frame.with_columns(pl.col("date").dt.to_string("%Y-%m-%d"))
    return _encode(
        {"columns": frame.columns, "data": {c: frame[c].to_list() for c in frame.columns}}
    )


def load_dataset(canonical_bytes: bytes) -> pl.DataFrame:
    """The frame whose canonical bytes these are (``frame.equals`` the built one)."""
    try:
        payload = _decode(canonical_bytes)
    except msgspec.DecodeError as exc:
        raise InvalidDatasetError(f"not the bytes of a dataset: {exc}") from None
    if payload.columns != list(payload.data) or not set(KEY_COLUMNS) <= set(payload.columns):
        raise InvalidDatasetError("not the bytes of a dataset: columns do not match the data")
    schema = {c: pl.String if c in KEY_COLUMNS else pl.Float64 for c in payload.columns}
    try:
        return pl.DataFrame(payload.data, schema=schema).with_columns(
            pl.col("date").str.to_date("%Y-%m-%d")
        )
    except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
        raise InvalidDatasetError(f"not the bytes of a dataset: {exc}") from None


def to_arrays(
    frame: pl.DataFrame, feature_columns: Sequence[str]
) -> tuple[Float32Array, Float32Array, Float32Array, Float32Array]:
    """x_train, y_train, x_val, y_val as float32 arrays (x: rows x features, y: rows)."""
    arrays: list[Float32Array] = []
    for split in ("train", "validation"):
        rows = frame.filter(pl.col("split") == split)
        arrays.append(np.ascontiguousarray(rows.select(feature_columns).to_numpy(), np.float32))
        arrays.append(np.ascontiguousarray(rows[TARGET_COLUMN].to_numpy(), np.float32))
    return arrays[0], arrays[1], arrays[2], arrays[3]
