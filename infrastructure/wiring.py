"""Where the ports of ``application.ports`` meet their implementations.

The composition roots (``api.app.create_app``, the ``aimm`` command line, the test
helpers) call these instead of building stores themselves:

- ``postgres_ports()``: the PostgreSQL stores, each built on the recorder (and so the
  connection pool) of the application that uses it;
- ``build_contexts(env, llm)``: the five context applications with those ports and the
  LLM providers (``llm_providers(settings)``: built at their first use, not here);
- ``job_queue(training, lease_seconds)`` and ``jax_trainer``: what a training worker
  is given; ``forecast_engine()`` and ``pending_scores``: what its prediction jobs and
  the scorer are given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventsourcing.persistence import Recorder

from application.contexts import Contexts
from application.ports import (
    Forecaster,
    LLMProvider,
    LLMProvidersFactory,
    PendingScores,
    Ports,
    TrainerFactory,
)
from infrastructure.artifacts import PostgresArtifactStore
from infrastructure.event_reader import PostgresEventReader
from infrastructure.jax_trainer import Trainer
from infrastructure.job_queue import PostgresJobQueue
from infrastructure.market_data_payloads import PostgresPayloadStore
from infrastructure.memory_keys import PostgresKeyVault
from infrastructure.prediction_pending import PostgresPendingScores
from infrastructure.settings import Settings


def datastore_of(recorder: Recorder) -> Any:
    """The eventsourcing PostgreSQL datastore (connection pool) behind a recorder."""
    datastore = getattr(recorder, "datastore", None)
    if datastore is None:
        raise TypeError(f"{type(recorder).__name__} is not a PostgreSQL recorder")
    return datastore


def postgres_ports(llm: LLMProvidersFactory | None = None) -> Ports:
    return Ports(
        artifacts=lambda recorder: PostgresArtifactStore(datastore_of(recorder)),
        keys=lambda recorder: PostgresKeyVault(datastore_of(recorder)),
        payloads=lambda recorder: PostgresPayloadStore(datastore_of(recorder)),
        events=lambda recorder, table: PostgresEventReader(datastore_of(recorder), table),
        llm=llm,
    )


def llm_providers(settings: Settings) -> LLMProvidersFactory:
    """The LLM providers of ``settings``, built when first asked for: building loads and
    connects nothing either (the embedded model loads at its first completion)."""

    def build() -> Mapping[str, LLMProvider]:
        from infrastructure.llm import build_providers

        llm = settings.llm
        return build_providers(
            base_url=llm.base_url,
            api_key=llm.api_key,
            context_length=llm.context_length,
            timeout=llm.timeout,
            embedded_context_size=llm.embedded_context_size,
            embedded_threads=llm.embedded_threads,
        )

    return build


def build_contexts(env: Mapping[str, str], llm: LLMProvidersFactory | None = None) -> Contexts:
    """The five applications; ``llm`` None: the assistant has no LLM providers (commands
    that need a model's context length say so), as migrations and workers need none."""
    return Contexts(env, postgres_ports(llm))


def job_queue(application: Any, lease_seconds: float) -> PostgresJobQueue:
    """The job queue in the database of ``application`` (the training context's)."""
    return PostgresJobQueue(datastore_of(application.recorder), lease_seconds)


jax_trainer: TrainerFactory = Trainer


def forecast_engine() -> Forecaster:
    """The JAX forecast engine (imported on use: the API process never forecasts)."""
    from infrastructure.forecasting.engine import ForecastEngine

    return ForecastEngine()


def pending_scores(recorder: Recorder) -> PendingScores:
    return PostgresPendingScores(datastore_of(recorder))
