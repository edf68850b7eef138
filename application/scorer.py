"""Process manager: score every prediction step once, when its target bar exists (F11.2.3).

Built on eventsourcing's ``EventSourcedProjection``, like the model registrar: it
follows the ``predictions`` log and saves ``Prediction.Scored`` events into the same
log, together with its position (``predictions_tracking``) in one transaction. So a
step is scored exactly once, even with two scorers at once (the second one's tracking
insert is refused; it starts again past the event) and across restarts (it resumes
from its tracked position). ``Prediction.score`` refuses a step scored before, and the
aggregate's version refuses a concurrent writer.

It reacts to:

- ``PredictionJob.PredictionsMade``: the predictions just saved are scored at once for
  every step whose target bar is already stored — a backtest over history is scored
  the moment it is made, so accuracy and comparison have data the same day;
- ``MarketData.BarsImported`` / ``BarsCorrected``: new bars may be targets. Which
  predictions of the ticker still have unscored steps comes from the predictions read
  model (``PendingScores``), once the projector has projected the log up to the event
  before this one: every prediction made before the bars arrived is then in it, and a
  prediction made after them was scored by its own ``PredictionsMade``.

Scores use the bars in force when the scorer runs (the ticker's latest ``MarketData``
version, recorded in the event); bars never enter a prediction's forecast, only its
score. A later correction of a bar already scored does not rescore it (the score keeps
the market-data version it used). The events carry ``principal = process:scorer``, the
causing event's correlation id and, as the causation id, that event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import singledispatchmethod
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.projection import EventSourcedProjection, EventSourcedProjectionRunner
from eventsourcing.utils import get_topic

from application.ports import PayloadStore, PendingScores, PendingScoresFactory, Ports
from application.predictions import PredictionsApplication
from application.retry import run_until_stopped
from domain.market_data import Bar, MarketData, fold_bars, market_data_id
from domain.metadata import acting_as
from domain.predictions.prediction import Prediction, PredictionJob
from domain.predictions.scoring import score_steps, volatility_proxies

log = logging.getLogger(__name__)

PRINCIPAL = "process:scorer"


@dataclass(frozen=True)
class Wiring:
    """The stores a scorer uses, passed in by the composition root."""

    ports: Ports
    pending: PendingScoresFactory


class PredictionScorer(EventSourcedProjection[UUID]):
    name = "predictions"  # it writes the predictions log (and its own tracking table)
    topics = (
        get_topic(PredictionJob.PredictionsMade),
        get_topic(MarketData.BarsImported),
        get_topic(MarketData.BarsCorrected),
    )
    # set by ``scorer_class``: the runner builds the projection from its environment only
    wiring: ClassVar[Wiring | None] = None

    # the bars in force for the last ticker scored: (ticker, version, bars, index, proxies)
    _bars: tuple[str, int, list[Bar], dict[str, int], list[float | None]] | None = None
    _payloads: PayloadStore | None = None
    _pending: PendingScores | None = None

    @property
    def payloads(self) -> PayloadStore:
        if self._payloads is None:
            assert self.wiring is not None, "build the scorer with scorer_class(ports, pending)"
            self._payloads = self.wiring.ports.payloads(self.recorder)
        return self._payloads

    @property
    def pending(self) -> PendingScores:
        if self._pending is None:
            assert self.wiring is not None, "build the scorer with scorer_class(ports, pending)"
            self._pending = self.wiring.pending(self.recorder)
        return self._pending

    @singledispatchmethod
    def policy(
        self, domain_event: DomainEventProtocol[UUID], processing_event: ProcessingEvent[UUID]
    ) -> None:
        """Events of other types need nothing."""

    @policy.register
    def _(
        self, event: PredictionJob.PredictionsMade, processing_event: ProcessingEvent[UUID]
    ) -> None:
        job: Any = self.repository.get(event.originator_id, version=event.originator_version)
        with self._acting(event):
            self._score(job.ticker, (UUID(p) for p in event.prediction_ids), processing_event)

    @policy.register
    def _(self, event: MarketData.BarsImported, processing_event: ProcessingEvent[UUID]) -> None:
        self._bars_arrived(event, processing_event)

    @policy.register
    def _(self, event: MarketData.BarsCorrected, processing_event: ProcessingEvent[UUID]) -> None:
        self._bars_arrived(event, processing_event)

    def _bars_arrived(
        self,
        event: MarketData.BarsImported | MarketData.BarsCorrected,
        processing_event: ProcessingEvent[UUID],
    ) -> None:
        assert processing_event.tracking is not None
        position = processing_event.tracking.notification_id
        pending = self.pending.unscored(event.ticker, position - 1)
        with self._acting(event):
            self._score(event.ticker, pending, processing_event)

    def _acting(self, event: Any) -> Any:
        causation = f"predictions:{event.originator_id}:{event.originator_version}"
        return acting_as(PRINCIPAL, event.meta.get("correlation_id", causation), causation)

    def _current_bars(
        self, ticker: str
    ) -> tuple[int, list[Bar], dict[str, int], list[float | None]]:
        market: Any = self.repository.get(market_data_id(ticker))
        assert isinstance(market, MarketData)
        cached = self._bars
        if cached is None or cached[0] != ticker or cached[1] != market.version:
            stored = self.payloads.get(ticker, market.imports)
            folded = fold_bars(stored[h] for h in market.imports)
            bars = [folded[day] for day in sorted(folded)]
            index = {b[0]: i for i, b in enumerate(bars)}
            cached = (ticker, market.version, bars, index, volatility_proxies(bars))
            self._bars = cached
        return cached[1], cached[2], cached[3], cached[4]

    def _score(
        self, ticker: str, ids: Iterable[UUID], processing_event: ProcessingEvent[UUID]
    ) -> None:
        try:
            version, bars, index, proxies = self._current_bars(ticker)
        except AggregateNotFoundError:
            return
        scored = []
        for prediction_id in ids:
            prediction: Any = self.repository.get(prediction_id)
            assert isinstance(prediction, Prediction)
            scores = score_steps(
                cutoff=prediction.cutoff,
                last_close=prediction.last_close,
                steps=prediction.steps,
                unscored=prediction.unscored_steps,
                bars=bars,
                index=index,
                proxies=proxies,
            )
            if scores:
                prediction.score(scores, version)
                scored.append(prediction)
        if scored:
            processing_event.collect_events(*scored)


def scorer_class(ports: Ports, pending: PendingScoresFactory) -> type[PredictionScorer]:
    """The scorer with the stores the composition root passes in."""
    # ``name`` again: eventsourcing names a subclass after itself unless it says otherwise
    return type(
        "WiredPredictionScorer",
        (PredictionScorer,),
        {"name": PredictionScorer.name, "wiring": Wiring(ports, pending)},
    )


def run_scorer(
    env: dict[str, str],
    ports: Ports,
    pending: PendingScoresFactory,
    stopping: threading.Event,
) -> None:
    """Follow the predictions log until ``stopping`` is set; after any error (a concurrent
    scorer, the read model not there yet, the database going away) start again from the
    tracked position, with backoff (``application.retry``)."""
    projection_class = scorer_class(ports, pending)

    def follow() -> None:
        with EventSourcedProjectionRunner(
            application_class=PredictionsApplication,
            projection_class=projection_class,
            env=env,
        ) as runner:
            while not stopping.is_set():
                if runner.is_interrupted.is_set():
                    raise RuntimeError("the scorer's runner stopped")
                runner.run_forever(timeout=0.5)

    run_until_stopped(log, "prediction scorer", stopping, follow)
