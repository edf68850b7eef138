"""Prediction jobs and predictions: every forecast is an event that records what it saw.

``PredictionJob`` — one request, run by a worker from the job queue (kind ``prediction``)::

    queued --Started--> running --PredictionsMade...--> Completed   (status completed)
                                                    \\-> Failed      (failed, with the reason)
    running --Started(attempt n+1)--> running      (a worker's lease expired: taken over)

A job is a single ``run`` (one cutoff) or a ``backtest`` (rolling origins over history,
each its own cutoff). The request pins everything the result depends on, resolved when
it is accepted: the ticker's market-data version (the worker reads the bars as they were
at that version, so bars imported later change nothing of the job), the cutoffs, and
each model (a registry name resolves to the version active in ``production`` then).
``PredictionsMade`` is saved in the same transaction as the predictions it lists, so a
worker that takes a job over skips what an earlier attempt already made (prediction ids
are derived from the job, the model and the cutoff).

``Prediction`` — one forecast of one model at one cutoff: ``Made`` (the model and
version, the cutoff — the last bar used —, the market-data version, fitted parameters,
method, and per horizon step the expected date, the distribution of the cumulative log
return, the median price, the bands per level and the annualised volatility forecast),
then ``Scored`` events as targets get their closes: each step is scored at most once,
with the actual close and what it implies (errors, which bands covered it).
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any, Literal, get_args

from domain.base import Aggregate
from domain.errors import ConflictError, DomainError

QUEUED, RUNNING, COMPLETED, FAILED = "queued", "running", "completed", "failed"
JobStatus = Literal["queued", "running", "completed", "failed"]
JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)
JobKind = Literal["run", "backtest"]
JOB_KINDS: tuple[str, ...] = get_args(JobKind)
TERMINAL: frozenset[str] = frozenset({COMPLETED, FAILED})

PREDICTION_NAMESPACE = uuid.UUID("0c9a4f6e-7d2b-5e1a-8f3c-707265646963")


def prediction_id(job_id: uuid.UUID | str, model: str, cutoff: str) -> uuid.UUID:
    """The id of the prediction of ``model`` at ``cutoff`` made by a job (stable)."""
    return uuid.uuid5(PREDICTION_NAMESPACE, f"{job_id}\x00{model}\x00{cutoff}")


def expected_dates(cutoff: str, horizon: int) -> list[str]:
    """The weekdays after ``cutoff``: the dates a chart draws steps 1..horizon at.

    A step is the k-th *bar* after the cutoff; holidays are not known in advance, so the
    scored target date (the bar's own) may fall later than the expected one.
    """
    day = date.fromisoformat(cutoff)
    dates: list[str] = []
    while len(dates) < horizon:
        day += timedelta(days=1)
        if day.weekday() < 5:
            dates.append(day.isoformat())
    return dates


class JobFinishedError(ConflictError):
    """The job has ended; it takes no more results (HTTP 409)."""


class StaleAttemptError(ConflictError):
    """A worker wrote for an attempt the job has moved past (its lease was lost)."""


class StepScoredError(DomainError):
    """A step of a prediction was scored already: each is scored exactly once."""


class PredictionJob(Aggregate):
    class Requested(Aggregate.Created):
        kind: str
        ticker: str
        market_data_version: int
        models: list[dict[str, Any]]  # [{ref, key, forecaster, model_id, model_version, …}]
        horizon: int
        levels: list[float]
        cutoffs: list[str]  # ISO dates of the origins, oldest first
        asked: dict[str, Any]  # the request as given (as_of, start, end, step)

    class Started(Aggregate.Event):
        worker: str
        attempt: int
        reason: str

        def apply(self, job: PredictionJob) -> None:
            job.status = RUNNING
            job.attempt = self.attempt
            job.worker = self.worker

    class PredictionsMade(Aggregate.Event):
        attempt: int
        model: str
        prediction_ids: list[str]
        cutoffs: list[str]

        def apply(self, job: PredictionJob) -> None:
            for cutoff, made in zip(self.cutoffs, self.prediction_ids, strict=True):
                job.made[(self.model, cutoff)] = made
            job.made_by_model[self.model] = job.made_by_model.get(self.model, 0) + len(
                self.prediction_ids
            )

    class Completed(Aggregate.Event):
        attempt: int
        predictions: int
        seconds: float

        def apply(self, job: PredictionJob) -> None:
            job.status = COMPLETED

    class Failed(Aggregate.Event):
        attempt: int
        reason: str

        def apply(self, job: PredictionJob) -> None:
            job.status = FAILED
            job.failure = self.reason

    def __init__(  # noqa: PLR0913
        self,
        kind: str,
        ticker: str,
        market_data_version: int,
        models: list[dict[str, Any]],
        horizon: int,
        levels: list[float],
        cutoffs: list[str],
        asked: dict[str, Any],
        meta: dict[str, str],
    ) -> None:
        self.kind = kind
        self.ticker = ticker
        self.market_data_version = market_data_version
        self.models = models
        self.horizon = horizon
        self.levels = levels
        self.cutoffs = cutoffs
        self.asked = asked
        self.status = QUEUED
        self.attempt = 0
        self.worker: str | None = None
        self.failure: str | None = None
        self.made: dict[tuple[str, str], str] = {}  # (model, cutoff) -> prediction id
        self.made_by_model: dict[str, int] = {}

    @classmethod
    def request(cls, **fields: Any) -> PredictionJob:
        if fields["kind"] not in JOB_KINDS:
            raise DomainError(f"kind must be one of {', '.join(JOB_KINDS)}")
        if not fields["cutoffs"] or not fields["models"]:
            raise DomainError("a prediction job needs at least one model and one cutoff")
        return cls._create(cls.Requested, **fields)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def total(self) -> int:
        return len(self.models) * len(self.cutoffs)

    def was_made(self, model: str, cutoff: str) -> bool:
        return (model, cutoff) in self.made

    def _check_attempt(self, attempt: int) -> None:
        if self.finished:
            raise JobFinishedError(f"prediction job {self.id} has already ended ({self.status})")
        if self.status != RUNNING or attempt != self.attempt:
            raise StaleAttemptError(
                f"attempt {attempt} of prediction job {self.id} is not the current one "
                f"({self.attempt})"
            )

    def start(self, worker: str, attempt: int, reason: str) -> None:
        if self.finished:
            raise JobFinishedError(f"prediction job {self.id} has already ended ({self.status})")
        if attempt <= self.attempt:
            raise StaleAttemptError(f"attempt {attempt} already started (now {self.attempt})")
        self.trigger_event(self.Started, worker=worker, attempt=attempt, reason=reason)

    def record_made(self, attempt: int, model: str, made: list[tuple[str, str]]) -> None:
        """Predictions of ``model`` saved with this event: (cutoff, prediction id) pairs."""
        self._check_attempt(attempt)
        self.trigger_event(
            self.PredictionsMade,
            attempt=attempt,
            model=model,
            prediction_ids=[p for _, p in made],
            cutoffs=[c for c, _ in made],
        )

    def complete(self, attempt: int, seconds: float) -> None:
        self._check_attempt(attempt)
        self.trigger_event(
            self.Completed, attempt=attempt, predictions=len(self.made), seconds=seconds
        )

    def fail(self, reason: str, attempt: int) -> None:
        if self.finished:
            raise JobFinishedError(f"prediction job {self.id} has already ended ({self.status})")
        self.trigger_event(self.Failed, attempt=attempt, reason=reason)


class Prediction(Aggregate):
    class Made(Aggregate.Created):
        job_id: str
        ticker: str
        model: str  # the key accuracy groups by: a built-in's name or "name@version"
        forecaster: str
        model_id: str | None
        model_version: int | None
        cutoff: str
        market_data_version: int
        last_close: float
        horizon: int
        levels: list[float]
        steps: list[dict[str, Any]]
        params: dict[str, Any]
        method: dict[str, Any]

    class Scored(Aggregate.Event):
        scores: list[dict[str, Any]]  # one per newly scored step
        market_data_version: int

        def apply(self, prediction: Prediction) -> None:
            for score in self.scores:
                prediction.scored[int(score["step"])] = score

    def __init__(  # noqa: PLR0913
        self,
        job_id: str,
        ticker: str,
        model: str,
        forecaster: str,
        model_id: str | None,
        model_version: int | None,
        cutoff: str,
        market_data_version: int,
        last_close: float,
        horizon: int,
        levels: list[float],
        steps: list[dict[str, Any]],
        params: dict[str, Any],
        method: dict[str, Any],
        meta: dict[str, str],
    ) -> None:
        self.job_id = job_id
        self.ticker = ticker
        self.model = model
        self.forecaster = forecaster
        self.model_id = model_id
        self.model_version = model_version
        self.cutoff = cutoff
        self.market_data_version = market_data_version
        self.last_close = last_close
        self.horizon = horizon
        self.levels = levels
        self.steps = steps
        self.params = params
        self.method = method
        self.scored: dict[int, dict[str, Any]] = {}

    @classmethod
    def make(cls, job_id: uuid.UUID, model: str, cutoff: str, **fields: Any) -> Prediction:
        return cls._create(
            cls.Made,
            id=prediction_id(job_id, model, cutoff),
            job_id=str(job_id),
            model=model,
            cutoff=cutoff,
            **fields,
        )

    @property
    def unscored_steps(self) -> list[int]:
        return [k for k in range(1, self.horizon + 1) if k not in self.scored]

    def score(self, scores: list[dict[str, Any]], market_data_version: int) -> None:
        """Record the scores of steps not scored yet (a step scored before is refused)."""
        if not scores:
            return
        steps = [int(s["step"]) for s in scores]
        again = [k for k in steps if k in self.scored]
        if again or len(set(steps)) != len(steps):
            raise StepScoredError(f"prediction {self.id}: step(s) {again or steps} scored already")
        self.trigger_event(self.Scored, scores=scores, market_data_version=market_data_version)
