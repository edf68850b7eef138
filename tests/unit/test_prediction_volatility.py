"""Realised volatility estimators against numpy by hand, the volstats package, and bad bars."""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import polars as pl
import pytest
import volstats

from domain.errors import InvalidFieldsError
from domain.predictions.volatility import (
    close_to_close,
    daily_proxy,
    garman_klass,
    parkinson,
    realized_volatility,
)

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "SP500.csv.gz"
WINDOW = 21
Array = npt.NDArray[np.float64]


@pytest.fixture(scope="module")
def sp500() -> pl.DataFrame:
    return pl.read_csv(SAMPLE, try_parse_dates=True).select("date", "open", "high", "low", "close")


def bars(rows: list[tuple[float, float, float, float]]) -> pl.DataFrame:
    """Bars on consecutive days from (open, high, low, close) tuples."""
    return pl.DataFrame(
        {
            "date": [date(2024, 1, 1) + timedelta(i) for i in range(len(rows))],
            "open": [float(r[0]) for r in rows],
            "high": [float(r[1]) for r in rows],
            "low": [float(r[2]) for r in rows],
            "close": [float(r[3]) for r in rows],
        },
        schema_overrides=dict.fromkeys(("open", "high", "low", "close"), pl.Float64),
    )


def windows(values: Array, window: int) -> Array:
    return np.lib.stride_tricks.sliding_window_view(values, window)


def by_hand(frame: pl.DataFrame, window: int) -> dict[str, Array]:
    """The three estimators for every full window, computed with numpy."""
    o, h, lo, c = (frame[name].to_numpy() for name in ("open", "high", "low", "close"))
    returns = np.log(c[1:] / c[:-1])
    range2 = np.log(h / lo) ** 2
    gk = 0.5 * range2 - (2 * math.log(2) - 1) * np.log(c / o) ** 2
    return {
        # the estimate at row t uses returns t-window+1..t, i.e. rows from `window` on
        "close_to_close": np.std(windows(returns, window), axis=1, ddof=1) * math.sqrt(252),
        "parkinson": np.sqrt(windows(range2, window).mean(axis=1) / (4 * math.log(2)))
        * math.sqrt(252),
        "garman_klass": np.sqrt(windows(gk, window).mean(axis=1)) * math.sqrt(252),
    }


def test_rolling_estimators_match_numpy_on_the_sp500_sample(sp500: pl.DataFrame) -> None:
    result = realized_volatility(sp500, WINDOW)
    expected = by_hand(sp500, WINDOW)

    assert result["date"].to_list() == sp500["date"].to_list()
    ctc = result["close_to_close"].to_numpy()
    assert result["close_to_close"][:WINDOW].is_null().all()
    np.testing.assert_allclose(ctc[WINDOW:], expected["close_to_close"], rtol=1e-9)
    for name in ("parkinson", "garman_klass"):
        assert result[name][: WINDOW - 1].is_null().all()
        np.testing.assert_allclose(result[name].to_numpy()[WINDOW - 1 :], expected[name], rtol=1e-9)


def test_rolling_estimators_match_the_volstats_package(sp500: pl.DataFrame) -> None:
    recent = sp500.tail(400)
    frame = pd.DataFrame(
        {name.capitalize(): recent[name].to_numpy() for name in ("open", "high", "low", "close")}
    )
    reference = {
        "close_to_close": volstats.close_to_close_vol(frame, window=WINDOW, rolling=True),
        "parkinson": volstats.parkinson_vol(frame, window=WINDOW, rolling=True),
        "garman_klass": volstats.garman_klass_vol(frame, window=WINDOW, rolling=True),
    }
    ours = {
        "close_to_close": close_to_close(recent, WINDOW)["close_to_close"],
        "parkinson": parkinson(recent, WINDOW)["parkinson"],
        "garman_klass": garman_klass(recent, WINDOW)["garman_klass"],
    }
    for name, series in reference.items():
        values = series.to_numpy(dtype=float)
        assert np.array_equal(np.isnan(values), ours[name].is_null().to_numpy()), name
        np.testing.assert_allclose(
            ours[name].drop_nulls().to_numpy(), values[~np.isnan(values)], rtol=1e-9
        )


def test_a_shorter_window_starts_earlier_and_matches_numpy(sp500: pl.DataFrame) -> None:
    head = sp500.head(60)
    result = parkinson(head, 5)
    assert result["parkinson"].null_count() == 4
    np.testing.assert_allclose(
        result["parkinson"].drop_nulls().to_numpy(), by_hand(head, 5)["parkinson"], rtol=1e-9
    )


def test_daily_proxy_is_the_annualised_garman_klass_variance_of_the_day(
    sp500: pl.DataFrame,
) -> None:
    proxy = daily_proxy(sp500)["vol_proxy"].to_numpy()
    o, h, lo, c = (sp500[name].to_numpy() for name in ("open", "high", "low", "close"))
    gk = 0.5 * np.log(h / lo) ** 2 - (2 * math.log(2) - 1) * np.log(c / o) ** 2
    assert (gk > 0).all()  # the sample has no flat bar: the fallback is not used here
    np.testing.assert_allclose(proxy, np.sqrt(252 * gk), rtol=1e-12)


