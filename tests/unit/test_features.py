"""Dataset builder without I/O: features against hand computations, split, hash, spec."""

from __future__ import annotations

import math
import random
import statistics
from datetime import date, timedelta
from itertools import pairwise
from typing import Any

import msgspec
import numpy as np
import polars as pl
import pytest

from domain.errors import InvalidFieldsError
from domain.market_data import Bar
from domain.ml.features import (
    FEATURES,
    DatasetSpec,
    InvalidDatasetError,
    build_dataset,
    load_dataset,
    parse_dataset_spec,
    to_arrays,
    with_feature_columns,
)

DAY0 = date(2024, 1, 1)


def make_bars(n: int, *, seed: int = 1, base: float = 100.0, first: date = DAY0) -> list[Bar]:
    """n daily bars of a random walk; open is the previous close."""
    rng = random.Random(seed)
    close = base
    bars: list[Bar] = []
    for i in range(n):
        prev, close = close, close * math.exp(rng.gauss(0, 0.01))
        high = max(prev, close) * (1 + rng.uniform(0.001, 0.01))
        low = min(prev, close) * (1 - rng.uniform(0.001, 0.01))
        volume = float(rng.randint(1_000, 5_000))
        bars.append(((first + timedelta(i)).isoformat(), prev, high, low, close, volume))
    return bars


def spec(tickers: tuple[str, ...] = ("A",), **over: Any) -> DatasetSpec:
    values: dict[str, Any] = {"start": DAY0, "end": date(2024, 12, 31), "lags": 3, "window": 5}
    values.update(over)
    return DatasetSpec(tickers=tickers, **values)


def rows_of(frame: pl.DataFrame, ticker: str) -> list[dict[str, Any]]:
    return frame.filter(pl.col("ticker") == ticker).to_dicts()


def index_of(day: date) -> int:
    return (day - DAY0).days


def test_features_and_target_match_a_hand_computation() -> None:
    bars = make_bars(80)
    close = [b[4] for b in bars]
    r = [math.nan] + [math.log(close[i] / close[i - 1]) for i in range(1, len(close))]
    built = build_dataset(spec(), {"A": bars})
    row = next(x for x in built.frame.to_dicts() if x["date"] == DAY0 + timedelta(30))
    i = 30
    assert row["log_return_lag_1"] == pytest.approx(r[i], rel=1e-12)
    assert row["log_return_lag_2"] == pytest.approx(r[i - 1], rel=1e-12)
    assert row["log_return_lag_3"] == pytest.approx(r[i - 2], rel=1e-12)
    assert row["rolling_volatility_5"] == pytest.approx(statistics.stdev(r[i - 4 : i + 1]))
    squares = [math.log(b[2] / b[3]) ** 2 for b in bars[i - 4 : i + 1]]
    parkinson = math.sqrt(sum(squares) / 5 / (4 * math.log(2)))
    assert row["range_volatility_5"] == pytest.approx(parkinson, rel=1e-9)
    assert row["volume_change"] == pytest.approx(math.log(bars[i][5] / bars[i - 1][5]))
    assert row["target"] == (1.0 if r[i + 1] > 0 else 0.0)
    regression = build_dataset(spec(target="log_return"), {"A": bars}).frame
    assert regression.filter(pl.col("date") == row["date"])["target"][0] == pytest.approx(r[i + 1])


def bars_frame(bars: list[Bar], ticker: str = "A") -> pl.DataFrame:
    columns = ("date", "open", "high", "low", "close", "volume")
    frame = pl.DataFrame(bars, schema=columns, orient="row")
    return frame.with_columns(pl.col("date").str.to_date(), ticker=pl.lit(ticker))


def test_feature_columns_cover_every_bar_and_equal_the_datasets_rows() -> None:
    bars = make_bars(80)
    built = build_dataset(spec(), {"A": bars})
    served = with_feature_columns(spec(), bars_frame(bars))
    assert served.height == 80 and served.columns[-len(built.feature_columns) :] == list(
        built.feature_columns
    )
    same_days = served.join(built.frame.select("date"), on="date", how="semi")
    assert same_days.select(built.feature_columns).equals(built.frame.select(built.feature_columns))
    last = served.row(-1, named=True)  # no next day, so no dataset row, but every feature
    assert last["log_return_lag_1"] == pytest.approx(math.log(bars[79][4] / bars[78][4]))
    assert all(last[c] is not None for c in built.feature_columns)
    first = served.row(0, named=True)  # no history: nulls, not a dropped row
    assert first["log_return_lag_1"] is None and first["rolling_volatility_5"] is None


