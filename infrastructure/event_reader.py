"""The ``application.ports.EventReader`` of PostgreSQL: many aggregates' events at once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

CHUNK = 5000


class PostgresEventReader:
    """Reads one context's events table in chunks of ``CHUNK`` aggregates a query."""

    def __init__(self, datastore: Any, table: str) -> None:
        self.datastore, self.table = datastore, table

    def stored_events(self, originator_ids: Sequence[UUID]) -> Iterator[StoredEvent]:
        ids = list(originator_ids)
        for start in range(0, len(ids), CHUNK):
            with self.datastore.transaction(commit=False) as curs:
                curs.execute(
                    "SELECT originator_id, originator_version, topic, state FROM "
                    f"{self.table} WHERE originator_id = ANY(%s) "
                    "ORDER BY originator_id, originator_version",
                    (ids[start : start + CHUNK],),
                )
                rows = curs.fetchall()
            for r in rows:
                yield StoredEvent(
                    r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"])
                )
