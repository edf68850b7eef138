"""Market data: daily bars per ticker, and the ``MarketData`` aggregate recording imports.

The bars themselves are reference data, not one event each. An import is one event of a
``MarketData`` aggregate (one per ticker, id = uuid5 of the ticker) naming the ticker,
the date range, the row count and the SHA-256 content hash of the import's rows; the
rows are stored under that hash (see ``application.market_data``). The aggregate keeps
the hashes of its imports in order, so the bars in force are the imports' rows folded
oldest first, later rows replacing earlier ones of the same date.

Rules (checked here, without I/O):
- a bar: ISO date, finite prices with ``low <= open, close <= high``, ``volume >= 0``;
  one import holds each date at most once; bad rows are all reported by row number;
- re-importing rows identical to the stored ones records nothing;
- a row that contradicts a stored date is refused (409, naming the dates) unless the
  import says ``replace``, which records ``BarsCorrected`` with the replaced dates.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

import msgspec

from domain.base import Aggregate
from domain.errors import ConflictError, DomainError

# (date ISO, open, high, low, close, volume)
Bar = tuple[str, float, float, float, float, float]
FIELDS = ("date", "open", "high", "low", "close", "volume")

MARKET_DATA_NAMESPACE = uuid.UUID("1b7f5a9e-4c1d-5d0e-9a55-6d61726b6574")
TICKER_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,31}$")
MAX_ROWS = 100_000
MAX_LISTED = 50  # dates or row errors named in one message body


class InvalidTickerError(DomainError):
    """A ticker that is not 1-32 characters of A-Z, 0-9, '.', '_', '-'."""


class InvalidBarsError(DomainError):
    """Rows of an import break the bar rules (HTTP 400); nothing of the import is kept."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        rows = sorted({e["row"] for e in errors if e.get("row") is not None})
        shown = ", ".join(str(r) for r in rows[:MAX_LISTED])
        more = f" and {len(rows) - MAX_LISTED} more" if len(rows) > MAX_LISTED else ""
        super().__init__(f"invalid rows: {shown}{more}" if rows else errors[0]["message"])
        self.errors = errors
        self.rows = rows


class ContradictingBarsError(ConflictError):
    """Rows contradict stored bars of the same dates and ``replace`` was not asked."""

    def __init__(self, ticker: str, dates: list[str]) -> None:
        shown = ", ".join(dates[:MAX_LISTED])
        more = f" and {len(dates) - MAX_LISTED} more" if len(dates) > MAX_LISTED else ""
        super().__init__(
            f"{len(dates)} row(s) contradict stored bars of {ticker} on {shown}{more}; "
            "import them with replace (replace: true, or --replace) to correct them"
        )
        self.dates = dates


def check_ticker(ticker: str) -> str:
    normalised = ticker.strip().upper()
    if not TICKER_PATTERN.match(normalised):
        raise InvalidTickerError(
            "ticker must be 1-32 characters of A-Z, 0-9, '.', '_', '-' starting with a "
            "letter or digit"
        )
    return normalised


def market_data_id(ticker: str) -> uuid.UUID:
    return uuid.uuid5(MARKET_DATA_NAMESPACE, check_ticker(ticker))


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("not a number")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        number = float(value.strip())
    else:
        raise ValueError("not a number")
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def _values(row: Any) -> list[Any]:
    """A row's values in FIELDS order (from a mapping, or a sequence in that order)."""
    if isinstance(row, Mapping):
        missing = [f for f in FIELDS if row.get(f) is None or row.get(f) == ""]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        return [row[f] for f in FIELDS]
    if isinstance(row, Sequence) and not isinstance(row, str) and len(row) == len(FIELDS):
        return list(row)
    raise ValueError(f"a row needs the fields {', '.join(FIELDS)}")


def _day(raw: Any) -> str:
    text = raw.strip() if isinstance(raw, str) else ""
    try:
        day = date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise ValueError(f"date {raw!r} is not an ISO date (YYYY-MM-DD)")
    return day.isoformat()


