"""Predictions context, command side: requests of forecasts (F11.2.5) and their jobs.

``POST /api/v1/predictions/run`` and ``…/backtest`` come here. A request is checked and
resolved *before* it is accepted, so the job's ``Requested`` event pins everything its
result depends on (``domain.predictions.prediction``):

- the ticker's ``MarketData`` version (the worker reads the bars as of that version:
  bars imported while the job waits change nothing of it);
- the cutoffs: a run's is the last bar on or before ``as_of`` (default: the last bar);
  a backtest's are every ``step``-th bar from ``start`` to ``end``;
- each model: a built-in forecaster, or a registry model resolved to one version (a
  name alone means its version active in ``production`` at that moment), with the
  artifact and training dataset it was fitted on.

Refusals: an unknown ticker or model is a ``NotFoundError`` (404); a horizon or level
out of range an ``InvalidFieldsError`` (400); a cutoff with too little history before
it, a registry model that is not an ``mlp_regressor`` on a ``log_return`` dataset, or a
cutoff inside the rows such a model was fitted on, a domain error (422) that says what
would be needed. Workers (``application.prediction_worker``) run the job.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from application.base import (
    SNAPSHOT_INTERVAL,
    CommandResult,
    Idempotency,
    Response,
    StoredResponse,
)
from application.market_data import MarketDataApplication
from application.registry import MODEL_NAME_SCOPE, RegistryApplication
from application.training import TrainingApplication
from domain.claims import claim_id
from domain.errors import DomainError, InvalidFieldsError, NotFoundError
from domain.market_data import Bar, MarketData, check_ticker, market_data_id
from domain.predictions.forecasters import (
    BUILTINS,
    MLP_REGRESSOR,
    ModelRef,
    check_request,
    mlp_min_history,
    parse_model_ref,
)
from domain.predictions.prediction import Prediction, PredictionJob
from domain.registry.model import Model

MAX_MODELS = 5
MAX_ORIGINS = 5000
STEP_BOUNDS = (1, 250)


class InsufficientHistoryError(DomainError):
    """A cutoff with fewer bars up to it than a model needs (HTTP 422, with the figures)."""

    def __init__(self, message: str, **figures: Any) -> None:
        super().__init__(message)
        self.problem_extra = figures


class UnusableModelError(DomainError):
    """A registry model that cannot forecast prices (HTTP 422)."""


class PredictionsApplication(MarketDataApplication):
    """Market-data imports and prediction jobs: the ``predictions`` log."""

    name = "predictions"
    snapshotting_intervals = {
        MarketData: SNAPSHOT_INTERVAL,
        PredictionJob: SNAPSHOT_INTERVAL,
    }

    # -- reads of the write side ---------------------------------------------------------

    def market(self, ticker: str) -> MarketData:
        try:
            found: Any = self.repository.get(market_data_id(ticker))
        except AggregateNotFoundError:
            raise NotFoundError(f"no market data for ticker {check_ticker(ticker)!r}") from None
        assert isinstance(found, MarketData)
        return found

    def bars_as_of(self, ticker: str, version: int) -> list[Bar]:
        """The ticker's bars in force at the ``MarketData`` version, sorted by date."""
        market: Any = self.repository.get(market_data_id(ticker), version=version)
        bars = self.current_bars(market)
        return [bars[day] for day in sorted(bars)]

    def get_job(self, job_id: UUID) -> PredictionJob:
        return self.load(job_id, PredictionJob, "prediction job")

    def get_prediction(self, prediction_id: UUID) -> Prediction:
        return self.load(prediction_id, Prediction, "prediction")

    # -- commands -------------------------------------------------------------------------

    def request_run(  # noqa: PLR0913
        self,
        *,
        ticker: str,
        model: str,
        horizon: int,
        levels: list[float] | None,
        as_of: date | None,
        registry: RegistryApplication,
        training: TrainingApplication,
        idem: Idempotency | None = None,
        respond: Callable[[PredictionJob], Response],
    ) -> CommandResult[StoredResponse]:
        """Queue one forecast of ``model`` at the last bar on or before ``as_of``."""
        replay = self.idempotent_replay(idem)
        if replay is not None:
            return replay
        horizon, chosen = check_request(horizon, levels)
        ref = parse_model_ref(model)
        market = self.market(ticker)
        dates = [bar[0] for bar in self.bars_as_of(market.ticker, market.version)]
        last = bisect.bisect_right(dates, as_of.isoformat()) if as_of else len(dates)
        resolved = resolve_model(ref, registry, training)
        if last == 0:
            raise InsufficientHistoryError(
                f"{market.ticker} has no bar on or before {as_of}; its first bar is {dates[0]}",
                needed=resolved["min_history"],
                available=0,
            )
        cutoff = dates[last - 1]
        _check_history(resolved, dates, last - 1)
        _check_out_of_sample(resolved, cutoff)
        job = PredictionJob.request(
            kind="run",
            ticker=market.ticker,
            market_data_version=market.version,
            models=[resolved],
            horizon=horizon,
            levels=list(chosen),
            cutoffs=[cutoff],
            asked={"as_of": as_of.isoformat() if as_of else None},
        )
        return self._save_job(job, idem, respond)

    def request_backtest(  # noqa: PLR0913
        self,
        *,
        ticker: str,
        models: Sequence[str],
        horizon: int,
        levels: list[float] | None,
        start: date,
        end: date,
        step: int,
        registry: RegistryApplication,
        training: TrainingApplication,
        idem: Idempotency | None = None,
        respond: Callable[[PredictionJob], Response],
    ) -> CommandResult[StoredResponse]:
        """Queue forecasts of each model at every ``step``-th bar from ``start`` to ``end``."""
        replay = self.idempotent_replay(idem)
        if replay is not None:
            return replay
        horizon, chosen = check_request(horizon, levels)
        refs = _parse_models(models)
        low, high = STEP_BOUNDS
        if not low <= step <= high:
            raise InvalidFieldsError([{"field": "step", "message": f"must be {low} to {high}"}])
        if end < start:
            raise InvalidFieldsError([{"field": "end", "message": "must not be before start"}])
        market = self.market(ticker)
        dates = [bar[0] for bar in self.bars_as_of(market.ticker, market.version)]
        first = bisect.bisect_left(dates, start.isoformat())
        stop = bisect.bisect_right(dates, end.isoformat())
        indices = list(range(first, stop, step))
        if not indices:
            raise InsufficientHistoryError(
                f"{market.ticker} has no bars from {start} to {end}", needed=1, available=0
            )
        if len(indices) > MAX_ORIGINS:
            raise InvalidFieldsError(
                [
                    {
                        "field": "step",
                        "message": f"{len(indices)} origins from {start} to {end}; at most "
                        f"{MAX_ORIGINS} (raise step or narrow the dates)",
                    }
                ]
            )
        resolved = [resolve_model(ref, registry, training) for ref in refs]
        for model in resolved:
            _check_history(model, dates, indices[0])
            _check_out_of_sample(model, dates[indices[0]])
        job = PredictionJob.request(
            kind="backtest",
            ticker=market.ticker,
            market_data_version=market.version,
            models=resolved,
            horizon=horizon,
            levels=list(chosen),
            cutoffs=[dates[i] for i in indices],
            asked={"start": start.isoformat(), "end": end.isoformat(), "step": step},
        )
        return self._save_job(job, idem, respond)

    def _save_job(
        self,
        job: PredictionJob,
        idem: Idempotency | None,
        respond: Callable[[PredictionJob], Response],
    ) -> CommandResult[StoredResponse]:
        return self.save_command(
            [job], idem, lambda: respond(job), lambda: DomainError("the job could not be saved")
        )


