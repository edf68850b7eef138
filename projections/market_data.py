"""The market-data reference tables: daily bars per ticker and a summary per ticker.

Written only from import events (``MarketData.BarsImported`` / ``BarsCorrected``): each
names the content hash of its rows, whose payload the command stored before saving the
event (see ``application.market_data``). The bars of a batch are folded in memory in log
order (later imports replace earlier bars of the same date) and upserted in the
projector's transaction with its position, so bars and events can never disagree and
a rebuild replays them.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, ClassVar

import asyncpg
import msgspec

from projections.events import Event

IMPORT_EVENTS = ("MarketData.BarsImported", "MarketData.BarsCorrected")
BARS = "rm_market_bars"
TICKERS = "rm_market_tickers"


class MarketDataBars:
    name: ClassVar[str] = "market_data"
    contexts: ClassVar[tuple[str, ...]] = ("predictions",)
    tables: ClassVar[Mapping[str, Sequence[str]]] = {
        "market_bars": (
            """
            CREATE TABLE {market_bars} (
                ticker text NOT NULL,
                date date NOT NULL,
                open double precision NOT NULL,
                high double precision NOT NULL,
                low double precision NOT NULL,
                close double precision NOT NULL,
                volume double precision NOT NULL,
                content_hash text NOT NULL,
                position bigint NOT NULL,
                PRIMARY KEY (ticker, date)
            )
            """,
        ),
        "market_tickers": (
            """
            CREATE TABLE {market_tickers} (
                ticker text PRIMARY KEY,
                aggregate_id uuid NOT NULL,
                first_date date NOT NULL,
                last_date date NOT NULL,
                row_count integer NOT NULL,
                imports integer NOT NULL,
                version integer NOT NULL,
                updated_at timestamptz NOT NULL
            )
            """,
        ),
    }

    async def apply(
        self, conn: asyncpg.Connection, tables: Mapping[str, str], events: Sequence[Event]
    ) -> None:
        imports = [e for e in events if e.type in IMPORT_EVENTS]
        if not imports:
            return
        keys = {(e.data["ticker"], e.data["content_hash"]) for e in imports}
        payloads = {
            (r["ticker"], r["content_hash"]): msgspec.json.decode(zlib.decompress(r["rows"]))
            for r in await conn.fetch(
                "SELECT p.ticker, p.content_hash, p.rows FROM market_data_payloads p "
                "JOIN unnest($1::text[], $2::text[]) AS k(ticker, content_hash) "
                "USING (ticker, content_hash)",
                [k[0] for k in keys],
                [k[1] for k in keys],
            )
        }
        bars: dict[tuple[str, str], tuple[Any, ...]] = {}
        summary: dict[str, tuple[Any, ...]] = {}
        for e in imports:
            ticker, digest = e.data["ticker"], e.data["content_hash"]
            for day, o, h, lo, c, v in payloads[ticker, digest]:
                bars[(ticker, day)] = (ticker, date.fromisoformat(day), o, h, lo, c, v, digest,
                                       e.position)  # fmt: skip
            summary[ticker] = (e.aggregate_id, e.version, e.timestamp)
        await conn.executemany(
            f"INSERT INTO {tables['market_bars']} AS b (ticker, date, open, high, low, close, "
            "volume, content_hash, position) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
            "ON CONFLICT (ticker, date) DO UPDATE SET open = excluded.open, "
            "high = excluded.high, low = excluded.low, close = excluded.close, "
            "volume = excluded.volume, content_hash = excluded.content_hash, "
            "position = excluded.position",
            list(bars.values()),
        )
        counts: dict[str, int] = {}
        for e in imports:
            counts[e.data["ticker"]] = counts.get(e.data["ticker"], 0) + 1
        for ticker, (aggregate_id, version, at) in summary.items():
            await conn.execute(
                f"INSERT INTO {tables['market_tickers']} AS t (ticker, aggregate_id, first_date, "
                "last_date, row_count, imports, version, updated_at) "
                f"SELECT $1, $2, min(date), max(date), count(*), $3, $4, $5 "
                f"FROM {tables['market_bars']} WHERE ticker = $1 "
                "ON CONFLICT (ticker) DO UPDATE SET first_date = excluded.first_date, "
                "last_date = excluded.last_date, row_count = excluded.row_count, "
                "imports = t.imports + excluded.imports, "
                "version = excluded.version, updated_at = excluded.updated_at",
                ticker,
                aggregate_id,
                counts[ticker],
                version,
                at,
            )


async def list_tickers(
    conn: asyncpg.Connection, after: str | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT ticker, first_date, last_date, row_count, imports, version, updated_at "
        f"FROM {TICKERS} WHERE ($1::text IS NULL OR ticker > $1) ORDER BY ticker LIMIT $2",
        after,
        limit,
    )


async def get_ticker(conn: asyncpg.Connection, ticker: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT ticker, first_date, last_date, row_count, imports, version, updated_at "
        f"FROM {TICKERS} WHERE ticker = $1",
        ticker,
    )


async def bars_between(  # noqa: PLR0913
    conn: asyncpg.Connection,
    ticker: str,
    start: date | None,
    end: date | None,
    after: date | None,
    limit: int,
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT date, open, high, low, close, volume FROM {BARS} WHERE ticker = $1 "
        "AND ($2::date IS NULL OR date >= $2) AND ($3::date IS NULL OR date <= $3) "
        "AND ($4::date IS NULL OR date > $4) ORDER BY date LIMIT $5",
        ticker,
        start,
        end,
        after,
        limit,
    )
