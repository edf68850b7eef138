"""The e2e fixture: the real app on a fresh database, with a key for each role."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.helpers import Api, running_api


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    async with running_api(database_url) as api:
        yield api
