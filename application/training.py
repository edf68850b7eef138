"""Training context: datasets and training runs (F11.5.1–F11.5.5), command side.

Registering a dataset reads the bars in force from the market-data aggregates (the
write side's truth at their current version, never a lagging read model), builds the
features with Polars, stores the exact rows as an artifact under their hash, and saves
the ``Dataset`` with its name claim in one ``save()``. Requesting a run checks the
hyperparameters and early-stopping settings (every bad field named at once), pins
the dataset's hash, and saves a queued ``TrainingRun``; workers
(``application.worker``) pick it up from the queue.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from uuid import UUID

from application.base import (
    SNAPSHOT_INTERVAL,
    CommandResult,
    ContextApplication,
    Idempotency,
    Response,
    StoredResponse,
)
from application.market_data import MarketDataApplication
from application.ports import ArtifactStore, Ports, Unwired
from domain.claims import UniqueClaim
from domain.errors import DomainError, DuplicateNameError, NotFoundError
from domain.market_data import MarketData, market_data_id
from domain.ml.datasets import Dataset
from domain.ml.features import InvalidDatasetError, build_dataset, parse_dataset_spec
from domain.ml.hyperparameters import MODEL_TYPES, parse_settings
from domain.ml.runs import TrainingRun
from domain.registry.model import check_name

DATASET_NAME_SCOPE = "training/dataset-name"
DATASET_MEDIA_TYPE = "application/vnd.aimm.dataset+json"
MODEL_MEDIA_TYPE = "application/vnd.aimm.model"


class UnknownModelTypeError(DomainError):
    pass


class TrainingApplication(ContextApplication):
    name = "training"
    snapshotting_intervals = {TrainingRun: SNAPSHOT_INTERVAL}

    def __init__(self, env: Mapping[str, str] | None = None, ports: Ports | None = None) -> None:
        super().__init__(env, ports)
        self.artifacts: ArtifactStore = (
            ports.artifacts(self.recorder) if ports else Unwired("artifact store")
        )

    # -- datasets ---------------------------------------------------------------------

    def register_dataset(
        self,
        name: str,
        raw_spec: dict[str, Any],
        market: MarketDataApplication,
        *,
        idem: Idempotency | None = None,
        respond: Callable[[Dataset], Response],
    ) -> CommandResult[StoredResponse]:
        replay = self.idempotent_replay(idem)
        if replay is not None:
            return replay
        name = check_name(name)
        spec = parse_dataset_spec(raw_spec)
        bars, sources = {}, {}
        for ticker in spec.tickers:
            try:
                stored = market.load(market_data_id(ticker), MarketData, "market data")
            except NotFoundError:
                raise InvalidDatasetError(f"no market data for ticker {ticker!r}") from None
            bars[ticker] = list(market.current_bars(stored).values())
            sources[ticker] = {"version": stored.version, "imports": list(stored.imports)}
        built = build_dataset(spec, bars)
        key = self.artifacts.put(built.canonical_bytes, DATASET_MEDIA_TYPE)
        assert key == built.content_hash  # the artifact key is the hash of the same bytes
        dataset = Dataset.register(
            name=name,
            spec=spec.as_dict(),
            feature_columns=list(built.feature_columns),
            target=spec.target,
            row_count=built.row_count,
            train_rows=built.train_rows,
            validation_rows=built.validation_rows,
            validation_start=built.validation_start.isoformat(),
            content_hash=built.content_hash,
            size_bytes=len(built.canonical_bytes),
            sources=sources,
        )
        claim = UniqueClaim.claim(DATASET_NAME_SCOPE, name, str(dataset.id))
        return self.save_command(
            [dataset, claim],
            idem,
            lambda: respond(dataset),
            lambda: DuplicateNameError(f"a dataset named {name!r} already exists"),
        )

    def get_dataset(self, dataset_id: UUID) -> Dataset:
        return self.load(dataset_id, Dataset, "dataset")

    # -- runs ---------------------------------------------------------------------------

    def request_run(  # noqa: PLR0913
        self,
        *,
        dataset_id: UUID,
        model_type: str,
        hyperparameters: dict[str, Any],
        early_stopping: dict[str, Any] | None,
        record_every_steps: int | None,
        model_name: str | None,
        idem: Idempotency | None = None,
        respond: Callable[[TrainingRun], Response],
    ) -> CommandResult[StoredResponse]:
        replay = self.idempotent_replay(idem)
        if replay is not None:
            return replay
        if model_type not in MODEL_TYPES:
            raise UnknownModelTypeError(f"model_type must be one of {', '.join(MODEL_TYPES)}")
        hp, rule = parse_settings(hyperparameters, early_stopping)
        dataset = self.get_dataset(dataset_id)
        if model_type == "mlp_classifier" and dataset.target != "direction":
            raise DomainError(
                f"mlp_classifier needs a dataset with target 'direction'; {dataset.name!r} "
                f"has {dataset.target!r} (use mlp_regressor)"
            )
        run = TrainingRun.request(
            dataset_id=str(dataset.id),
            dataset_name=dataset.name,
            dataset_hash=dataset.content_hash,
            feature_columns=list(dataset.feature_columns),
            target=dataset.target,
            model_type=model_type,
            model_name=check_name(model_name or f"{dataset.name}-{model_type}".replace("_", "-")),
            hyperparameters=hp.as_dict(),
            early_stopping=None if rule is None else rule.as_dict(),
            record_every_steps=record_every_steps,
        )
        return self.save_command(
            [run],
            idem,
            lambda: respond(run),
            lambda: DomainError("the run could not be saved; retry"),
        )

    def get_run(self, run_id: UUID) -> TrainingRun:
        return self.load(run_id, TrainingRun, "training job")

    def stop_run(
        self,
        run_id: UUID,
        reason: str,
        *,
        expected_version: int | None = None,
        idem: Idempotency | None = None,
        respond: Callable[[TrainingRun], Response],
    ) -> CommandResult[StoredResponse]:
        # The worker appends metrics to the same run: without an expected version, a stop
        # that loses that race is simply run again on the new version; with one, a stale
        # version is a conflict naming the current one.
        return self.change_aggregate(
            lambda: self.get_run(run_id),
            lambda run: run.request_stop(reason or "stopped by request"),
            lambda run, _: respond(run),
            expected_version=expected_version,
            idem=idem,
            retry=True,
        )
