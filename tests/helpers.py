"""Test helpers: an app client against a fresh database, and keys for each role."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.keycache import BOOTSTRAP_ADMIN, BOOTSTRAP_CREATOR
from infrastructure import keys
from infrastructure.settings import Settings

ADMIN_KEY = "test-admin-key-0123456789"


@dataclass
class Api:
    """An HTTP client for the real app, with a bearer key per role."""

    client: AsyncTestClient  # type: ignore[type-arg]
    url: str
    keys: dict[str, str] = field(default_factory=dict)

    def auth(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    async def fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        """Rows of a query on the test's database (to check what is stored)."""
        conn = await asyncpg.connect(self.url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def record_bootstrap_key(self, key: str) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            await keys.ensure_key(
                conn, key, name=BOOTSTRAP_ADMIN, roles=["admin"], created_by=BOOTSTRAP_CREATOR
            )
        finally:
            await conn.close()

    async def key_for(self, role: str, agent_id: str | None = None, name: str = "") -> str:
        return await new_key(self.url, role, agent_id=agent_id, name=name)


async def new_key(url: str, role: str, *, agent_id: str | None = None, name: str = "") -> str:
    """A new key with ``role`` on the database at ``url`` (as ``aimm keys create`` makes
    one); its plaintext."""
    conn = await asyncpg.connect(url)
    try:
        key, _ = await keys.create_key(
            conn, roles=[role], agent_id=agent_id, name=name or f"test-{role}"
        )
    finally:
        await conn.close()
    return key


@contextlib.asynccontextmanager
async def running_api(url: str, *, projector: bool = True) -> AsyncIterator[Api]:
    settings = Settings.from_env({"AIMM_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY})
    app = create_app(settings, url, run_projector=projector)
    async with AsyncTestClient(app, timeout=30) as client:
        api = Api(client, url, {"admin": ADMIN_KEY})
        # recorded as an event at start, as a server started with the setting does
        await api.record_bootstrap_key(ADMIN_KEY)
        for role in ("operator", "viewer", "auditor"):
            api.keys[role] = await api.key_for(role)
        yield api
