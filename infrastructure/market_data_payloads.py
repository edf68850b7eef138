"""The ``application.ports.PayloadStore`` of PostgreSQL: an import's rows by content hash.

Rows live in ``market_data_payloads`` (key: ticker and the SHA-256 of the canonical
rows; value: the rows as msgspec JSON, zlib-compressed), written in their own committed
transaction before the import's event (see ``application.market_data`` for why). The
``market_data`` projection reads the same table to copy an import's bars.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from domain.market_data import Bar, decode_bars, encode_bars

DDL = """
CREATE TABLE IF NOT EXISTS market_data_payloads (
    ticker text NOT NULL,
    content_hash text NOT NULL,
    row_count integer NOT NULL,
    rows bytea NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ticker, content_hash)
)
"""


def compress(bars: Sequence[Bar]) -> bytes:
    return zlib.compress(encode_bars(bars), 6)


def decompress(data: bytes) -> list[Bar]:
    return decode_bars(zlib.decompress(data))


class PostgresPayloadStore:
    """Payloads in the same database as the events, through the event store's pool."""

    def __init__(self, datastore: Any) -> None:
        self.datastore = datastore
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SELECT pg_advisory_xact_lock(hashtextextended('aimm.payloads', 0))")
            curs.execute(DDL)

    def put(self, content_hash: str, ticker: str, bars: Sequence[Bar]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "INSERT INTO market_data_payloads (content_hash, ticker, row_count, rows) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (ticker, content_hash) DO NOTHING",
                (content_hash, ticker, len(bars), compress(bars)),
            )

    def get(self, ticker: str, hashes: Sequence[str]) -> dict[str, list[Bar]]:
        if not hashes:
            return {}
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT content_hash, rows FROM market_data_payloads "
                "WHERE ticker = %s AND content_hash = ANY(%s)",
                (ticker, list(hashes)),
            )
            return {r["content_hash"]: decompress(bytes(r["rows"])) for r in curs.fetchall()}
