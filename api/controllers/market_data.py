"""Market data resource: /api/v1/market-data (daily bars per ticker).

``POST /{ticker}/bars`` takes JSON (``{"rows": [...], "replace": false}``) or a CSV
upload (``Content-Type: text/csv``, header with date, open, high, low, close, volume),
or a Parquet upload (``Content-Type: application/vnd.apache.parquet``, same columns;
``?replace=true`` to correct stored dates). Answers 201 when an import event was
recorded, 200 when every row equalled a stored bar (nothing recorded), 400 with the
bad row numbers, 409 with the contradicting dates.

The contract (``api/contract.py``, ``docs/market-data.md``): the import takes ``If-Match``
on the ticker's MarketData aggregate (``"0"`` for a ticker without data; stale: 409 with
``current_version``) and ``Idempotency-Key``, and answers ``ETag`` = that aggregate's
version. Its three request bodies are declared in the OpenAPI document by
:class:`ImportOperation` (the handler reads the raw body, so the framework cannot infer
them). The bar rules that span fields or rows (low <= open, close <= high, a date once per
import, a real calendar date) and the content of CSV and Parquet files are checked by the
domain, not by the schema: they are the contract test's one exclusion for this operation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.params import Parameter, PathParameter

from api.auth import READ, WRITE
from api.commands import expected_version, idempotency, run_command, to_builtins
from api.consistency import WaitFor, wait_for
from api.contract import COMMAND_HEADERS, IdempotencyKey, IfMatch, problems, snapshot
from api.errors import ProblemError
from api.market_data_schemas import (
    BarOut,
    BarPage,
    BarsImport,
    BarsImportResult,
    TickerPage,
    TickerSummary,
)
from api.pagination import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, encode_cursor
from application.base import Response as CommandResponse
from application.contexts import Contexts
from domain.market_data import (
    FIELDS,
    MAX_ROWS,
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

Ticker = Annotated[
    str,
    PathParameter(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$",
        description="1-32 characters of A-Z, 0-9, '.', '_', '-' (case-insensitive)",
    ),
]
BarLimit = Annotated[
    int,
    Parameter(
        ge=1,
        le=MAX_BAR_LIMIT,
        description=f"page size, 1-{MAX_BAR_LIMIT} (default {DEFAULT_BAR_LIMIT})",
    ),
]

_DAY = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE, description="YYYY-MM-DD")
_AMOUNT = Schema(type=OpenAPIType.NUMBER, minimum=0)
_ROW = Schema(
    one_of=[
        Schema(
            type=OpenAPIType.OBJECT,
            properties={name: _DAY if name == "date" else _AMOUNT for name in FIELDS},
            required=list(FIELDS),
        ),
        Schema(
            type=OpenAPIType.ARRAY,
            prefix_items=[_DAY, *[_AMOUNT] * (len(FIELDS) - 1)],
            min_items=len(FIELDS),
            max_items=len(FIELDS),
        ),
    ],
    description=f"a bar: an object with {', '.join(FIELDS)}, or an array in that order; "
    "low <= open, close <= high",
)
IMPORT_BODY = RequestBody(
    required=True,
    description="The bars, as JSON rows, a CSV file or a Parquet file (the same columns: "
    f"{', '.join(FIELDS)}). At most {MAX_BODY} bytes and {MAX_ROWS} rows.",
    content={
        "application/json": OpenAPIMediaType(
            schema=Schema(
                type=OpenAPIType.OBJECT,
                properties={
                    "rows": Schema(
                        type=OpenAPIType.ARRAY, items=_ROW, min_items=1, max_items=MAX_ROWS
                    ),
                    "replace": Schema(type=OpenAPIType.BOOLEAN, default=False),
                },
                required=["rows"],
                additional_properties=False,
            )
        ),
        "text/csv": OpenAPIMediaType(
            schema=Schema(
                type=OpenAPIType.STRING,
                description=f"UTF-8 CSV with a header naming {', '.join(FIELDS)}",
            )
        ),
        PARQUET_MEDIA_TYPES[0]: OpenAPIMediaType(
            schema=Schema(type=OpenAPIType.STRING, content_media_type=PARQUET_MEDIA_TYPES[0])
        ),
    },
)


@dataclass
class ImportOperation(Operation):
    """The import reads its body itself (three media types): declare them here."""

    def __post_init__(self) -> None:
        self.request_body = IMPORT_BODY


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

    @post(
        "/{ticker:str}/bars",
        guards=[WRITE],
        status_code=201,
        operation_class=ImportOperation,
        response_headers=COMMAND_HEADERS,
        responses={
            200: ResponseSpec(
                BarsImportResult,
                description="Every row equalled a stored bar: nothing was recorded.",
                generate_examples=False,
            ),
            **problems(409, 413, 415, 422),
        },
    )
    async def import_bars(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        ticker: Ticker,
        contexts: Contexts,
        replace: bool = False,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[BarsImportResult]:
        """Import daily bars of a ticker (JSON ``{"rows": [...], "replace": false}`` or
        ``text/csv``, or Parquet); all rows or none."""
        try:
            normalised = check_ticker(ticker)
            expected = expected_version(request, None)
            rows, replace_rows = await _read_import(request, replace)
            idem = await idempotency(request, idempotency_key)
            return await run_command(
                request,
                lambda: contexts.predictions.import_bars(
                    normalised,
                    rows,
                    replace=replace_rows,
                    expected_version=expected,
                    idem=idem,
                    respond=_import_result,
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

    @get("/", guards=[READ], responses=problems())
    async def list_tickers(
        self,
        request: Request[Any, Any, Any],
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        wait: WaitFor = None,
    ) -> TickerPage:
        """Tickers with their first and last date and row count, by ticker."""
        await wait_for(request, wait)
        after = decode_cursor(cursor)
        if after is not None and not isinstance(after, str):
            raise ProblemError(400, "cursor is not one this API returned")
        async with request.app.state.pool.acquire() as conn:
            rows = await views.list_tickers(conn, after, limit + 1)
        items = [TickerSummary(**dict(r)) for r in rows[:limit]]
        next_cursor = encode_cursor(items[-1].ticker) if len(rows) > limit else None
        return TickerPage(items=items, next_cursor=next_cursor)

    @get("/{ticker:str}", guards=[READ], responses=problems(404))
    async def get_bars(  # noqa: PLR0913
        self,
        request: Request[Any, Any, Any],
        ticker: Ticker,
        start: date | None = None,
        end: date | None = None,
        limit: BarLimit = DEFAULT_BAR_LIMIT,
        cursor: Cursor = None,
        wait: WaitFor = None,
    ) -> BarPage:
        """Daily bars of a ticker between ``start`` and ``end`` (inclusive), by date; an
        ``end`` before ``start`` is an empty range. The summary and the bars are read in
        one snapshot."""
        await wait_for(request, wait)
        normalised = check_ticker(ticker)  # the path pattern has checked it
        raw = decode_cursor(cursor)
        after: date | None = None
        if raw is not None:
            try:
                after = date.fromisoformat(raw)
            except (TypeError, ValueError):
                raise ProblemError(400, "cursor is not one this API returned") from None
        async with snapshot(request) as conn:
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
