"""The shared header rules on every predictions command, one row per command (DESIGN.md,
"One contract, everywhere").

- an ``Idempotency-Key`` retry → the same status and body, ``Idempotent-Replayed: true``,
  nothing appended; the same key with another body → 422, nothing appended;
- ``ETag`` = the job's version: the same as the log's last version of it and as the
  ETag of a GET of it; ``Aimm-Position`` names the job's event;
- ``Location`` followed at once (no ``wait_for``, no sleep) → 200, twenty times in a row.

Both commands create a job (no command changes an existing one, so no ``If-Match``). No
worker runs here: jobs stay queued, so their versions move only by these commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import pytest

from tests.e2e.test_predictions_api import PREDICTIONS, ROWS, import_rows
from tests.helpers import Api


@dataclass(frozen=True)
class Command:
    name: str
    path: str
    body: dict[str, Any]
    other: dict[str, Any]  # another request body, for a key reused with it

    async def send(self, api: Api, headers: dict[str, str], body: Any = None) -> httpx.Response:
        return await api.client.post(
            f"{PREDICTIONS}/{self.path}",
            json=self.body if body is None else body,
            headers={**api.auth("operator"), **headers},
        )


COMMANDS = [
    Command(
        "run",
        "run",
        {"ticker": "SP500", "model": "ewma", "horizon": 3},
        {"ticker": "SP500", "model": "garch", "horizon": 3},
    ),
    Command(
        "backtest",
        "backtest",
        {"ticker": "SP500", "models": ["ewma"], "start": "2018-01-01", "end": "2018-03-01"},
        {"ticker": "SP500", "models": ["ewma"], "start": "2018-01-01", "end": "2018-04-01"},
    ),
]
ids = [c.name for c in COMMANDS]


async def events(api: Api) -> int:
    [row] = await api.fetch("SELECT count(*) AS n FROM predictions_events")
    return int(row["n"])


async def log_version(api: Api, aggregate_id: str) -> int:
    [row] = await api.fetch(
        "SELECT max(originator_version) AS v FROM predictions_events WHERE originator_id = $1",
        UUID(aggregate_id),
    )
    return int(row["v"])


@pytest.fixture
async def bars(api: Api) -> None:
    await import_rows(api, ROWS[-800:])


@pytest.mark.parametrize("command", COMMANDS, ids=ids)
async def test_an_idempotency_key_retry_returns_the_first_answer_and_appends_nothing(
    api: Api, bars: None, command: Command
) -> None:
    key = {"Idempotency-Key": f"contract-{command.name}"}
    first = await command.send(api, key)
    assert first.status_code == 202, first.text
    assert "Idempotent-Replayed" not in first.headers
    before = await events(api)
    retry = await command.send(api, key)
    assert retry.status_code == 202, retry.text
    assert retry.json() == first.json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.headers["ETag"] == first.headers["ETag"]
    assert retry.headers["Location"] == first.headers["Location"]
    assert await events(api) == before
    reused = await command.send(api, key, command.other)
    assert reused.status_code == 422, reused.text
    assert await events(api) == before


@pytest.mark.parametrize("command", COMMANDS, ids=ids)
async def test_the_etag_is_the_job_version(api: Api, bars: None, command: Command) -> None:
    response = await command.send(api, {})
    assert response.status_code == 202, response.text
    body = response.json()
    version = await log_version(api, body["id"])
    assert response.headers["ETag"] == f'"{version}"' and body["version"] == version
    shown = await api.client.get(
        f"{PREDICTIONS}/jobs/{body['id']}",
        params={"wait_for": response.headers["Aimm-Position"]},
        headers=api.auth("viewer"),
    )
    assert shown.status_code == 200, shown.text
    assert shown.headers["ETag"] == f'"{version}"'
    assert shown.json()["version"] == version


@pytest.mark.parametrize("command", COMMANDS, ids=ids)
async def test_a_location_is_readable_at_once(api: Api, bars: None, command: Command) -> None:
    for _ in range(20):
        response = await command.send(api, {})
        assert response.status_code == 202, response.text
        shown = await api.client.get(response.headers["Location"], headers=api.auth("viewer"))
        assert shown.status_code == 200, shown.text
        assert shown.json()["id"] == response.json()["id"]
        assert shown.json()["status"] == "queued"