def test_a_bars_features_never_read_a_later_bar() -> None:
    bars = make_bars(60)
    changed = [*bars[:40], *make_bars(20, seed=9, first=DAY0 + timedelta(40))]
    before = with_feature_columns(spec(), bars_frame(bars)).head(40)
    after = with_feature_columns(spec(), bars_frame(changed)).head(40)
    assert before.equals(after)


def test_column_order_is_keys_then_features_in_canonical_order_then_target() -> None:
    built = build_dataset(
        spec(features=("volume_change", "log_returns"), lags=2), {"A": make_bars(80)}
    )
    assert built.feature_columns == ("log_return_lag_1", "log_return_lag_2", "volume_change")
    assert built.frame.columns == ["date", "ticker", "split", *built.feature_columns, "target"]
    assert built.frame.schema["date"] == pl.Date
    assert built.frame.schema["target"] == pl.Float64


def test_lag_k_of_a_day_is_lag_k_minus_1_of_the_previous_day() -> None:
    rows = rows_of(build_dataset(spec(lags=4), {"A": make_bars(80)}).frame, "A")
    for before, after in pairwise(rows):
        for k in range(2, 5):
            assert after[f"log_return_lag_{k}"] == before[f"log_return_lag_{k - 1}"]


@pytest.mark.parametrize("target", ["direction", "log_return"])
def test_target_is_the_next_days_return(target: str) -> None:
    rows = rows_of(build_dataset(spec(target=target), {"A": make_bars(80)}).frame, "A")
    for today, tomorrow in pairwise(rows):
        following = tomorrow["log_return_lag_1"]
        expected = float(following > 0) if target == "direction" else following
        assert today["target"] == expected


@pytest.mark.parametrize(("lags", "window", "first"), [(3, 5, 5), (7, 5, 7), (1, 2, 2)])
def test_rows_without_full_history_and_the_last_day_are_dropped(
    lags: int, window: int, first: int
) -> None:
    frame = build_dataset(spec(lags=lags, window=window), {"A": make_bars(80)}).frame
    days = [index_of(d) for d in frame["date"]]
    assert days == list(range(first, 79))  # day 79, the last, has no next day


def test_range_volatility_alone_needs_window_days_not_a_previous_close() -> None:
    frame = build_dataset(spec(features=("range_volatility",)), {"A": make_bars(80)}).frame
    assert index_of(frame["date"][0]) == 4


def test_a_zero_volume_drops_its_day_and_the_next_only_with_volume_change() -> None:
    bars = make_bars(80)
    bars[40] = (*bars[40][:5], 0.0)
    with_volume = build_dataset(spec(), {"A": bars}).frame
    days = {index_of(d) for d in with_volume["date"]}
    assert 39 in days and 42 in days and not {40, 41} & days
    without = build_dataset(spec(features=("log_returns",)), {"A": bars}).frame
    assert {40, 41} <= {index_of(d) for d in without["date"]}


def test_bars_outside_the_range_are_never_used() -> None:
    bars = make_bars(120)
    inside = [b for b in bars if b[0] >= "2024-02-01"]
    ranged = spec(start=date(2024, 2, 1), end=date(2024, 4, 29))
    assert build_dataset(ranged, {"A": bars}).frame.equals(
        build_dataset(ranged, {"A": inside}).frame
    )
    first = build_dataset(ranged, {"A": bars}).frame["date"][0]
    assert first == date(2024, 2, 1) + timedelta(5)
    assert build_dataset(ranged, {"A": bars}).frame["date"][-1] == date(2024, 4, 28)


def test_default_split_puts_the_last_fraction_of_dates_in_validation() -> None:
    built = build_dataset(spec(validation_fraction=0.25), {"A": make_bars(86)})
    dates = built.frame["date"].to_list()  # 80 dates: day 5 .. day 84
    assert len(dates) == 80
    assert built.validation_start == dates[60]
    assert (built.train_rows, built.validation_rows, built.row_count) == (60, 20, 80)
    splits = built.frame["split"].to_list()
    assert splits == ["train"] * 60 + ["validation"] * 20


