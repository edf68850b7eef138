"""Market data rules without I/O: row validation, content hash, imports and corrections."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from application.contexts import PredictionsApplication
from application.market_data import import_csv
from application.ports import Ports, Unwired
from domain.market_data import (
    Bar,
    ContradictingBarsError,
    InvalidBarsError,
    InvalidTickerError,
    MarketData,
    check_ticker,
    content_hash,
    market_data_id,
    parse_csv,
    validate_rows,
)
from domain.metadata import acting_as


def row(day: str = "2024-01-02", **over: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "date": day, "open": 10, "high": 11, "low": 9, "close": 10.5, "volume": 100,
    }  # fmt: skip
    values.update(over)
    return values


def test_valid_rows_are_parsed_and_sorted_by_date() -> None:
    bars = validate_rows([row("2024-01-03"), ["2024-01-02", "1", "2", "0.5", "1.5", "0"]])
    assert bars == [
        ("2024-01-02", 1.0, 2.0, 0.5, 1.5, 0.0),
        ("2024-01-03", 10.0, 11.0, 9.0, 10.5, 100.0),
    ]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (row(high=8), "high is below low"),
        (row(open=12), "open is outside"),
        (row(close=8.5), "close is outside"),
        (row(volume=-1), "volume is negative"),
        (row("2024-13-01"), "not an ISO date"),
        (row("1/2/2024"), "not an ISO date"),
        (row(close="abc"), "not a finite number"),
        (row(close=float("nan")), "not a finite number"),
        (row(open=True), "not a finite number"),
        ({"date": "2024-01-02"}, "missing open"),
        ("2024-01-02,1,2,3", "needs the fields"),
    ],
)
def test_each_broken_rule_names_its_row(bad: Any, message: str) -> None:
    with pytest.raises(InvalidBarsError) as caught:
        validate_rows([row("2024-01-01"), bad, row("2024-01-05")])
    assert caught.value.rows == [2]
    assert message in caught.value.errors[0]["message"]


def test_every_bad_row_is_listed_including_repeated_dates() -> None:
    with pytest.raises(InvalidBarsError) as caught:
        validate_rows([row(), row(volume=-5), row("2024-01-03"), row()])
    assert caught.value.rows == [2, 4]
    assert "repeats row 1" in caught.value.errors[1]["message"]
    assert "2, 4" in str(caught.value)


def test_an_empty_import_is_refused() -> None:
    with pytest.raises(InvalidBarsError):
        validate_rows([])


def test_content_hash_ignores_row_order_but_not_values() -> None:
    a = validate_rows([row("2024-01-02"), row("2024-01-03")])
    b = validate_rows([row("2024-01-03"), row("2024-01-02")])
    c = validate_rows([row("2024-01-02"), row("2024-01-03", close=10.6)])
    assert content_hash(a) == content_hash(b) != content_hash(c)


def test_tickers_are_normalised_and_checked() -> None:
    assert check_ticker(" brk.b ") == "BRK.B"
    assert market_data_id("brk.b") == market_data_id("BRK.B")
    with pytest.raises(InvalidTickerError):
        check_ticker("no spaces")


def test_imports_record_new_dates_refuse_contradictions_and_correct_with_replace() -> None:
    market = MarketData.create("acme")
    first = validate_rows([row("2024-01-02"), row("2024-01-03")])
    outcome = market.import_bars(first, {}, replace=False)
    assert outcome.changed and outcome.new_dates == 2
    current = {b[0]: b for b in first}
    assert not market.import_bars(first, current, replace=False).changed
    assert market.version == 2
    changed = validate_rows([row("2024-01-03", close=10.9), row("2024-01-04")])
    with pytest.raises(ContradictingBarsError) as caught:
        market.import_bars(changed, current, replace=False)
    assert caught.value.dates == ["2024-01-03"]
    assert market.version == 2
    corrected = market.import_bars(changed, current, replace=True)
    assert corrected.replaced_dates == ["2024-01-03"]
    events = market.collect_events()
    assert [type(e).__name__ for e in events] == ["Created", "BarsImported", "BarsCorrected"]
    assert (market.first_date, market.last_date, market.row_count) == (
        "2024-01-02", "2024-01-04", 3,
    )  # fmt: skip


class FakePayloads:
    """A ``PayloadStore`` in a dict: this test runs the application without a database."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], list[Bar]] = {}

    def put(self, content_hash: str, ticker: str, bars: Sequence[Bar]) -> None:
        self.data.setdefault((ticker, content_hash), list(bars))

    def get(self, ticker: str, hashes: Sequence[str]) -> dict[str, list[Bar]]:
        return {h: self.data[ticker, h] for h in hashes if (ticker, h) in self.data}


def test_csv_import_through_the_application_in_memory() -> None:
    unwired: Any = lambda *_: Unwired("store")  # noqa: E731
    payloads = FakePayloads()
    ports = Ports(artifacts=unwired, keys=unwired, payloads=lambda _: payloads, events=unwired)
    app = PredictionsApplication(ports=ports)
    text = "Date,Open,High,Low,Close,Volume\n2024-01-02,10,11,9,10.5,100\n\n"
    with acting_as("tester", "corr-1"):
        assert import_csv(app, "acme", text).changed
        assert not import_csv(app, "ACME", text).changed
    market = app.get_market_data("ACME")
    assert market.row_count == 1
    assert app.current_bars(market) == {"2024-01-02": ("2024-01-02", 10.0, 11.0, 9.0, 10.5, 100.0)}
    stored = list(app.events.get(market.id))
    assert stored[-1].meta == {"principal": "tester", "correlation_id": "corr-1"}


def test_csv_without_a_required_column_is_refused() -> None:
    with pytest.raises(InvalidBarsError, match="lacks volume"):
        parse_csv("date,open,high,low,close\n")
