"""The registry mlp_regressor: served features are the training features; out of sample only."""

from __future__ import annotations

import math
import uuid
from dataclasses import replace
from datetime import date
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl
import pytest

from application.ports import (
    ForecastError,
    ForecastRequest,
    OriginForecast,
    PriceSeries,
    TrainedModel,
    TrainingData,
)
from domain.market_data import Bar
from domain.ml.features import BuiltDataset, DatasetSpec, build_dataset, to_arrays
from domain.ml.hyperparameters import Hyperparameters
from infrastructure.forecasting.baselines import ewma
from infrastructure.forecasting.conformal import CalibrationSettings
from infrastructure.forecasting.engine import ForecastEngine
from infrastructure.forecasting.mlp import MlpForecaster
from infrastructure.jax_trainer import Trainer, load_model

FIELDS = ("dates", "open", "high", "low", "close", "volume")
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "SP500.csv.gz"
ENGINE = ForecastEngine(calibration=CalibrationSettings(window=40, min_scores=20, decay=0.99))
SPEC = DatasetSpec(
    tickers=("SP500",),
    start=date(2008, 1, 1),
    end=date(2016, 12, 30),
    lags=3,
    window=10,
    target="log_return",
    validation_start=date(2015, 1, 2),
)
SMALL = Hyperparameters(learning_rate=1e-2, epochs=2, batch_size=256, hidden_units=8, layers=1)


@pytest.fixture(scope="module")
def sp500() -> PriceSeries:
    frame = pl.read_csv(SAMPLE, try_parse_dates=True)
    names = ("open", "high", "low", "close", "volume")
    columns = (frame[c].to_numpy().astype(np.float64) for c in names)
    return PriceSeries(frame["date"].to_numpy().astype("datetime64[D]"), *columns)


@pytest.fixture(scope="module")
def dataset() -> BuiltDataset:
    frame = pl.read_csv(SAMPLE)
    bars: list[Bar] = [
        (str(d), float(o), float(h), float(lo), float(c), float(v))
        for d, o, h, lo, c, v in frame.iter_rows()
    ]
    return build_dataset(SPEC, {"SP500": bars})


def train(model_type: str, built: BuiltDataset) -> bytes:
    trainer = Trainer(
        model_type, SMALL, TrainingData(*to_arrays(built.frame, built.feature_columns))
    )
    for epoch in range(1, SMALL.epochs + 1):
        for _ in trainer.run_epoch(epoch):
            pass
    return trainer.export()


@pytest.fixture(scope="module")
def model(dataset: BuiltDataset) -> TrainedModel:
    return TrainedModel(
        model_id=str(uuid.uuid4()),
        name="spx-mlp",
        version=3,
        artifact=train("mlp_regressor", dataset),
        dataset_spec=SPEC.as_dict(),
        feature_columns=dataset.feature_columns,
        out_of_sample_from=dataset.validation_start.isoformat(),
    )


def index_of(series: PriceSeries, day: str) -> int:
    return int(np.searchsorted(series.dates, np.datetime64(day, "D")))


def run(
    series: PriceSeries, model: TrainedModel, origins: tuple[int, ...], horizon: int = 3
) -> list[OriginForecast]:
    request = ForecastRequest("mlp_regressor", series, origins, horizon, (50.0, 80.0, 95.0), model)
    return ENGINE.forecast(request)


def test_served_features_are_the_training_rows_bit_for_bit(
    sp500: PriceSeries, model: TrainedModel, dataset: BuiltDataset
) -> None:
    dates = dataset.frame["date"].to_numpy().astype("datetime64[D]")
    origins = np.searchsorted(sp500.dates, dates)
    assert np.array_equal(sp500.dates[origins], dates)
    served = MlpForecaster(model).features(sp500, origins)
    x_train, _, x_val, _ = to_arrays(dataset.frame, dataset.feature_columns)
    assert np.array_equal(served, np.concatenate([x_train, x_val]))


def test_the_forecast_is_the_models_next_day_prediction_with_the_ewma_spread(
    sp500: PriceSeries, model: TrainedModel
) -> None:
    origins = (index_of(sp500, "2016-03-01"), index_of(sp500, "2018-06-01"))  # after `end` too
    forecasts = run(sp500, model, origins)
    x = MlpForecaster(model).features(sp500, np.asarray(origins))
    point = load_model(model.artifact)(x)
    for f, m in zip(forecasts, point, strict=True):
        # float32 rounding of the matmul depends on the batch's shape (see ``predict``)
        np.testing.assert_allclose(f.loc, [m] * 3, rtol=1e-6)
        assert f.params["point_forecast"] == f.loc[0] and f.params["version"] == 3.0
        r = np.diff(np.log(sp500.close[: f.origin + 1]))[-500:]
        with jax.enable_x64(True):
            scale = np.asarray(ewma(jnp.asarray(r, jnp.float64), 3).scale)
        np.testing.assert_allclose(f.scale, scale, rtol=1e-10)
        np.testing.assert_allclose(f.volatility, [math.sqrt(252) * scale[0]] * 3, rtol=1e-10)
        assert f.df == (None,) * 3
        assert f.method["model_id"] == model.model_id and f.method["model_name"] == "spx-mlp"
        assert f.method["forecaster"] == "mlp_regressor" and f.method["spread"] == "ewma"


