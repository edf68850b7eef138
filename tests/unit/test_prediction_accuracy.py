"""Accuracy tables against numpy by hand and scoringrules' quantile and interval scores."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date, timedelta
from typing import Any

import msgspec
import numpy as np
import polars as pl
import pytest
import scoringrules as sr

from domain.errors import InvalidFieldsError
from domain.predictions.accuracy import (
    BANDS_SCHEMA,
    LOSS_COLUMNS,
    LOSSES,
    METRICS,
    POINT_METRICS,
    POINTS_SCHEMA,
    accuracy,
    accuracy_records,
    losses,
    rolling_accuracy,
    rolling_records,
)

DAY0 = date(2024, 1, 1)
LEVELS = (50.0, 80.0, 95.0)
Z = {50.0: 0.674, 80.0: 1.2816, 95.0: 1.96}


def point_row(**values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model": "m",
        "ticker": "X",
        "prediction_id": "p",
        "cutoff": DAY0,
        "step": 1,
        "target_date": DAY0 + timedelta(1),
        "last_close": 100.0,
        "point": 101.0,
        "actual": 102.0,
        "vol_forecast": 0.2,
        "vol_proxy": 0.25,
    }
    row.update(values)
    return row


def frame(rows: list[dict[str, Any]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema, orient="row")


def sample(
    seed: int = 7, origins: int = 40, tickers: tuple[str, ...] = ("SPX", "NDX")
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Scored predictions of a noisy model and the random walk, with 50/80/95 bands.

    Some rows lack a proxy, some a band, some an 80% band; some actuals sit on a bound.
    """
    rng = np.random.default_rng(seed)
    points: list[dict[str, Any]] = []
    bands: list[dict[str, Any]] = []
    for ticker in tickers:
        closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, origins + 4)))
        for model in ("noisy", "random_walk"):
            for c in range(origins):
                pid = f"{model}-{ticker}-{c}"
                for step in (1, 2, 3):
                    last, actual = float(closes[c]), float(closes[c + step])
                    noise = 0.0 if model == "random_walk" else rng.normal(0, 0.01)
                    point = last * math.exp(noise)
                    proxy = None if rng.random() < 0.2 else float(rng.uniform(0.05, 0.4))
                    points.append(
                        point_row(
                            model=model,
                            ticker=ticker,
                            prediction_id=pid,
                            cutoff=DAY0 + timedelta(c),
                            step=step,
                            target_date=DAY0 + timedelta(c + step),
                            last_close=last,
                            point=point,
                            actual=actual,
                            vol_forecast=float(rng.uniform(0.1, 0.3)),
                            vol_proxy=proxy,
                        )
                    )
                    if c % 7 == 3:
                        continue  # no bands at all for this row
                    for level in LEVELS:
                        if level == 80.0 and c % 5 == 0:
                            continue
                        half = last * 0.01 * math.sqrt(step) * Z[level] * rng.uniform(0.5, 1.5)
                        lower, upper = point - half, point + half
                        if c % 11 == 0:
                            upper = actual  # on the bound: covered
                        bands.append(
                            {"prediction_id": pid, "step": step, "level": level}
                            | {"lower": lower, "upper": upper}
                        )
    return frame(points, POINTS_SCHEMA), frame(bands, BANDS_SCHEMA)


def rows_by_key(points: pl.DataFrame, bands: pl.DataFrame) -> list[dict[str, Any]]:
    """Point rows with a ``bands`` dict {level: (lower, upper)}."""
    band_map: dict[tuple[str, int], dict[float, tuple[float, float]]] = defaultdict(dict)
    for b in bands.iter_rows(named=True):
        band_map[b["prediction_id"], b["step"]][b["level"]] = (b["lower"], b["upper"])
    rows = points.to_dicts()
    for row in rows:
        row["bands"] = band_map.get((row["prediction_id"], row["step"]), {})
    return rows


def group(rows: list[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in keys)].append(row)
    return groups