def _parse_models(models: Sequence[str]) -> list[ModelRef]:
    if not 1 <= len(models) <= MAX_MODELS:
        raise InvalidFieldsError([{"field": "models", "message": f"give 1 to {MAX_MODELS} models"}])
    refs: list[ModelRef] = []
    errors: list[dict[str, str]] = []
    for i, text in enumerate(models):
        try:
            ref = parse_model_ref(text, f"models[{i}]")
        except InvalidFieldsError as exc:
            errors += exc.errors
            continue
        if any(r.text == ref.text for r in refs):
            errors.append({"field": f"models[{i}]", "message": "repeats a model"})
        refs.append(ref)
    if errors:
        raise InvalidFieldsError(errors)
    return refs


def _check_history(model: Mapping[str, Any], dates: Sequence[str], cutoff_index: int) -> None:
    needed = int(model["min_history"])
    available = cutoff_index + 1
    if available < needed:
        first = dates[needed - 1] if len(dates) >= needed else None
        where = f"; the first cutoff with enough is {first}" if first else ""
        raise InsufficientHistoryError(
            f"{model['key']} needs {needed} bars up to the cutoff; {dates[cutoff_index]} has "
            f"{available}{where}",
            needed=needed,
            available=available,
            first_possible_cutoff=first,
        )