def _bar(row: Any) -> Bar:
    """One row as a Bar; ValueError naming every rule it breaks."""
    values = _values(row)
    day = _day(values[0])
    numbers: list[float] = []
    for name, value in zip(FIELDS[1:], values[1:], strict=True):
        try:
            numbers.append(_number(value))
        except ValueError:
            raise ValueError(f"{name} {value!r} is not a finite number") from None
    o, h, lo, c, v = numbers
    problems = []
    if h < lo:
        problems.append("high is below low")
    else:
        if not lo <= o <= h:
            problems.append("open is outside [low, high]")
        if not lo <= c <= h:
            problems.append("close is outside [low, high]")
    if lo < 0:
        problems.append("prices must not be negative")
    if v < 0:
        problems.append("volume is negative")
    if problems:
        raise ValueError("; ".join(problems))
    return (day, o, h, lo, c, v)


def validate_rows(rows: Iterable[Any]) -> list[Bar]:
    """Parse and check an import's rows; all or nothing. Rows are numbered from 1.

    Returns the bars sorted by date; raises InvalidBarsError listing every bad row.
    """
    bars: list[Bar] = []
    errors: list[dict[str, Any]] = []
    first_row: dict[str, int] = {}
    count = 0
    for number, row in enumerate(rows, start=1):
        count = number
        if number > MAX_ROWS:
            raise InvalidBarsError(
                [{"row": None, "message": f"an import holds at most {MAX_ROWS} rows"}]
            )
        try:
            bar = _bar(row)
        except ValueError as exc:
            errors.append({"row": number, "message": str(exc)})
            continue
        if bar[0] in first_row:
            errors.append(
                {"row": number, "message": f"date {bar[0]} repeats row {first_row[bar[0]]}"}
            )
            continue
        first_row[bar[0]] = number
        bars.append(bar)
    if count == 0:
        raise InvalidBarsError([{"row": None, "message": "an import needs at least one row"}])
    if errors:
        raise InvalidBarsError(errors)
    bars.sort(key=lambda b: b[0])
    return bars


_encode = msgspec.json.Encoder().encode


def encode_bars(bars: Sequence[Bar]) -> bytes:
    """The canonical bytes of sorted bars (what the content hash covers)."""
    return _encode([list(b) for b in bars])


def decode_bars(data: bytes) -> list[Bar]:
    return [tuple(r) for r in msgspec.json.decode(data)]


def content_hash(bars: Sequence[Bar]) -> str:
    return "sha256:" + hashlib.sha256(encode_bars(bars)).hexdigest()


def fold_bars(imports: Iterable[Sequence[Bar]]) -> dict[str, Bar]:
    """The bars in force after applying imports in order (later dates replace earlier)."""
    current: dict[str, Bar] = {}
    for bars in imports:
        for bar in bars:
            current[bar[0]] = bar
    return current


