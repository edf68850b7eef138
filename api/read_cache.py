"""Answers of heavy queries, kept by the read models' positions.

A query's answer is a function of its parameters and of the read-model tables it reads.
Those tables change only when a projection applies events, and the projection moves its
row of ``aimm_projection_positions`` in the same transaction. So the parameters together
with the positions of every projection of the contexts read identify an answer: a request
that finds the same positions gets the same answer without reading or computing again.
Positions only grow (a rebuild replays the same events into the same state), so an entry
is never served for a state it was not built from; old entries age out of the LRU.

On a miss the answer is built in a snapshot (``api.contract.snapshot``), encoded once with
Litestar's own JSON encoder, and filed under the positions read inside that snapshot, so
entry and key describe the same state. On a hit the cost is one indexed read of the
positions table; the stored bytes are the response body.

Used by the prediction dashboard, accuracy and comparison (``api.controllers.predictions``):
reads that join thousands of rows and compute statistics, asked again and again with the
same parameters by every open dashboard between two forecasts.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar, cast

import asyncpg
from litestar import Request, Response
from litestar.serialization import encode_json

from api.contract import snapshot

T = TypeVar("T")

DEFAULT_ENTRIES = 256
POSITIONS_SQL = (
    "SELECT coalesce(array_agg(position ORDER BY projection, context), '{}') "
    "FROM aimm_projection_positions WHERE context = ANY($1::text[])"
)


class ReadCache:
    """Least-recently-used answers keyed by (parameters, projection positions)."""

    def __init__(self, entries: int = DEFAULT_ENTRIES) -> None:
        self.entries = entries
        self._answers: OrderedDict[Hashable, bytes] = OrderedDict()
        self.hits = 0
        self.misses = 0

    async def answer(
        self,
        request: Request[Any, Any, Any],
        contexts: tuple[str, ...],
        key: Hashable,
        build: Callable[[asyncpg.Connection], Awaitable[T]],
    ) -> Response[T]:
        """The answer for ``key`` at the current positions of ``contexts``: from the cache,
        else ``build(conn)`` in a snapshot, encoded and filed for the next request."""
        async with request.app.state.pool.acquire() as conn:
            positions = tuple(await conn.fetchval(POSITIONS_SQL, list(contexts)))
        body = self._answers.get((key, contexts, positions))
        if body is not None:
            self._answers.move_to_end((key, contexts, positions))
            self.hits += 1
        else:
            self.misses += 1
            async with snapshot(request) as conn:
                positions = tuple(await conn.fetchval(POSITIONS_SQL, list(contexts)))
                body = encode_json(await build(conn))
            self._answers[(key, contexts, positions)] = body
            while len(self._answers) > self.entries:
                self._answers.popitem(last=False)
        # the body is a T encoded once; the handler's ``Response[T]`` documents T
        return cast("Response[T]", Response(content=body, media_type="application/json"))