def _check_out_of_sample(model: Mapping[str, Any], cutoff: str) -> None:
    start = model.get("out_of_sample_from")
    if start is not None and cutoff < start:
        raise UnusableModelError(
            f"{model['key']} was fitted on rows before {start} (its dataset's validation "
            f"split starts then): a forecast at {cutoff} would have seen its future; use "
            f"cutoffs from {start} on"
        )


def resolve_model(
    ref: ModelRef, registry: RegistryApplication, training: TrainingApplication
) -> dict[str, Any]:
    """What a job pins of a model: its key, forecaster and, for a registry model, the
    version, artifact and training dataset (the worker loads those, never a newer one)."""
    if ref.builtin is not None:
        forecaster = BUILTINS[ref.builtin]
        return {
            "ref": ref.text,
            "key": forecaster.name,
            "forecaster": forecaster.name,
            "model_id": None,
            "model_name": None,
            "model_version": None,
            "min_history": forecaster.min_history,
        }
    assert ref.model is not None
    model = _registry_model(ref, registry)
    version_number = ref.version
    if version_number is None:
        version_number = model.active.get("production")
        if version_number is None:
            raise UnusableModelError(
                f"model {model.name!r} has no version active in production: name a version "
                f"({model.name}@N) or deploy one"
            )
    version = model.get_version(version_number)  # NotFoundError for an unknown version
    parameters = version.parameters
    if parameters.get("model_type") != MLP_REGRESSOR or parameters.get("target") != "log_return":
        raise UnusableModelError(
            f"{model.name}@{version_number} is a {parameters.get('model_type') or model.kind} "
            f"model on a {parameters.get('target') or 'unknown'} target; price forecasts need "
            "an mlp_regressor trained on a log_return dataset"
        )
    dataset_ref = version.lineage.get("dataset") or {}
    try:
        dataset = training.get_dataset(UUID(str(dataset_ref.get("id"))))
    except (NotFoundError, ValueError):
        raise UnusableModelError(
            f"{model.name}@{version_number} names no training dataset the training context "
            "knows, so its features cannot be rebuilt"
        ) from None
    return {
        "ref": ref.text,
        "key": f"{model.name}@{version_number}",
        "forecaster": MLP_REGRESSOR,
        "model_id": str(model.id),
        "model_name": model.name,
        "model_version": version_number,
        "artifact": version.artifact,
        "dataset_id": str(dataset.id),
        "dataset_hash": dataset.content_hash,
        "dataset_spec": dataset.spec,
        "feature_columns": list(dataset.feature_columns),
        "out_of_sample_from": dataset.validation_start,
        "min_history": mlp_min_history(dataset.spec),
    }


def _registry_model(ref: ModelRef, registry: RegistryApplication) -> Model:
    assert ref.model is not None
    try:
        if ref.by_id:
            found: Any = registry.repository.get(UUID(ref.model))
        else:
            claim: Any = registry.repository.get(claim_id(MODEL_NAME_SCOPE, ref.model))
            found = registry.repository.get(UUID(claim.owner_id))
    except AggregateNotFoundError:
        raise NotFoundError(
            f"{ref.text!r} is neither a built-in forecaster ({', '.join(BUILTINS)}) nor a "
            "registry model"
        ) from None
    if not isinstance(found, Model):
        raise NotFoundError(f"no registry model {ref.model!r}")
    return found