def hand_point_metrics(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    point = np.array([r["point"] for r in rows])
    actual = np.array([r["actual"] for r in rows])
    last = np.array([r["last_close"] for r in rows])
    err = point - actual
    naive = np.abs(last - actual).mean()
    called = point != last
    hits = np.sign(point - last)[called] == np.sign(actual - last)[called]
    nonzero = actual != 0
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "mape": float(100 * np.mean(np.abs(err[nonzero]) / np.abs(actual[nonzero])))
        if nonzero.any()
        else None,
        "mase": float(np.abs(err).mean() / naive) if naive != 0 else None,
        "direction_hit_rate": float(hits.mean()) if called.any() else None,
    }


def row_pinball(row: dict[str, Any]) -> float:
    """The row's mean quantile score over its quantiles, by scoringrules."""
    forecasts, taus = [row["point"]], [0.5]
    for level, (lower, upper) in row["bands"].items():
        forecasts += [lower, upper]
        taus += [(1 - level / 100) / 2, (1 + level / 100) / 2]
    scores = sr.quantile_score(row["actual"], np.array(forecasts), np.array(taus))
    return float(np.mean(scores))


def assert_close(actual: float | None, expected: float | None) -> None:
    if expected is None:
        assert actual is None
    else:
        assert actual == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.fixture(scope="module")
def data() -> tuple[pl.DataFrame, pl.DataFrame]:
    return sample()


