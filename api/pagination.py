"""Opaque cursors for keyset pagination: base64url of a small JSON document."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar.params import Parameter

from api.errors import ProblemError

MAX_LIMIT = 500
DEFAULT_LIMIT = 50

# Every list takes these two and answers ``{"items": [...], "next_cursor": str | null}``.
Limit = Annotated[
    int,
    Parameter(
        ge=1, le=MAX_LIMIT, description=f"page size, 1-{MAX_LIMIT} (default {DEFAULT_LIMIT})"
    ),
]
Cursor = Annotated[
    str | None,
    Parameter(
        min_length=1,
        max_length=2000,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="`next_cursor` of the previous page; omit for the first page",
    ),
]


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(value)).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return msgspec.json.decode(raw)
    except (binascii.Error, msgspec.DecodeError, ValueError):
        raise _not_ours() from None


def _not_ours() -> ProblemError:
    return ProblemError(
        400,
        "cursor is not one this API returned",
        errors=[{"field": "cursor", "source": "query", "message": "invalid cursor"}],
    )


def decode_time_keyset(cursor: str | None) -> tuple[datetime, UUID] | None:
    """The (time, id) keyset of a list ordered by a timestamp then id (jobs, datasets)."""
    raw = decode_cursor(cursor)
    if raw is None:
        return None
    try:
        at, key = raw
        return datetime.fromisoformat(at), UUID(key)
    except (TypeError, ValueError):
        raise _not_ours() from None


def next_time_cursor(rows: Sequence[Any], limit: int, column: str) -> str | None:
    """The cursor after the last of ``limit`` rows when ``rows`` (fetched ``limit + 1``)
    holds more; None on the last page."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor([last[column].isoformat(), str(last["id"])])


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ProblemError(
            400,
            f"limit must be between 1 and {MAX_LIMIT}",
            errors=[{"field": "limit", "source": "query", "message": f"must be 1..{MAX_LIMIT}"}],
        )
    return limit


Order = Annotated[
    Literal["oldest", "newest"],
    Parameter(
        description="`oldest` first (the default) or `newest` first; a `cursor` continues "
        "in the order of the page that returned it"
    ),
]