class MarketData(Aggregate):
    """The imports of one ticker's daily bars."""

    class Created(Aggregate.Created):
        ticker: str

    class BarsImported(Aggregate.Event):
        ticker: str
        content_hash: str
        first_date: str
        last_date: str
        row_count: int
        new_dates: int

        def apply(self, aggregate: MarketData) -> None:
            aggregate._record(self)

    class BarsCorrected(Aggregate.Event):
        ticker: str
        content_hash: str
        first_date: str
        last_date: str
        row_count: int
        new_dates: int
        replaced_dates: list[str]

        def apply(self, aggregate: MarketData) -> None:
            aggregate._record(self)

    def __init__(self, ticker: str, meta: dict[str, str]) -> None:
        self.ticker = ticker
        self.imports: list[str] = []
        self.first_date: str | None = None
        self.last_date: str | None = None
        self.row_count = 0

    @classmethod
    def create(cls, ticker: str) -> MarketData:
        ticker = check_ticker(ticker)
        return cls._create(cls.Created, id=market_data_id(ticker), ticker=ticker)

    def _record(self, event: MarketData.BarsImported | MarketData.BarsCorrected) -> None:
        self.imports.append(event.content_hash)
        self.row_count += event.new_dates
        self.first_date = min(filter(None, (self.first_date, event.first_date)))
        self.last_date = max(filter(None, (self.last_date, event.last_date)))

    def import_bars(
        self, bars: Sequence[Bar], current: Mapping[str, Bar], *, replace: bool
    ) -> ImportOutcome:
        """Record an import of validated, sorted ``bars`` against the bars in force.

        Nothing is recorded when every row equals a stored one.
        """
        new = [b for b in bars if b[0] not in current]
        contradicting = [b[0] for b in bars if b[0] in current and current[b[0]] != b]
        outcome = ImportOutcome(
            ticker=self.ticker,
            changed=bool(new or contradicting),
            content_hash=content_hash(bars),
            first_date=bars[0][0],
            last_date=bars[-1][0],
            row_count=len(bars),
            new_dates=len(new),
            replaced_dates=contradicting,
        )
        if contradicting and not replace:
            raise ContradictingBarsError(self.ticker, contradicting)
        if not outcome.changed:
            return outcome
        fields = {
            "ticker": self.ticker,
            "content_hash": outcome.content_hash,
            "first_date": outcome.first_date,
            "last_date": outcome.last_date,
            "row_count": outcome.row_count,
            "new_dates": outcome.new_dates,
        }
        if contradicting:
            self.trigger_event(self.BarsCorrected, replaced_dates=contradicting, **fields)
        else:
            self.trigger_event(self.BarsImported, **fields)
        return outcome


class ImportOutcome(msgspec.Struct, kw_only=True):
    ticker: str
    changed: bool
    content_hash: str
    first_date: str
    last_date: str
    row_count: int
    new_dates: int
    replaced_dates: list[str]


def parse_csv(text: str) -> list[dict[str, str]]:
    """Rows of a CSV with a header naming at least FIELDS (any case, any order; other
    columns are ignored). Raises InvalidBarsError when the header lacks a field."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise InvalidBarsError([{"row": None, "message": "the CSV is empty"}])
    names = [h.strip().lower() for h in header]
    missing = [f for f in FIELDS if f not in names]
    if missing:
        raise InvalidBarsError(
            [{"row": None, "message": f"the CSV header lacks {', '.join(missing)}"}]
        )
    index = {f: names.index(f) for f in FIELDS}
    rows: list[dict[str, str]] = []
    for record in reader:
        if not any(cell.strip() for cell in record):
            continue
        rows.append({f: record[i] if i < len(record) else "" for f, i in index.items()})
    return rows


PARQUET_MEDIA_TYPES = ("application/vnd.apache.parquet", "application/x-parquet")


def parse_parquet(data: bytes) -> list[dict[str, Any]]:
    """Rows of a Parquet file with columns naming at least FIELDS (any case; other columns
    are ignored). Dates may be stored as dates, datetimes (the day is kept) or ISO text.
    Raises InvalidBarsError when the file is not Parquet or lacks a field."""
    import polars as pl

    try:
        frame = pl.read_parquet(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - polars raises several error types for a bad file
        raise InvalidBarsError(
            [{"row": None, "message": "the body is not a readable Parquet file"}]
        ) from None
    names = {c.strip().lower(): c for c in frame.columns}
    missing = [f for f in FIELDS if f not in names]
    if missing:
        raise InvalidBarsError(
            [{"row": None, "message": f"the Parquet file lacks the columns {', '.join(missing)}"}]
        )
    frame = frame.select([pl.col(names[f]).alias(f) for f in FIELDS])
    if frame.schema["date"] in (pl.Date, pl.Datetime):
        frame = frame.with_columns(pl.col("date").dt.date().cast(pl.String))
    rows: list[dict[str, Any]] = frame.to_dicts()
    for row in rows:
        if not isinstance(row["date"], str) and row["date"] is not None:
            row["date"] = str(row["date"])
    return rows
