"""Read-your-writes: a query may name a position it must see (``wait_for=context:N``)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request
from litestar.params import Parameter

from api.errors import ProblemError
from application.contexts import CONTEXTS
from projections.positions import ProjectionWatcher

WAIT_TIMEOUT = 5.0

WaitFor = Annotated[
    str | None,
    Parameter(
        query="wait_for",
        pattern=rf"^({'|'.join(CONTEXTS)}):[0-9]{{1,18}}$",
        description="`CONTEXT:POSITION` from an `Aimm-Position` header: answer once the read "
        "models have reached it (or 503 with `Retry-After` after a few seconds).",
    ),
]


def parse_position(text: str) -> tuple[str, int]:
    context, _, number = text.partition(":")
    if context not in CONTEXTS or not number.isdigit():
        raise ProblemError(
            400,
            "wait_for must be CONTEXT:POSITION as returned in the Aimm-Position header",
            errors=[{"field": "wait_for", "source": "query", "message": "invalid position"}],
        )
    return context, int(number)


async def reached(request: Request[Any, Any, Any], context: str, position: int) -> bool:
    """Whether every projection of ``context`` reaches ``position`` within the timeout."""
    watcher: ProjectionWatcher = request.app.state.watcher
    return await watcher.wait_until(context, position, WAIT_TIMEOUT)


async def wait_for(request: Request[Any, Any, Any], wait_for: str | None) -> None:
    """Block until the projections reach ``wait_for``, or answer 503 after a while.

    A position past the end of the log was returned by no command yet: that is a 503 at
    once, not after the timeout (the log may still grow to it: retrying can succeed).
    """
    if wait_for is None:
        return
    context, position = parse_position(wait_for)
    async with request.app.state.pool.acquire() as conn:
        head = await conn.fetchval(f"SELECT max(notification_id) FROM {context}_events")
    if position > (head or 0):
        raise ProblemError(
            503,
            f"{wait_for} is past the end of the {context} log (position {head or 0}): "
            "no command has returned it",
            headers={"Retry-After": "1"},
        )
    if not await reached(request, context, position):
        raise ProblemError(
            503,
            f"the read models have not reached {wait_for} within {WAIT_TIMEOUT:g}s",
            headers={"Retry-After": "1"},
        )
