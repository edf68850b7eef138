"""What the benchmarks share: a PostgreSQL server and a fresh database to work in."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from infrastructure.postgres import embedded_server, with_database


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """``AIMM_DATABASE_URL``'s server, or the embedded one in a temporary directory."""
    url = os.environ.get("AIMM_DATABASE_URL")
    if url:
        yield url
        return
    tmp = Path(tempfile.mkdtemp(prefix="aimm-bench-"))
    tmp.chmod(0o755)  # the embedded server may run as its own system user
    try:
        with embedded_server(tmp / "pg") as embedded_url:
            yield embedded_url
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    name = f"aimm_bench_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(with_database(server_url, "postgres"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(server_url, name)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
