"""Market data resource: /api/v1/market-data (daily bars per ticker).

``POST /{ticker}/bars`` takes JSON (``{"rows": [...], "replace": false}``) or a CSV
upload (``Content-Type: text/csv``, header with date, open, high, low, close, volume),
or a Parquet upload (``Content-Type: application/vnd.apache.parquet``, same columns;
``?replace=true`` to correct stored dates). Answers 201 when an import event was
recorded, 200 when every row equalled a stored bar (nothing recorded), 400 with the
bad row numbers, 409 with the contradicting dates.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter

from api.auth import READ, WRITE
from api.commands import idempotency, run_command, to_builtins
from api.consistency import wait_for
from api.controllers.models import WaitFor
from api.errors import ProblemError
from api.market_data_schemas import (
    BarOut,
    BarPage,
    BarsImport,
    BarsImportResult,
    TickerPage,
    TickerSummary,
)
from api.pagination import DEFAULT_LIMIT, check_limit, decode_cursor, encode_cursor
from application.base import Response as CommandResponse
from application.contexts import Contexts
from domain.market_data import (
    PARQUET_MEDIA_TYPES,
    ContradictingBarsError,
    ImportOutcome,
    InvalidBarsError,
    InvalidTickerError,
    MarketData,
    check_ticker,
    parse_csv,
    parse_parquet,
)
from projections import market_data as views

MAX_BAR_LIMIT = 5000
DEFAULT_BAR_LIMIT = 1000
MAX_BODY = 32 * 1024 * 1024

_decode_import = msgspec.json.Decoder(BarsImport).decode


def _import_result(market: MarketData, outcome: ImportOutcome) -> CommandResponse:
    event = None
    if outcome.changed:
        event = "BarsCorrected" if outcome.replaced_dates else "BarsImported"
    body = BarsImportResult(
        ticker=outcome.ticker,
        changed=outcome.changed,
        event=event,
        content_hash=outcome.content_hash,
        first_date=outcome.first_date,
        last_date=outcome.last_date,
        row_count=outcome.row_count,
        new_dates=outcome.new_dates,
        replaced_dates=outcome.replaced_dates,
        version=market.version,
    )
    return (201 if outcome.changed else 200), to_builtins(body)


def _ticker_or_404(ticker: str) -> str:
    try:
        return check_ticker(ticker)
    except InvalidTickerError:
        raise ProblemError(404, f"no market data for ticker {ticker!r}") from None


async def _read_import(request: Request[Any, Any, Any], replace_query: bool) -> tuple[Any, bool]:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ProblemError(413, f"an import body is at most {MAX_BODY} bytes")
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if content_type == "text/csv":
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ProblemError(400, "the CSV must be UTF-8") from None
        return parse_csv(text), replace_query
    if content_type in PARQUET_MEDIA_TYPES:
        return parse_parquet(body), replace_query
    if content_type not in ("application/json", ""):
        raise ProblemError(415, "send application/json, text/csv or application/vnd.apache.parquet")
    try:
        data = _decode_import(body)
    except msgspec.ValidationError as exc:
        raise ProblemError(
            400,
            f"invalid body: {exc}",
            errors=[{"field": "body", "source": "body", "message": str(exc)}],
        ) from None
    except msgspec.DecodeError:
        raise ProblemError(400, "the body is not valid JSON") from None
    return data.rows, data.replace or replace_query


class MarketDataController(Controller):
    path = "/api/v1/market-data"
    tags = ["market data"]

    @post("/{ticker:str}/bars", guards=[WRITE], status_code=201)
    async def import_bars(
        self,
        request: Request[Any, Any, Any],
        ticker: str,
        contexts: Contexts,
        replace: bool = False,
    ) -> Response[Any]:
        """Import daily bars of a ticker (JSON ``{"rows": [...], "replace": false}`` or
        ``text/csv``, or Parquet); all rows or none."""
        try:
            normalised = check_ticker(ticker)
            rows, replace_rows = await _read_import(request, replace)
            idem = await idempotency(request)
            return await run_command(
                request,
                lambda: contexts.predictions.import_bars(
                    normalised, rows, replace=replace_rows, idem=idem, respond=_import_result
                ),
            )
        except InvalidTickerError as exc:
            raise ProblemError(
                400, str(exc), errors=[{"field": "ticker", "source": "path", "message": str(exc)}]
            ) from None
        except InvalidBarsError as exc:
            raise ProblemError(
                400,
                str(exc),
                rows=exc.rows,
                errors=[
                    {
                        "field": f"rows[{e['row']}]" if e["row"] is not None else "rows",
                        "source": "body",
                        "message": e["message"],
                        "row": e["row"],
                    }
                    for e in exc.errors[:500]
                ],
            ) from None
        except ContradictingBarsError as exc:
            raise ProblemError(409, str(exc), dates=exc.dates) from None

    @get("/", guards=[READ])
    async def list_tickers(
        self,
        request: Request[Any, Any, Any],
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
        wait: WaitFor = None,
    ) -> TickerPage:
        """Tickers with their first and last date and row count, by ticker."""
        await wait_for(request, wait)
        limit = check_limit(limit)
        after = decode_cursor(cursor)
        if after is not None and not isinstance(after, str):
            raise ProblemError(400, "cursor is not one this API returned")
        async with request.app.state.pool.acquire() as conn:
            rows = await views.list_tickers(conn, after, limit + 1)
        items = [TickerSummary(**dict(r)) for r in rows[:limit]]
        next_cursor = encode_cursor(items[-1].ticker) if len(rows) > limit else None
        return TickerPage(items=items, next_cursor=next_cursor)

    @get("/{ticker:str}", guards=[READ])
    async def get_bars(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        ticker: str,
        start: date | None = None,
        end: date | None = None,
        limit: Annotated[
            int, Parameter(description=f"1..{MAX_BAR_LIMIT}, default {DEFAULT_BAR_LIMIT}")
        ] = DEFAULT_BAR_LIMIT,
        cursor: str | None = None,
        wait: WaitFor = None,
    ) -> BarPage:
        """Daily bars of a ticker between ``start`` and ``end`` (inclusive), by date."""
        await wait_for(request, wait)
        normalised = _ticker_or_404(ticker)
        if not 1 <= limit <= MAX_BAR_LIMIT:
            raise ProblemError(
                400,
                f"limit must be between 1 and {MAX_BAR_LIMIT}",
                errors=[{"field": "limit", "source": "query", "message": "out of range"}],
            )
        if start is not None and end is not None and end < start:
            raise ProblemError(400, "end is before start")
        raw = decode_cursor(cursor)
        after: date | None = None
        if raw is not None:
            try:
                after = date.fromisoformat(raw)
            except (TypeError, ValueError):
                raise ProblemError(400, "cursor is not one this API returned") from None
        async with request.app.state.pool.acquire() as conn:
            summary = await views.get_ticker(conn, normalised)
            if summary is None:
                raise ProblemError(404, f"no market data for ticker {normalised!r}")
            rows = await views.bars_between(conn, normalised, start, end, after, limit + 1)
        items = [BarOut(**dict(r)) for r in rows[:limit]]
        next_cursor = encode_cursor(items[-1].date.isoformat()) if len(rows) > limit else None
        return BarPage(
            ticker=normalised,
            first_date=summary["first_date"],
            last_date=summary["last_date"],
            row_count=summary["row_count"],
            items=items,
            next_cursor=next_cursor,
        )