def test_default_split_rounds_the_number_of_validation_dates_half_up() -> None:
    built = build_dataset(spec(validation_fraction=0.125), {"A": make_bars(90)})  # 84 dates
    assert built.validation_rows == 11  # 10.5 rounds up


def test_explicit_validation_start_splits_on_that_date() -> None:
    built = build_dataset(spec(validation_start=date(2024, 2, 15)), {"A": make_bars(80)})
    assert built.validation_start == date(2024, 2, 15)
    train = built.frame.filter(pl.col("split") == "train")["date"]
    validation = built.frame.filter(pl.col("split") == "validation")["date"]
    assert train.max() == date(2024, 2, 14) and validation.min() == date(2024, 2, 15)
    assert built.validation_rows == 79 - index_of(date(2024, 2, 15))


def test_two_tickers_are_sorted_by_date_then_ticker_and_computed_separately() -> None:
    a = make_bars(80, seed=1, base=100.0)
    b = make_bars(70, seed=2, base=50.0, first=DAY0 + timedelta(10))
    both = build_dataset(spec(("B", "A"), validation_start=date(2024, 3, 1)), {"A": a, "B": b})
    keys = list(zip(both.frame["date"], both.frame["ticker"], strict=True))
    assert keys == sorted(keys)
    assert keys[0] == (DAY0 + timedelta(5), "A")
    alone = build_dataset(spec(("B",), validation_start=date(2024, 3, 1)), {"B": b}).frame
    assert both.frame.filter(pl.col("ticker") == "B").equals(alone)
    # B's first row uses B's closes only: a return across A's ~100 and B's ~50 is ~-0.69
    first_b = rows_of(both.frame, "B")[0]
    assert first_b["date"] == DAY0 + timedelta(15)
    assert abs(first_b["log_return_lag_3"]) < 0.1


@pytest.mark.parametrize("feature", FEATURES)
def test_each_feature_alone_never_reaches_into_the_other_ticker(feature: str) -> None:
    bars = {"A": make_bars(80, seed=1), "B": make_bars(80, seed=2, base=50.0)}
    split = date(2024, 3, 1)
    both = build_dataset(spec(("A", "B"), features=(feature,), validation_start=split), bars)
    for ticker in ("A", "B"):
        alone = spec((ticker,), features=(feature,), validation_start=split)
        expected = build_dataset(alone, {ticker: bars[ticker]}).frame
        assert both.frame.filter(pl.col("ticker") == ticker).equals(expected)


def test_same_rows_give_the_same_hash_and_one_changed_close_another() -> None:
    bars = make_bars(80)
    first = build_dataset(spec(), {"A": bars})
    again = build_dataset(spec(), {"A": list(reversed(bars))})
    assert again.canonical_bytes == first.canonical_bytes
    assert again.content_hash == first.content_hash
    assert first.content_hash.startswith("sha256:") and len(first.content_hash) == 71
    changed = list(bars)
    day, o, h, lo, c, v = changed[50]
    changed[50] = (day, o, h, lo, c * 1.001, v)
    assert build_dataset(spec(), {"A": changed}).content_hash != first.content_hash


def test_load_dataset_restores_the_same_frame() -> None:
    built = build_dataset(spec(("A", "B")), {"A": make_bars(80), "B": make_bars(80, seed=3)})
    loaded = load_dataset(built.canonical_bytes)
    assert loaded.equals(built.frame)
    assert loaded.schema == built.frame.schema


def test_load_dataset_refuses_bytes_that_are_not_a_dataset() -> None:
    with pytest.raises(InvalidDatasetError):
        load_dataset(b'{"rows": []}')
    data = {"date": ["x"], "ticker": ["A"], "split": ["train"]}
    bad_date = msgspec.json.encode({"columns": list(data), "data": data})
    with pytest.raises(InvalidDatasetError):
        load_dataset(bad_date)


