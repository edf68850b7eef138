"""Prediction jobs on the worker: claim, forecast with the engine, record every forecast.

The training worker's claim loop (``application.worker``) hands a leased job of kind
``prediction`` to :class:`PredictionJobs`, so the one worker process ``make run``
starts serves both queues. For a job:

1. The job's state in the log decides, as for every leased job
   (``application.leased_jobs``): an ended job is released; a job past ``max_attempts``
   is failed with the reason; otherwise ``Started`` is recorded with the attempt and why.
2. The bars are read from the ticker's ``MarketData`` at the version the request
   pinned, up to the job's last cutoff: imports after the request change nothing.
   A registry model's artifact is read from the artifact store and checked against
   the hash its version names.
3. Per model, one call of the forecaster port (``application.ports.Forecaster``)
   forecasts every cutoff the job still lacks (an attempt that takes a job over skips
   what earlier attempts saved). Each forecast becomes a ``Prediction`` with its
   ``Made`` event; they are saved in chunks, each chunk in one transaction with the
   job's ``PredictionsMade`` listing it, so a job's progress and its predictions
   never disagree.
4. ``Completed`` ends the job; a ``ForecastError`` (bars the forecaster cannot use)
   ends it ``Failed`` with the reason. A lease lost meanwhile (the heartbeat could not
   renew it) or a save refused because another worker wrote the job first stops this
   worker writing at once.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from application.lease_heartbeat import LeaseHeartbeat
from application.leased_jobs import LeasedJobs
from application.ports import (
    ArtifactIntegrityError,
    Forecaster,
    ForecastError,
    ForecastRequest,
    JobQueue,
    OriginForecast,
    PriceSeries,
    TrainedModel,
)
from application.predictions import PredictionsApplication
from application.run_recorder import Abandon
from application.training import TrainingApplication
from domain.artifacts import content_hash
from domain.market_data import Bar
from domain.predictions.forecasters import MLP_REGRESSOR, level_key
from domain.predictions.prediction import Prediction, PredictionJob, expected_dates

log = logging.getLogger(__name__)

CHUNK = 50  # predictions per transaction, at most
# ...and at most about this many bytes of stored events per transaction. eventsourcing
# inserts a save's events through a psycopg pipeline; in a backtest of 8,800 cutoffs a
# save of 250 predictions (a few hundred kB) stalled for good on both ends (the server
# waiting for the client's next message, the client in Pipeline.sync), while saves of
# 62 and 125 went through. The cause is not pinned down yet (a plain save of 250 events
# of 1.5 kB does not stall; 250 of 20 kB does), so saves are kept well below both.
SAVE_BUDGET_BYTES = 200_000


def price_series(bars: list[Bar]) -> PriceSeries:
    """Sorted bars as the arrays the forecaster reads."""
    columns: list[tuple[Any, ...]] = list(zip(*bars, strict=True)) if bars else [()] * 6
    return PriceSeries(
        dates=np.asarray(columns[0], dtype="datetime64[D]"),
        open=np.asarray(columns[1], dtype=np.float64),
        high=np.asarray(columns[2], dtype=np.float64),
        low=np.asarray(columns[3], dtype=np.float64),
        close=np.asarray(columns[4], dtype=np.float64),
        volume=np.asarray(columns[5], dtype=np.float64),
    )


def prediction_fields(job: PredictionJob, forecast: OriginForecast) -> dict[str, Any]:
    """The ``Made`` event's fields of one forecast (everything a chart and a score need)."""
    dates = expected_dates(forecast.cutoff, job.horizon)
    steps = []
    for k in range(job.horizon):
        values = (forecast.loc[k], forecast.scale[k], forecast.median[k], forecast.volatility[k])
        if not all(np.isfinite(values)):
            raise ForecastError(f"the forecast at {forecast.cutoff} is not finite at step {k + 1}")
        steps.append(
            {
                "step": k + 1,
                "date": dates[k],
                "loc": float(forecast.loc[k]),
                "scale": float(forecast.scale[k]),
                "df": None if forecast.df[k] is None else float(forecast.df[k]),  # type: ignore[arg-type]
                "median": float(forecast.median[k]),
                "volatility": float(forecast.volatility[k]),
                "bands": {
                    level_key(level): [float(lower[k]), float(upper[k])]
                    for level, (lower, upper) in sorted(forecast.bands.items())
                },
            }
        )
    return {
        "ticker": job.ticker,
        "market_data_version": job.market_data_version,
        "last_close": float(forecast.last_close),
        "horizon": job.horizon,
        "levels": list(job.levels),
        "steps": steps,
        "params": dict(forecast.params),
        "method": dict(forecast.method),
    }