def test_point_metrics_match_numpy_per_model_ticker_and_step(
    data: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    points, bands = data
    result = accuracy(points, bands)
    assert result.columns == ["model", "ticker", "step", "n", *METRICS, "levels"]
    groups = group(rows_by_key(points, bands), "model", "ticker", "step")
    assert result.height == len(groups) == 12
    for row in result.iter_rows(named=True):
        rows = groups[row["model"], row["ticker"], row["step"]]
        assert row["n"] == len(rows)
        for name, value in hand_point_metrics(rows).items():
            assert_close(row[name], value)


def test_the_random_walk_has_mase_one_and_no_direction_calls(
    data: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    result = accuracy(*data).filter(pl.col("model") == "random_walk")
    assert result["mase"].to_list() == pytest.approx([1.0] * result.height)
    assert result["direction_hit_rate"].is_null().all()


def test_band_metrics_match_scoringrules_interval_score(
    data: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    points, bands = data
    result = accuracy(points, bands)
    groups = group(rows_by_key(points, bands), "model", "ticker", "step")
    for row in result.iter_rows(named=True):
        rows = groups[row["model"], row["ticker"], row["step"]]
        assert [item["level"] for item in row["levels"]] == list(LEVELS)
        for item in row["levels"]:
            level = item["level"]
            with_band = [r for r in rows if level in r["bands"]]
            y = np.array([r["actual"] for r in with_band])
            lower = np.array([r["bands"][level][0] for r in with_band])
            upper = np.array([r["bands"][level][1] for r in with_band])
            winkler = sr.interval_score(y, lower, upper, 1 - level / 100)
            assert_close(item["winkler"], float(np.mean(winkler)))
            assert_close(item["coverage"], float(np.mean((lower <= y) & (y <= upper))))
            assert_close(item["mean_width"], float(np.mean(upper - lower)))


def test_pinball_matches_scoringrules_quantile_score_over_each_rows_quantiles(
    data: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    points, bands = data
    result = accuracy(points, bands)
    groups = group(rows_by_key(points, bands), "model", "ticker", "step")
    for row in result.iter_rows(named=True):
        rows = groups[row["model"], row["ticker"], row["step"]]
        assert_close(row["pinball"], float(np.mean([row_pinball(r) for r in rows])))


def test_volatility_scores_use_variances_over_the_rows_with_a_proxy(
    data: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    points, bands = data
    result = accuracy(points, bands)
    groups = group(rows_by_key(points, bands), "model", "ticker", "step")
    for row in result.iter_rows(named=True):
        rows = [r for r in groups[row["model"], row["ticker"], row["step"]] if r["vol_proxy"]]
        s = np.array([r["vol_proxy"] ** 2 for r in rows])
        f = np.array([r["vol_forecast"] ** 2 for r in rows])
        assert_close(row["qlike"], float(np.mean(s / f - np.log(s / f) - 1)))
        assert_close(row["vol_mse"], float(np.mean((s - f) ** 2)))


def test_qlike_is_zero_for_a_perfect_volatility_forecast_and_null_without_a_proxy() -> None:
    points = frame(
        [
            point_row(prediction_id="a", vol_forecast=0.2, vol_proxy=0.2),
            point_row(prediction_id="b", model="n", vol_proxy=None),
            point_row(prediction_id="c", model="n", vol_forecast=0.0, vol_proxy=0.3),
        ],
        POINTS_SCHEMA,
    )
    result = accuracy(points, frame([], BANDS_SCHEMA), by=["model"])
    assert result.rows_by_key("model", named=True, unique=True)["m"]["qlike"] == 0.0
    assert result.rows_by_key("model", named=True, unique=True)["n"]["qlike"] is None
    assert result.rows_by_key("model", named=True, unique=True)["n"]["vol_mse"] is None


def test_direction_ties_no_change_forecasts_are_left_out_and_flat_actuals_miss() -> None:
    points = frame(
        [
            point_row(prediction_id="up-hit", point=101.0, actual=102.0),
            point_row(prediction_id="down-miss", point=99.0, actual=102.0),
            point_row(prediction_id="flat-actual", point=101.0, actual=100.0),
            point_row(prediction_id="no-call", point=100.0, actual=95.0),
        ],
        POINTS_SCHEMA,
    )
    result = accuracy(points, frame([], BANDS_SCHEMA))
    assert result["direction_hit_rate"].to_list() == [pytest.approx(1 / 3)]
    assert result["n"].to_list() == [4]


def test_mase_is_null_when_the_random_walk_makes_no_error() -> None:
    points = frame([point_row(prediction_id=p, actual=100.0) for p in ("a", "b")], POINTS_SCHEMA)
    result = accuracy(points, frame([], BANDS_SCHEMA))
    assert result["mae"].to_list() == [1.0]
    assert result["mase"].to_list() == [None]


def test_mape_leaves_out_rows_whose_actual_is_zero() -> None:
    points = frame(
        [
            point_row(prediction_id="a", point=110.0, actual=100.0),
            point_row(prediction_id="b", point=5.0, actual=0.0),
        ],
        POINTS_SCHEMA,
    )
    assert accuracy(points, frame([], BANDS_SCHEMA))["mape"].to_list() == [10.0]
    only_zero = points.filter(pl.col("prediction_id") == "b")
    assert accuracy(only_zero, frame([], BANDS_SCHEMA))["mape"].to_list() == [None]


def test_coverage_is_inclusive_and_winkler_charges_misses_by_distance() -> None:
    points = frame(
        [
            point_row(prediction_id="on-lower", actual=99.0),
            point_row(prediction_id="on-upper", actual=103.0),
            point_row(prediction_id="above", actual=104.0),
            point_row(prediction_id="below", actual=97.0),
        ],
        POINTS_SCHEMA,
    )
    bands = frame(
        [
            {"prediction_id": p, "step": 1, "level": 90.0, "lower": 99.0, "upper": 103.0}
            for p in ("on-lower", "on-upper", "above", "below")
        ],
        BANDS_SCHEMA,
    )
    (level,) = accuracy(points, bands)["levels"].to_list()[0]
    assert level["coverage"] == 0.5
    assert level["mean_width"] == 4.0
    # misses: 1 above and 2 below the band, each charged 2/0.1 = 20 per unit
    assert level["winkler"] == pytest.approx((4 * 4 + 20 * 1 + 20 * 2) / 4)


def test_bands_without_a_scored_point_or_with_a_level_outside_0_100_are_ignored() -> None:
    points = frame([point_row(prediction_id="a", actual=101.0)], POINTS_SCHEMA)
    bands = frame(
        [
            {"prediction_id": "a", "step": 1, "level": 80.0, "lower": 100.0, "upper": 102.0},
            {"prediction_id": "a", "step": 2, "level": 80.0, "lower": 0.0, "upper": 1.0},
            {"prediction_id": "z", "step": 1, "level": 80.0, "lower": 0.0, "upper": 1.0},
            {"prediction_id": "a", "step": 1, "level": 100.0, "lower": 0.0, "upper": 1.0},
        ],
        BANDS_SCHEMA,
    )
    result = accuracy(points, bands)
    assert result["levels"].to_list() == [
        [{"level": 80.0, "coverage": 1.0, "mean_width": 2.0, "winkler": 2.0}]
    ]
    # the median and the two 80% quantiles: 0.5 * 0 + 0.1 * 1 + 0.1 * 1, over 3 quantiles
    assert result["pinball"].to_list() == [pytest.approx(0.2 / 3)]


def test_records_are_json_shaped_with_level_keys(
    data: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    points, bands = data
    extra = frame([point_row(model="no-bands", prediction_id="nb", actual=101.0)], POINTS_SCHEMA)
    odd_band = frame(
        [{"prediction_id": "a", "step": 1, "level": 97.5, "lower": 90.0, "upper": 110.0}],
        BANDS_SCHEMA,
    )
    odd_point = frame([point_row(model="odd", prediction_id="a")], POINTS_SCHEMA)
    all_points = pl.concat([points, extra, odd_point])
    records = accuracy_records(accuracy(all_points, pl.concat([bands, odd_band])))
    msgspec.json.encode(records)  # plain JSON types only
    by_model = {r["model"]: r for r in records}
    noisy = by_model["noisy"]
    assert list(noisy) == ["model", "ticker", "step", "n", *METRICS, "levels"]
    assert set(noisy["levels"]) == {"50", "80", "95"}
    assert set(noisy["levels"]["95"]) == {"coverage", "mean_width", "winkler"}
    assert by_model["no-bands"]["levels"] == {}
    assert list(by_model["odd"]["levels"]) == ["97.5"]


def test_records_turn_non_finite_numbers_into_none() -> None:
    points = frame([point_row(point=math.inf)], POINTS_SCHEMA)
    (record,) = accuracy_records(accuracy(points, frame([], BANDS_SCHEMA)))
    assert record["mae"] is None
    assert record["rmse"] is None


def test_grouping_by_model_alone_pools_tickers_and_steps(
    data: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    points, bands = data
    result = accuracy(points, bands, by=("model",))
    assert result.columns[:2] == ["model", "n"]
    groups = group(rows_by_key(points, bands), "model")
    for row in result.iter_rows(named=True):
        rows = groups[(row["model"],)]
        assert row["n"] == len(rows)
        assert_close(row["rmse"], hand_point_metrics(rows)["rmse"])


@pytest.mark.parametrize("by", [(), ("model", "colour")])
def test_an_unknown_or_empty_grouping_is_refused(by: tuple[str, ...]) -> None:
    with pytest.raises(InvalidFieldsError, match="by"):
        accuracy(frame([point_row()], POINTS_SCHEMA), frame([], BANDS_SCHEMA), by=by)


@pytest.mark.parametrize("schemaless", [False, True])
def test_empty_inputs_give_empty_outputs(schemaless: bool) -> None:
    points = pl.DataFrame() if schemaless else frame([], POINTS_SCHEMA)
    bands = pl.DataFrame() if schemaless else frame([], BANDS_SCHEMA)
    grouped = accuracy(points, bands)
    assert grouped.is_empty()
    assert grouped.columns == ["model", "ticker", "step", "n", *METRICS, "levels"]
    assert accuracy_records(grouped) == []
    rolling = rolling_accuracy(points, bands)
    assert rolling.is_empty()
    assert rolling.columns == [
        "model",
        "ticker",
        "step",
        "target_date",
        "n",
        *POINT_METRICS,
        "levels",
    ]
    assert rolling_records(rolling) == []
    for loss in LOSSES:
        result = losses(points, bands, loss)
        assert result.is_empty()
        assert result.columns == list(LOSS_COLUMNS)


def test_rolling_metrics_match_a_trailing_window_by_hand(
    data: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    points, bands = data
    window = 6
    result = rolling_accuracy(points, bands, window=window)
    rows = rows_by_key(points, bands)
    groups = group(rows, "model", "ticker", "step")
    assert result.height == len(rows)  # one row per target date here
    for out in result.iter_rows(named=True):
        history = sorted(
            groups[out["model"], out["ticker"], out["step"]],
            key=lambda r: (r["target_date"], r["cutoff"], r["prediction_id"]),
        )
        upto = [r for r in history if r["target_date"] <= out["target_date"]][-window:]
        assert out["n"] == len(upto)
        for name, value in hand_point_metrics(upto).items():
            assert_close(out[name], value)
        for item in out["levels"]:
            with_band = [r for r in upto if item["level"] in r["bands"]]
            inside = [
                r["bands"][item["level"]][0] <= r["actual"] <= r["bands"][item["level"]][1]
                for r in with_band
            ]
            assert_close(item["coverage"], float(np.mean(inside)) if inside else None)


def test_rolling_gives_one_row_per_target_date_with_every_row_of_that_date_in() -> None:
    points = frame(
        [
            point_row(prediction_id="a", cutoff=DAY0, target_date=DAY0 + timedelta(1)),
            # a second forecast of the same target (another job, same cutoff)
            point_row(prediction_id="b", cutoff=DAY0, target_date=DAY0 + timedelta(1), point=98.0),
            point_row(
                prediction_id="c", cutoff=DAY0 + timedelta(1), target_date=DAY0 + timedelta(2)
            ),
        ],
        POINTS_SCHEMA,
    )
    bands = frame(
        [{"prediction_id": "b", "step": 1, "level": 80.0, "lower": 97.0, "upper": 99.0}],
        BANDS_SCHEMA,
    )
    records = rolling_records(rolling_accuracy(points, bands, window=2))
    assert [r["target_date"] for r in records] == [DAY0 + timedelta(1), DAY0 + timedelta(2)]
    assert [r["n"] for r in records] == [2, 2]
    assert records[0]["mae"] == pytest.approx((1.0 + 4.0) / 2)
    assert records[0]["direction_hit_rate"] == 0.5
    assert records[0]["levels"] == {"80": 0.0}
    assert records[1]["mae"] == pytest.approx((4.0 + 1.0) / 2)


@pytest.mark.parametrize("window", [0, -1, True])
def test_rolling_window_must_be_positive(window: int) -> None:
    with pytest.raises(InvalidFieldsError, match="window"):
        rolling_accuracy(frame([point_row()], POINTS_SCHEMA), frame([], BANDS_SCHEMA), window)


def test_losses_match_the_hand_computation_of_each_kind(
    data: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    points, bands = data
    rows = {(r["prediction_id"], r["step"]): r for r in rows_by_key(points, bands)}
    expected = {
        "squared": lambda r: (r["point"] - r["actual"]) ** 2,
        "absolute": lambda r: abs(r["point"] - r["actual"]),
        "pinball": row_pinball,
    }
    for kind, by_hand in expected.items():
        result = losses(points, bands, kind)
        assert result.columns == list(LOSS_COLUMNS)
        assert result.height == points.height
        for out in result.iter_rows(named=True):
            assert_close(out["loss"], by_hand(rows[out["prediction_id"], out["step"]]))


def test_qlike_losses_leave_out_rows_without_a_proxy(
    data: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    points, bands = data
    result = losses(points, bands, "qlike")
    assert result.height == points["vol_proxy"].is_not_null().sum()
    proxy = points.join(result, on=["prediction_id", "step"]).select(
        s=pl.col("vol_proxy") ** 2, f=pl.col("vol_forecast") ** 2, loss=pl.col("loss")
    )
    ratio = proxy["s"].to_numpy() / proxy["f"].to_numpy()
    np.testing.assert_allclose(proxy["loss"].to_numpy(), ratio - np.log(ratio) - 1, rtol=1e-12)


def test_winkler_losses_are_at_the_asked_level_and_only_where_that_band_exists(
    data: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    points, bands = data
    at_80 = losses(points, bands, "winkler", level=80.0)
    assert at_80.height == bands.filter(pl.col("level") == 80.0).height
    joined = at_80.join(points, on=["prediction_id", "step"]).join(
        bands.filter(pl.col("level") == 80.0), on=["prediction_id", "step"]
    )
    reference = sr.interval_score(
        joined["actual"].to_numpy(), joined["lower"].to_numpy(), joined["upper"].to_numpy(), 0.2
    )
    np.testing.assert_allclose(joined["loss"].to_numpy(), reference, rtol=1e-12)
    assert losses(points, bands, "winkler").height == bands.filter(pl.col("level") == 95).height


def test_an_unknown_loss_or_a_level_outside_0_100_is_refused() -> None:
    points, bands = frame([point_row()], POINTS_SCHEMA), frame([], BANDS_SCHEMA)
    with pytest.raises(InvalidFieldsError, match="loss"):
        losses(points, bands, "hinge")
    with pytest.raises(InvalidFieldsError, match="level"):
        losses(points, bands, "winkler", level=100.0)
