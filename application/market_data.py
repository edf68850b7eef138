"""Market-data imports in the ``predictions`` context.

How the rows and the event stay consistent (the decision): the rows of an import are
stored **content-addressed** by the ``PayloadStore`` port (``market_data_payloads`` in
``infrastructure.market_data_payloads``; key: the SHA-256 of the canonical rows, value:
the rows, compressed) in their own committed transaction
*before* the import's event is saved; the event names that hash. The reference table
the API reads (``rm_market_bars``) is written only by the ``market_data`` projection,
which copies the payload of each import event in the projector's transaction, together
with its position. So:

- a crash after the payload and before the event leaves an unreferenced payload: no
  bar is visible, no event exists, and a retry writes the same hash (no-op) and saves
  the event — never rows without their event;
- an event always has its payload (written first), and the projection applies both
  exactly once — never an event without its rows;
- the bars can be rebuilt from the log (``aimm projections rebuild``) like any read
  model, and the log's hash chain covers the content hash of every import.

The contradiction check folds the payloads of the aggregate's own imports (the write
side's truth, at the aggregate's version), not the possibly lagging read model; two
concurrent imports of one ticker are serialised by the aggregate's version (the loser
gets 409 and may retry).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from eventsourcing.application import AggregateNotFoundError

from application.base import (
    CommandResult,
    ContextApplication,
    Idempotency,
    Response,
    StoredResponse,
)
from application.ports import PayloadStore, Ports, Unwired
from domain.errors import ConflictError, VersionConflictError
from domain.market_data import (
    Bar,
    ImportOutcome,
    MarketData,
    check_ticker,
    fold_bars,
    market_data_id,
    parse_csv,
    validate_rows,
)


class MarketDataApplication(ContextApplication):
    """Commands on market data; the ``predictions`` context's application builds on it."""

    def __init__(self, env: Mapping[str, str] | None = None, ports: Ports | None = None) -> None:
        super().__init__(env, ports)
        self.payloads: PayloadStore = (
            ports.payloads(self.recorder) if ports else Unwired("payload store")
        )

    def current_bars(self, market: MarketData) -> dict[str, Bar]:
        stored = self.payloads.get(market.ticker, market.imports)
        missing = [h for h in market.imports if h not in stored]
        if missing:  # a payload is written before its event, so this is a broken store
            raise RuntimeError(f"payloads missing for {market.ticker}: {missing}")
        return fold_bars(stored[h] for h in market.imports)

    def import_bars(  # noqa: PLR0913
        self,
        ticker: str,
        rows: Iterable[Any],
        *,
        replace: bool = False,
        expected_version: int | None = None,
        idem: Idempotency | None = None,
        respond: Callable[[MarketData, ImportOutcome], Response],
    ) -> CommandResult[StoredResponse]:
        """Import daily bars of ``ticker``: all rows or none (see the module docstring).

        ``expected_version``: the ticker's MarketData version the import is based on (0
        for a ticker without data); another one is a version conflict."""
        replay = self.idempotent_replay(idem)
        if replay is not None:
            return replay
        ticker = check_ticker(ticker)
        bars = validate_rows(rows)
        market: MarketData
        try:
            found: Any = self.repository.get(market_data_id(ticker))
        except AggregateNotFoundError:
            if expected_version not in (None, 0):
                raise VersionConflictError(expected_version, 0) from None
            market, current = MarketData.create(ticker), {}
        else:
            assert isinstance(found, MarketData)
            self.check_expected_version(found, expected_version)
            market, current = found, self.current_bars(found)
        outcome = market.import_bars(bars, current, replace=replace)
        if outcome.changed:
            self.payloads.put(outcome.content_hash, ticker, bars)
        elif idem is None:
            position = self.recorder.max_notification_id() or 0
            return CommandResult(self.name, position, StoredResponse(*respond(market, outcome)))
        return self.save_command(
            [market] if outcome.changed else [],
            idem,
            lambda: respond(market, outcome),
            lambda: (
                ConflictError(f"another import of {ticker} was recorded at the same time; retry")
                if expected_version is None
                else self.version_conflict(market.id, expected_version)
            ),
        )

    def get_market_data(self, ticker: str) -> MarketData:
        return self.load(market_data_id(ticker), MarketData, "ticker")


def import_rows(
    app: MarketDataApplication, ticker: str, rows: Iterable[Any], *, replace: bool = False
) -> ImportOutcome:
    """Import parsed rows (the command line and the sample data loader use this)."""
    outcomes: list[ImportOutcome] = []

    def respond(_: MarketData, outcome: ImportOutcome) -> Response:
        outcomes.append(outcome)
        return 200, None

    app.import_bars(ticker, rows, replace=replace, respond=respond)
    return outcomes[-1]


def import_csv(
    app: MarketDataApplication, ticker: str, text: str, *, replace: bool = False
) -> ImportOutcome:
    """Import a CSV's bars."""
    return import_rows(app, ticker, parse_csv(text), replace=replace)
