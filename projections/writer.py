"""Batched writes that keep event order: runs of one statement go out as one executemany."""

from __future__ import annotations

from typing import Any

import asyncpg


class OrderedWriter:
    """Collects (statement, arguments) in event order and writes them in as few round
    trips as order allows: consecutive uses of the same statement are one executemany."""

    def __init__(self) -> None:
        self._runs: list[tuple[str, list[tuple[Any, ...]]]] = []

    def add(self, statement: str, *args: Any) -> None:
        if self._runs and self._runs[-1][0] == statement:
            self._runs[-1][1].append(args)
        else:
            self._runs.append((statement, [args]))

    async def flush(self, conn: asyncpg.Connection) -> None:
        for statement, rows in self._runs:
            if len(rows) == 1:
                await conn.execute(statement, *rows[0])
            else:
                await conn.executemany(statement, rows)
        self._runs.clear()
