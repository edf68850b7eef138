"""Ports: what the command side needs from outside, as Protocols and plain data types.

``application/`` never imports ``infrastructure/``. It names here what it needs (an
artifact store, a key vault, a payload store, a bulk event reader, a job queue, a
trainer, a forecaster, an LLM provider); ``infrastructure/`` implements them
(``infrastructure.wiring`` gathers the PostgreSQL and JAX implementations,
``infrastructure.llm`` the LLM providers), and the composition roots
(``api.app.create_app``, the ``aimm`` command line, the test helpers) pass them in:

- a context application takes ``ports=Ports(...)``: factories that are given the
  application's own event recorder, so a store shares the application's database and
  pool without the application knowing what kind of recorder it has;
- the training worker takes a ``JobQueue`` and a ``TrainerFactory``.

A test may pass a fake that implements the same Protocol (a unit test of the domain
flow without a database); tests of our own database use the real implementations.
An application built without ``ports`` (eventsourcing's projection runners build the
upstream application from its environment only, to read its log) has ``Unwired``
stores that say so when used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import numpy as np
from eventsourcing.persistence import Recorder, StoredEvent

from domain.market_data import Bar
from domain.ml.hyperparameters import Hyperparameters

# -- stores ---------------------------------------------------------------------------------


class ArtifactIntegrityError(RuntimeError):
    """Stored bytes whose hash is not their key: the store was altered."""


class ArtifactStore(Protocol):
    """Bytes by content hash (``domain.artifacts.content_hash``), written before the
    event that names them; ``get`` raises ``ArtifactIntegrityError`` on altered bytes."""

    def put(self, data: bytes, media_type: str) -> str: ...

    def get(self, key: str) -> bytes | None: ...


class KeyVault(Protocol):
    """One key per memory, written before the events sealed under it, destroyed on erasure."""

    def put_many(self, keys: Iterable[tuple[UUID, bytes]]) -> None: ...

    def get_many(self, memory_ids: Sequence[UUID]) -> dict[UUID, bytes]: ...

    def destroy(self, memory_id: UUID) -> None: ...


class PayloadStore(Protocol):
    """Where an import's rows live, by ticker and content hash (write once, read many)."""

    def put(self, content_hash: str, ticker: str, bars: Sequence[Bar]) -> None: ...

    def get(self, ticker: str, hashes: Sequence[str]) -> dict[str, list[Bar]]: ...


class EventReader(Protocol):
    """The stored events of many aggregates of one log at once, in version order per
    aggregate (an as-of view replays thousands; one query per chunk, not one each)."""

    def stored_events(self, originator_ids: Sequence[UUID]) -> Iterator[StoredEvent]: ...


# The factories a context application is given: each receives the application's recorder.
ArtifactStoreFactory = Callable[[Recorder], ArtifactStore]
KeyVaultFactory = Callable[[Recorder], KeyVault]
PayloadStoreFactory = Callable[[Recorder], PayloadStore]
EventReaderFactory = Callable[[Recorder, str], EventReader]  # recorder, events table


@dataclass(frozen=True)
class Ports:
    """The stores the context applications use, built against each one's recorder, and
    the LLM providers (``llm``: called once, at the first use, so nothing is loaded or
    connected before a model is needed; None: an application without providers)."""

    artifacts: ArtifactStoreFactory
    keys: KeyVaultFactory
    payloads: PayloadStoreFactory
    events: EventReaderFactory
    llm: LLMProvidersFactory | None = None


class Unwired:
    """Stands for a store the composition root did not pass in; any use says so."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {self._what} was passed to this application (ports=...)")


# -- the job queue --------------------------------------------------------------------------


@dataclass(frozen=True)
class Lease:
    run_id: UUID
    owner: str
    attempt: int
    previous_owner: str | None
    expires_at: datetime
    expired_before: bool  # True when the run was taken over from an expired lease
    kind: str = "training"  # or "prediction": which handler runs the job


class JobQueue(Protocol):
    """Who works on which job until when (claims with a lease, renewed by a heartbeat);
    one queue for every kind of job (training runs, prediction jobs)."""

    def sync(self) -> int:
        """Enqueue the jobs the read models show as queued or running; how many."""
        ...

    def claim(self, owner: str, kinds: tuple[str, ...] = ("training",)) -> Lease | None:
        """The oldest claimable job of one of ``kinds``, leased to ``owner``."""
        ...

    def renew(self, lease: Lease) -> bool:
        """Extend the lease; False when it was lost (expired and taken over)."""
        ...

    def release(self, lease: Lease) -> None: ...

    def version_of(self, run_id: UUID, kind: str = "training") -> int:
        """The job's latest stored version (cheap: a heartbeat notices a stop by it)."""
        ...


# -- the trainer ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingData:
    x_train: np.ndarray  # float32 (n, f)
    y_train: np.ndarray  # float32 (n,)
    x_val: np.ndarray
    y_val: np.ndarray


@dataclass(frozen=True)
class MetricPoint:
    epoch: int  # 1-based
    step: int  # optimizer steps done in the run so far
    end_of_epoch: bool
    loss: float  # mean of the per-step training values since the previous point
    accuracy: float
    val_loss: float  # whole validation set, current parameters
    val_accuracy: float
    learning_rate: float  # the one the last step used
    duration_ms: float  # the trainer's time since the previous point


class Trainer(Protocol):
    """Trains one model: epochs in chunks, metric points, weight snapshots, export."""

    def run_epoch(self, epoch: int, every_steps: int | None = None) -> Iterator[MetricPoint | None]:
        """Points of one epoch; ``None`` between chunks (a chance to check for a stop)."""
        ...

    def params_snapshot(self) -> Any: ...

    def restore(self, snapshot: Any) -> None: ...

    def export(self) -> bytes: ...