class PredictionJobs(LeasedJobs):
    """Runs one leased prediction job to its end (see the module)."""

    label = "prediction-job"
    doing = "while it forecast"
    failures = (ForecastError,)

    def __init__(  # noqa: PLR0913
        self,
        predictions: PredictionsApplication,
        training: TrainingApplication,
        queue: JobQueue,
        forecaster: Forecaster,
        *,
        name: str,
        max_attempts: int = 3,
        heartbeat_seconds: float = 1.0,
    ) -> None:
        super().__init__(
            predictions,
            queue,
            name=name,
            max_attempts=max_attempts,
            heartbeat_seconds=heartbeat_seconds,
        )
        self.predictions = predictions
        self.training = training
        self.forecaster = forecaster

    def load(self, job_id: Any) -> PredictionJob:
        return self.predictions.get_job(job_id)

    def work(self, job: PredictionJob, attempt: int, beat: LeaseHeartbeat) -> None:
        self._forecast(job, attempt, beat)

    def finish(self, job: PredictionJob, attempt: int, seconds: float) -> None:
        job.complete(attempt, seconds)
        self.save(job)

    def _forecast(self, job: PredictionJob, attempt: int, beat: LeaseHeartbeat) -> None:
        bars = self.predictions.bars_as_of(job.ticker, job.market_data_version)
        last = job.cutoffs[-1]
        bars = [bar for bar in bars if bar[0] <= last]
        series = price_series(bars)
        index = {bar[0]: i for i, bar in enumerate(bars)}
        for model in job.models:
            todo = [c for c in job.cutoffs if not job.was_made(model["key"], c)]
            if not todo:
                continue
            request = ForecastRequest(
                forecaster=model["forecaster"],
                series=series,
                origins=tuple(index[c] for c in todo),
                horizon=job.horizon,
                levels=tuple(job.levels),
                model=self._trained(model) if model["forecaster"] == MLP_REGRESSOR else None,
            )
            forecasts = self.forecaster.forecast(request)
            for start in range(0, len(forecasts), CHUNK):
                if beat.lost.is_set():
                    raise Abandon("the lease was lost")
                self._record(job, attempt, model, forecasts[start : start + CHUNK])

    def _record(
        self,
        job: PredictionJob,
        attempt: int,
        model: dict[str, Any],
        forecasts: list[OriginForecast],
    ) -> None:
        made = [
            Prediction.make(
                job.id,
                model["key"],
                forecast.cutoff,
                forecaster=model["forecaster"],
                model_id=model["model_id"],
                model_version=model["model_version"],
                **prediction_fields(job, forecast),
            )
            for forecast in forecasts
        ]
        # one model's predictions of one job are all about the same size: the first one's
        # stored size (with a margin) says how many fit in a transaction's budget
        size = sum(
            len(self.predictions.mapper.to_stored_event(e).state) for e in made[0].pending_events
        )
        per_save = max(1, min(CHUNK, SAVE_BUDGET_BYTES * 2 // (3 * max(size, 1))))
        for start in range(0, len(made), per_save):
            part = made[start : start + per_save]
            job.record_made(attempt, model["key"], [(p.cutoff, str(p.id)) for p in part])
            self.save(job, *part)

    def _trained(self, model: dict[str, Any]) -> TrainedModel:
        key = model["artifact"]
        try:
            artifact = self.training.artifacts.get(key)
        except ArtifactIntegrityError as exc:
            raise ForecastError(str(exc)) from None
        if artifact is None or content_hash(artifact) != key:
            raise ForecastError(f"the artifact {key} of {model['key']} is missing or altered")
        return TrainedModel(
            model_id=model["model_id"],
            name=model["model_name"],
            version=model["model_version"],
            artifact=artifact,
            dataset_spec=dict(model["dataset_spec"]),
            feature_columns=tuple(model["feature_columns"]),
            out_of_sample_from=model["out_of_sample_from"],
        )