def test_to_arrays_gives_float32_splits() -> None:
    built = build_dataset(spec(), {"A": make_bars(80)})
    x_train, y_train, x_val, y_val = to_arrays(built.frame, built.feature_columns)
    width = len(built.feature_columns)
    assert x_train.shape == (built.train_rows, width) and y_train.shape == (built.train_rows,)
    assert x_val.shape == (built.validation_rows, width) and y_val.shape == (built.validation_rows,)
    assert {a.dtype for a in (x_train, y_train, x_val, y_val)} == {np.dtype(np.float32)}
    last = built.frame.filter(pl.col("split") == "validation").row(-1, named=True)
    assert x_val[-1, 0] == np.float32(last["log_return_lag_1"])
    assert y_val[-1] == np.float32(last["target"])


def test_a_ticker_without_bars_in_range_is_refused_by_name() -> None:
    with pytest.raises(InvalidDatasetError, match="no bars for B between"):
        build_dataset(
            spec(("A", "B")), {"A": make_bars(80), "B": make_bars(5, first=date(2023, 1, 1))}
        )
    with pytest.raises(InvalidDatasetError, match="no bars for C"):
        build_dataset(spec(("A", "C")), {"A": make_bars(80)})


def test_a_ticker_without_rows_left_is_refused_by_name() -> None:
    with pytest.raises(InvalidDatasetError, match="no rows left for B"):
        build_dataset(spec(("A", "B")), {"A": make_bars(80), "B": make_bars(5, seed=2)})


def test_too_few_rows_are_refused_with_the_counts() -> None:
    with pytest.raises(InvalidDatasetError, match=r"has 44 rows .* at least 50"):
        build_dataset(spec(), {"A": make_bars(50)})


def test_a_split_under_ten_rows_is_refused() -> None:
    with pytest.raises(InvalidDatasetError, match="5 validation rows"):
        build_dataset(spec(validation_start=date(2024, 3, 15)), {"A": make_bars(80)})


def test_parse_fills_defaults_normalises_tickers_and_round_trips() -> None:
    parsed = parse_dataset_spec(
        {"tickers": [" aapl", "MSFT", "AAPL"], "start": "2020-01-01", "end": "2024-12-31"}
    )
    assert parsed == DatasetSpec(("AAPL", "MSFT"), date(2020, 1, 1), date(2024, 12, 31))
    assert parsed.features == FEATURES and parsed.lags == 5 and parsed.window == 20
    assert parsed.as_dict()["validation_start"] is None
    assert parse_dataset_spec(parsed.as_dict()) == parsed
    full = parse_dataset_spec(
        {**parsed.as_dict(), "validation_start": "2023-06-01", "features": ["volume_change"]}
    )
    assert parse_dataset_spec(full.as_dict()) == full
    assert full.as_dict()["validation_start"] == "2023-06-01"


def test_parse_reports_every_bad_field_at_once() -> None:
    raw = {
        "tickers": ["AAPL", "bad ticker!"],
        "start": "2024-13-01",
        "end": "2024-01-01",
        "features": ["log_returns", "nope", "log_returns"],
        "lags": 0,
        "window": 2.5,
        "target": "price",
        "validation_fraction": 0.9,
        "validation_start": "someday",
        "extra": 1,
    }
    with pytest.raises(InvalidFieldsError) as caught:
        parse_dataset_spec(raw)
    assert {e["field"] for e in caught.value.errors} == {
        "extra", "tickers[1]", "start", "features[1]", "features[2]", "lags", "window",
        "target", "validation_fraction", "validation_start",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"tickers": []}, "tickers"),
        ({"tickers": [f"T{i}" for i in range(21)]}, "tickers"),
        ({"tickers": "AAPL"}, "tickers"),
        ({"start": "2024-02-01", "end": "2024-01-31"}, "end"),
        ({"features": []}, "features"),
        ({"lags": 21}, "lags"),
        ({"window": 251}, "window"),
        ({"validation_fraction": 0.01}, "validation_fraction"),
        ({"validation_start": "2025-01-01"}, "validation_start"),
        ({"end": None}, "end"),
    ],
)
def test_parse_refuses_each_out_of_bounds_field(over: dict[str, Any], field: str) -> None:
    raw = {"tickers": ["AAPL"], "start": "2024-01-01", "end": "2024-12-31", **over}
    with pytest.raises(InvalidFieldsError) as caught:
        parse_dataset_spec(raw)
    assert [e["field"] for e in caught.value.errors] == [field]
