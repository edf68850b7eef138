"""The ``application.ports.PendingScores`` of PostgreSQL: unscored predictions of a ticker.

The scorer asks when new bars arrive at log position ``p``. The answer comes from the
predictions read model (``rm_predictions``) once the ``predictions`` projection has
applied every event before ``p`` (``aimm_projection_positions``), so no prediction made
before the bars is missed; until then it waits (polling, bounded) and raises
``TimeoutError``, and the scorer retries the event later from its tracked position.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

PROJECTION = "predictions"
POLL_SECONDS = 0.2


class PostgresPendingScores:
    def __init__(self, datastore: Any, timeout: float = 30.0) -> None:
        self.datastore = datastore
        self.timeout = timeout

    def _position(self) -> int:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT position FROM aimm_projection_positions "
                "WHERE projection = %s AND context = 'predictions'",
                (PROJECTION,),
            )
            row = curs.fetchone()
        return int(row["position"]) if row else -1

    def unscored(self, ticker: str, through_position: int) -> list[UUID]:
        deadline = time.monotonic() + self.timeout
        while self._position() < through_position:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the predictions read model has not reached position {through_position} "
                    f"within {self.timeout:g}s (is the projector running?)"
                )
            time.sleep(POLL_SECONDS)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT id FROM rm_predictions WHERE ticker = %s AND scored_steps < horizon "
                "ORDER BY cutoff, id",
                (ticker,),
            )
            return [row["id"] for row in curs.fetchall()]