def test_daily_proxy_falls_back_to_the_close_to_close_return_then_to_null() -> None:
    frame = bars(
        [
            (100, 100, 100, 100),  # first bar, no range: nothing to fall back on -> null
            (101, 101, 101, 101),  # no range: |ln(101/100)| annualised
            (101, 101, 101, 101),  # no range and no move: null (QLIKE would be infinite)
            (101, 103, 100, 102),  # a normal bar: its Garman-Klass variance
        ]
    )
    proxy = daily_proxy(frame)["vol_proxy"].to_list()
    gk = 0.5 * math.log(103 / 100) ** 2 - (2 * math.log(2) - 1) * math.log(102 / 101) ** 2
    assert proxy[0] is None
    assert proxy[1] == pytest.approx(abs(math.log(101 / 100)) * math.sqrt(252), rel=1e-12)
    assert proxy[2] is None
    assert proxy[3] == pytest.approx(math.sqrt(252 * gk), rel=1e-12)


@pytest.mark.parametrize("bad", [0.0, -5.0, math.nan, math.inf])
def test_a_bad_price_blanks_the_windows_that_contain_it_and_never_raises(bad: float) -> None:
    rows = [(100.0 + i, 102.0 + i, 99.0 + i, 101.0 + i) for i in range(12)]
    rows[5] = (105.0, 107.0, 104.0, bad)
    result = realized_volatility(bars(rows), 3)
    ctc = result["close_to_close"].to_list()
    gk = result["garman_klass"].to_list()
    # rows 0..2 lack a full window; r_5 and r_6 use close_5, so rows 5..8 are null
    assert [v is None for v in ctc] == [True] * 3 + [False] * 2 + [True] * 4 + [False] * 3
    # the GK term of day 5 uses close_5: windows over rows 5..7 are null
    assert [v is None for v in gk] == [True] * 2 + [False] * 3 + [True] * 3 + [False] * 4
    # Parkinson does not use the close: untouched
    assert result["parkinson"].null_count() == 2
    assert result["vol_proxy"][5] is None  # GK unusable and r_5 too


def test_a_zero_low_blanks_range_estimators_but_not_close_to_close() -> None:
    rows = [(100.0 + i, 102.0 + i, 99.0 + i, 101.0 + i) for i in range(8)]
    rows[4] = (104.0, 106.0, 0.0, 105.0)
    result = realized_volatility(bars(rows), 2)
    assert result["parkinson"].to_list()[4:6] == [None, None]
    assert result["close_to_close"].null_count() == 2
    # the day's GK variance is unusable, so the proxy falls back to the close-to-close return
    assert result["vol_proxy"][4] == pytest.approx(math.log(105 / 104) * math.sqrt(252))


def test_a_negative_mean_garman_klass_term_gives_null_not_nan() -> None:
    # closes far outside [low, high]: 0.5 ln(H/L)^2 < 0.386 ln(C/O)^2 on every day
    rows = [(100.0, 100.1, 99.9, 120.0), (120.0, 120.1, 119.9, 100.0)] * 3
    result = garman_klass(bars(rows), 2)["garman_klass"]
    assert result.null_count() == len(rows)
    assert not result.is_nan().any()


def test_flat_prices_have_zero_volatility() -> None:
    result = realized_volatility(bars([(50.0, 50.0, 50.0, 50.0)] * 6), 3)
    assert result["close_to_close"].drop_nulls().to_list() == [0.0, 0.0, 0.0]
    assert result["parkinson"].drop_nulls().to_list() == [0.0] * 4
    assert result["garman_klass"].drop_nulls().to_list() == [0.0] * 4
    assert result["vol_proxy"].null_count() == 6


def test_empty_bars_give_an_empty_frame_with_the_columns() -> None:
    empty = bars([])
    result = realized_volatility(empty)
    assert result.is_empty()
    assert result.columns == ["date", "close_to_close", "parkinson", "garman_klass", "vol_proxy"]
    assert daily_proxy(empty).columns == ["date", "vol_proxy"]


def test_integer_prices_are_accepted() -> None:
    frame = bars([(100, 102, 99, 101), (101, 104, 100, 103), (103, 105, 101, 102)])
    frame = frame.with_columns(pl.col("open", "high", "low", "close").cast(pl.Int64))
    assert parkinson(frame, 2)["parkinson"].null_count() == 1


@pytest.mark.parametrize("window", [1, 0, -3, True])
def test_a_window_below_two_is_refused(window: int) -> None:
    with pytest.raises(InvalidFieldsError, match="window"):
        close_to_close(bars([(1.0, 1.0, 1.0, 1.0)] * 3), window)


def test_unsorted_bars_are_put_in_date_order_first(sp500: pl.DataFrame) -> None:
    head = sp500.head(40)
    shuffled = head.sample(fraction=1.0, shuffle=True, seed=3)
    assert realized_volatility(shuffled, 5).equals(realized_volatility(head, 5))