def test_origins_inside_the_fitted_rows_are_refused(
    sp500: PriceSeries, model: TrainedModel
) -> None:
    with pytest.raises(
        ForecastError, match=r"2014-12-31 is before spx-mlp v3's out-of-sample start"
    ):
        run(sp500, model, (index_of(sp500, "2014-12-31"),))


def test_calibration_reads_only_out_of_sample_origins(
    sp500: PriceSeries, model: TrainedModel
) -> None:
    first = index_of(sp500, "2015-01-02")
    start, later = run(sp500, model, (first, first + 35), horizon=1)
    assert start.method["calibration"] == "none" and start.method["scores"] == 0
    assert later.method["scores"] == 35  # origins first .. first + 34 only
    # 35 scores weigh about 29.6: enough for 50 and 80 %, not for 95 % (39 needed)
    assert later.method["calibration"] == "partial" and later.method["model_levels"] == [95.0]


def test_the_mlp_forecast_reads_nothing_after_its_cutoff(
    sp500: PriceSeries, model: TrainedModel
) -> None:
    origins = (index_of(sp500, "2015-06-01"), index_of(sp500, "2017-02-01"))
    full = run(sp500, model, origins)
    for forecast in full:
        t = forecast.origin
        cut = PriceSeries(*(getattr(sp500, f)[: t + 1] for f in FIELDS))
        (alone,) = run(cut, model, (t,))
        assert alone.method == forecast.method
        np.testing.assert_array_equal(alone.loc, forecast.loc)
        np.testing.assert_allclose(alone.bands[80.0][0], forecast.bands[80.0][0], rtol=1e-12)
        np.testing.assert_allclose(alone.bands[95.0][1], forecast.bands[95.0][1], rtol=1e-12)


def test_a_batch_forecast_equals_the_single_forecasts(
    sp500: PriceSeries, model: TrainedModel
) -> None:
    first = index_of(sp500, "2015-01-02")
    batch = run(sp500, model, tuple(range(first + 30, first + 400)))  # > 256 rows to predict
    for forecast in (batch[0], batch[200], batch[-1]):
        (single,) = run(sp500, model, (forecast.origin,))
        assert single.loc == forecast.loc and single.method == forecast.method
        assert single.bands == forecast.bands


def test_a_zero_volume_refuses_its_origins_and_only_drops_their_scores(
    sp500: PriceSeries, model: TrainedModel
) -> None:
    first = index_of(sp500, "2015-01-02")
    volume = sp500.volume.copy() if sp500.volume is not None else None
    assert volume is not None
    volume[first + 20] = 0.0  # volume_change of that day and the next is undefined
    zero = replace(sp500, volume=volume)
    with pytest.raises(ForecastError, match=r"no finite forecast at .*features are not all"):
        run(zero, model, (first + 21,), horizon=1)
    (later,) = run(zero, model, (first + 30,), horizon=1)
    assert later.method["scores"] == 30 - 2


def test_a_model_reading_volume_needs_a_series_with_volume(
    sp500: PriceSeries, model: TrainedModel
) -> None:
    assert "volume_change" in model.feature_columns
    without = replace(sp500, volume=None)
    with pytest.raises(ForecastError, match="reads volume_change, and the series has no volume"):
        run(without, model, (index_of(sp500, "2016-03-01"),))


def test_a_model_that_cannot_be_served_is_refused(
    model: TrainedModel, dataset: BuiltDataset
) -> None:
    spec = SPEC.as_dict()
    with pytest.raises(ForecastError, match="log_return target"):
        MlpForecaster(replace(model, dataset_spec={**spec, "target": "direction"}))
    fewer = {**spec, "features": ["log_returns", "rolling_volatility", "range_volatility"]}
    with pytest.raises(ForecastError, match="takes 6 inputs, and its dataset has 5"):
        MlpForecaster(
            replace(model, dataset_spec=fewer, feature_columns=model.feature_columns[:-1])
        )
    with pytest.raises(ForecastError, match="feature columns"):
        MlpForecaster(replace(model, feature_columns=model.feature_columns[::-1]))
    with pytest.raises(ForecastError, match="not an exported aimm MLP"):
        MlpForecaster(replace(model, artifact=b"nonsense"))
    classifier = train("mlp_classifier", dataset)
    with pytest.raises(ForecastError, match="is a mlp_classifier"):
        MlpForecaster(replace(model, artifact=classifier))
