"""Read-your-writes: a query may name a position it must see (``wait_for=context:N``)."""

from __future__ import annotations

from typing import Any

from litestar import Request

from api.errors import ProblemError
from application.contexts import CONTEXTS
from projections.engine import wait_for_position

WAIT_TIMEOUT = 5.0


def parse_position(text: str) -> tuple[str, int]:
    context, _, number = text.partition(":")
    if context not in CONTEXTS or not number.isdigit():
        raise ProblemError(
            400,
            "wait_for must be CONTEXT:POSITION as returned in the Aimm-Position header",
            errors=[{"field": "wait_for", "source": "query", "message": "invalid position"}],
        )
    return context, int(number)


async def wait_for(request: Request[Any, Any, Any], wait_for: str | None) -> None:
    """Block until the projections reach ``wait_for``, or answer 503 after a while."""
    if wait_for is None:
        return
    context, position = parse_position(wait_for)
    async with request.app.state.pool.acquire() as conn:
        reached = await wait_for_position(conn, context, position, WAIT_TIMEOUT)
    if not reached:
        raise ProblemError(
            503,
            f"the read models have not reached {wait_for} within {WAIT_TIMEOUT:g}s",
            headers={"Retry-After": "1"},
        )
