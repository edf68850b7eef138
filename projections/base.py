"""What a read model is to the projector: tables, and a batch apply function.

A projection names the contexts it follows and the tables it owns, with their DDL
written against placeholders (``{models}``) so the same projection can be built into
the live tables, into fresh tables for a rebuild, or into an as-of schema. Its
``apply`` receives a whole batch of events in log order and writes the changes
through the connection it is given, inside the projector's transaction; folding a
batch in memory before writing (and using COPY for new rows) is what makes
rebuilds fast.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar, Protocol

import asyncpg

from projections.events import Event


class Projection(Protocol):
    name: ClassVar[str]
    contexts: ClassVar[tuple[str, ...]]
    # logical table name -> DDL statements using {logical} placeholders
    tables: ClassVar[Mapping[str, Sequence[str]]]

    async def apply(
        self, conn: asyncpg.Connection, tables: Mapping[str, str], events: Sequence[Event]
    ) -> None: ...


def live_tables(projection: Projection) -> dict[str, str]:
    """Logical table name -> the live table the query functions read."""
    return {logical: f"rm_{logical}" for logical in projection.tables}


def ddl(projection: Projection, tables: Mapping[str, str]) -> list[str]:
    return [
        statement.format(**tables)
        for statements in projection.tables.values()
        for statement in statements
    ]
