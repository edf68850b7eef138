"""Request and response bodies of the market-data endpoints (msgspec Structs)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from msgspec import Meta, Struct

from domain.market_data import MAX_ROWS


class BarsImport(Struct, forbid_unknown_fields=True):
    """Rows are objects with date, open, high, low, close, volume (or arrays in that
    order); they are checked together and reported by row number (from 1)."""

    rows: Annotated[list[Any], Meta(max_length=MAX_ROWS)]
    replace: bool = False


class BarsImportResult(Struct):
    ticker: str
    changed: bool  # False: every row equalled a stored bar, nothing was recorded
    event: str | None  # BarsImported, BarsCorrected, or None when nothing changed
    content_hash: str
    first_date: str
    last_date: str
    row_count: int
    new_dates: int
    replaced_dates: list[str]
    version: int  # of the ticker's MarketData aggregate


class BarOut(Struct):
    date: date
    open: float
    high: float
    low: float
    close: float
    volume: float


class TickerSummary(Struct):
    ticker: str
    first_date: date
    last_date: date
    row_count: int
    imports: int
    version: int
    updated_at: datetime


class TickerPage(Struct):
    items: list[TickerSummary]
    next_cursor: str | None


class BarPage(Struct):
    ticker: str
    first_date: date
    last_date: date
    row_count: int
    items: list[BarOut]
    next_cursor: str | None