class TrainerFactory(Protocol):
    def __call__(self, model_type: str, hp: Hyperparameters, data: TrainingData) -> Trainer: ...


# -- the forecaster -------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceSeries:
    """One ticker's daily bars, oldest first, ending at the last bar a forecast may see."""

    dates: np.ndarray  # datetime64[D], strictly increasing
    open: np.ndarray  # float64, like the rest
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray | None = None  # float64; the features of a registry model read it


@dataclass(frozen=True)
class TrainedModel:
    """A registry model version a forecast runs: an ``mlp_regressor`` of the training
    context, with what is needed to build its features exactly as its dataset did."""

    model_id: str
    name: str
    version: int
    artifact: bytes  # the trained parameters (``infrastructure.jax_trainer`` export)
    dataset_spec: dict[str, Any]  # the training dataset's resolved spec (features, lags…)
    feature_columns: tuple[str, ...]
    out_of_sample_from: str  # ISO date (the dataset's validation_start): earlier origins
    # lie in the rows the weights were fitted on, so no forecast or calibration uses them


@dataclass(frozen=True)
class ForecastRequest:
    """Forecasts of one forecaster at ``origins`` (indices into ``series``).

    The forecast at origin ``i`` is a function of ``series[: i + 1]`` alone (bars after
    the cutoff never enter it), including its calibration, which uses the forecaster's
    own forecasts at earlier origins whose targets were realised by the cutoff.
    """

    forecaster: str  # a name of ``domain.predictions.forecasters.BUILTINS`` or "mlp_regressor"
    series: PriceSeries
    origins: tuple[int, ...]  # increasing
    horizon: int  # steps: step k is the k-th bar after the cutoff
    levels: tuple[float, ...]  # central band coverage in percent, increasing
    model: TrainedModel | None = None  # for "mlp_regressor"


@dataclass(frozen=True)
class OriginForecast:
    """One forecast: per step (index 0 is step 1) the predictive distribution of the
    cumulative log return ``ln(close_{T+k} / close_T)`` and the price bands from it."""

    origin: int  # index into the request's series
    cutoff: str  # ISO date of the last bar used
    last_close: float
    loc: tuple[float, ...]  # location of the cumulative log return (its median)
    scale: tuple[float, ...]
    df: tuple[float | None, ...]  # Student-t degrees of freedom; None for the normal
    median: tuple[float, ...]  # price
    bands: dict[float, tuple[tuple[float, ...], tuple[float, ...]]]  # level -> (lower, upper)
    volatility: tuple[float, ...]  # annualised volatility forecast of the step's day
    params: dict[str, float]  # what was fitted at this origin (and settings that matter)
    method: dict[str, Any]  # the distribution and how the bands were calibrated


class ForecastError(RuntimeError):
    """A forecast could not be made from these bars (the job fails with this reason)."""


class PendingScores(Protocol):
    """Which predictions of a ticker still have unscored steps, from the read model once
    it has projected the log up to a position (the scorer asks when new bars arrive)."""

    def unscored(self, ticker: str, through_position: int) -> list[UUID]:
        """Raises ``TimeoutError`` when the read model does not reach the position soon."""
        ...


PendingScoresFactory = Callable[[Recorder], PendingScores]


class Forecaster(Protocol):
    def forecast(self, request: ForecastRequest) -> list[OriginForecast]:
        """One forecast per origin, in the order of ``request.origins``."""
        ...


# -- LLM ------------------------------------------------------------------------------------


class LLMError(RuntimeError):
    """The provider failed: unreachable, refused the request (with its status and message),
    or gave an answer that is not a completion. The message says which and where."""


@dataclass(frozen=True)
class CompletionRequest:
    """One chat completion: an already rendered system and user message."""

    system: str  # "" sends no system message (the model's chat template may add its own)
    user: str
    model: str  # a provider's model name, or a key or path the provider understands
    temperature: float  # 0 is greedy: with a fixed seed, the same text every time
    max_tokens: int  # at least 1, and within ``LLMProvider.context_length`` with the prompt
    top_p: float | None = None  # None: the provider's default
    stop: tuple[str, ...] = ()
    seed: int | None = None  # None: the provider's choice (random for most)

    def __post_init__(self) -> None:
        # A provider reads max_tokens <= 0 as "unbounded" or "one": neither is what was asked.
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must not be negative, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass(frozen=True)
class Completion:
    text: str
    tokens_in: int  # the provider's own usage figures (the prompt as the template built it)
    tokens_out: int
    latency_ms: float  # wall time of the call, as the caller waited for it
    # "stop" (end of turn or a stop sequence) or "length" (max_tokens, or the context was
    # full); a remote's other reasons (such as "content_filter") are passed on as they are
    finish_reason: str
    model: str  # what the provider reports it ran


class LLMProvider(Protocol):
    """A chat model behind a name ("embedded", "openai").

    ``complete`` blocks until the whole answer is there (no streaming); callers run it in a
    worker thread (``sync_to_thread``), never on the event loop: local inference holds a
    CPU for seconds, and a remote call waits as long. Failures raise ``LLMError``.
    """

    name: str

    def complete(self, request: CompletionRequest) -> Completion: ...

    def context_length(self, model: str) -> int:
        """The model's token limit (prompt and answer together), to validate max_tokens."""
        ...


# The providers by name ("embedded", "openai"), built when first asked for.
LLMProvidersFactory = Callable[[], Mapping[str, LLMProvider]]
