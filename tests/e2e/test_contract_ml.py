"""The shared header rules on every ML command, one row per command (DESIGN.md, "One
contract, everywhere").

- stale ``If-Match`` → 409 with ``current_version``, nothing appended (commands that
  change an existing aggregate: stop);
- an ``Idempotency-Key`` retry → the same status and body, ``Idempotent-Replayed: true``,
  nothing appended (every POST);
- ``ETag`` = the aggregate's version: the same as the log's last version of it and as
  the ETag of a GET of it;
- ``Location`` followed at once (no ``wait_for``, no sleep) → 200, twenty times in a
  row; and the SSE stream of a job just accepted opens at once.

No worker runs here: jobs stay queued, so their versions move only by these commands.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import pytest

from tests.e2e.test_training_api import DATASETS, JOBS, import_bars, served
from tests.helpers import Api

_names = itertools.count(1)


@dataclass(frozen=True)
class Command:
    """One ML command: how to send it (given a fresh dataset id) and what it touches."""

    name: str
    send: Callable[[Api, str, dict[str, str]], Awaitable[httpx.Response]]
    aggregate: Callable[[dict[str, Any]], str]  # the changed aggregate's id, from the body
    detail: Callable[[dict[str, Any]], str]  # where a GET shows that aggregate
    changes_existing: bool = False
    creates: bool = False


async def register_dataset(api: Api, _: str, headers: dict[str, str]) -> httpx.Response:
    body = {
        "name": f"contract-{next(_names)}",
        "tickers": ["ACME"],
        "start": "2020-01-01",
        "end": "2021-12-31",
    }
    return await api.client.post(DATASETS, json=body, headers={**api.auth("operator"), **headers})


async def train(api: Api, dataset_id: str, headers: dict[str, str]) -> httpx.Response:
    body = {"dataset_id": dataset_id, "hyperparameters": {"epochs": 2}}
    return await api.client.post(
        "/api/v1/ml/train", json=body, headers={**api.auth("operator"), **headers}
    )


async def stop(api: Api, dataset_id: str, headers: dict[str, str]) -> httpx.Response:
    queued = await train(api, dataset_id, {})
    assert queued.status_code == 202, queued.text
    return await api.client.post(
        f"{JOBS}/{queued.json()['id']}/stop",
        json={"reason": "contract"},
        headers={**api.auth("operator"), **headers},
    )


COMMANDS = [
    Command(
        "register dataset",
        register_dataset,
        aggregate=lambda body: body["id"],
        detail=lambda body: f"{DATASETS}/{body['id']}",
        creates=True,
    ),
    Command(
        "train",
        train,
        aggregate=lambda body: body["id"],
        detail=lambda body: f"{JOBS}/{body['id']}",
        creates=True,
    ),
    Command(
        "stop",
        stop,
        aggregate=lambda body: body["id"],
        detail=lambda body: f"{JOBS}/{body['id']}",
        changes_existing=True,
    ),
]
ids = [c.name for c in COMMANDS]


async def events(api: Api) -> int:
    [row] = await api.fetch("SELECT count(*) AS n FROM training_events")
    return int(row["n"])


async def log_version(api: Api, aggregate_id: str) -> int:
    [row] = await api.fetch(
        "SELECT max(originator_version) AS v FROM training_events WHERE originator_id = $1",
        UUID(aggregate_id),
    )
    return int(row["v"])


@pytest.fixture
async def dataset_id(api: Api) -> str:
    await import_bars(api)
    response = await register_dataset(api, "", {})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.mark.parametrize(
    "command", [c for c in COMMANDS if c.changes_existing], ids=lambda c: c.name
)
async def test_a_stale_if_match_is_409_with_the_current_version_and_appends_nothing(
    api: Api, dataset_id: str, command: Command
) -> None:
    queued = await train(api, dataset_id, {})
    job_id = queued.json()["id"]
    current = await log_version(api, job_id)
    before = await events(api)
    stale = await api.client.post(
        f"{JOBS}/{job_id}/stop",
        json={"reason": "stale"},
        headers={**api.auth("operator"), "If-Match": f'"{current + 5}"'},
    )
    assert stale.status_code == 409, stale.text
    assert stale.headers["content-type"].startswith("application/problem+json")
    assert stale.json()["current_version"] == current
    assert stale.json()["expected_version"] == current + 5
    assert stale.headers["ETag"] == f'"{current}"'
    assert await events(api) == before
    # the current version is accepted
    fresh = await api.client.post(
        f"{JOBS}/{job_id}/stop",
        json={"reason": "fresh"},
        headers={**api.auth("operator"), "If-Match": f'"{current}"'},
    )
    assert fresh.status_code == 200, fresh.text
    assert await events(api) > before


@pytest.mark.parametrize("command", COMMANDS, ids=ids)
async def test_an_idempotency_key_retry_returns_the_first_answer_and_appends_nothing(
    api: Api, dataset_id: str, command: Command
) -> None:
    key = {"Idempotency-Key": f"contract-{command.name.replace(' ', '-')}"}
    first = await command.send(api, dataset_id, key)
    assert first.status_code in (200, 201, 202), first.text
    assert "Idempotent-Replayed" not in first.headers
    if command.changes_existing:  # the retry goes to the same job
        path, body = str(first.request.url.path), {"reason": "contract"}
        before = await events(api)
        retry = await api.client.post(path, json=body, headers={**api.auth("operator"), **key})
    else:
        before = await events(api)
        # the same request again: for a dataset, the same name too
        retry = await api.client.post(
            str(first.request.url.path),
            content=first.request.content,
            headers={**api.auth("operator"), **key, "Content-Type": "application/json"},
        )
    assert retry.status_code == first.status_code, retry.text
    assert retry.json() == first.json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.headers["ETag"] == first.headers["ETag"]
    assert await events(api) == before


@pytest.mark.parametrize("command", COMMANDS, ids=ids)
async def test_the_etag_is_the_aggregate_version(
    api: Api, dataset_id: str, command: Command
) -> None:
    response = await command.send(api, dataset_id, {})
    assert response.status_code in (200, 201, 202), response.text
    body = response.json()
    version = await log_version(api, command.aggregate(body))
    assert response.headers["ETag"] == f'"{version}"'
    assert body["version"] == version
    shown = await api.client.get(
        command.detail(body),
        params={"wait_for": response.headers["Aimm-Position"]},
        headers=api.auth("viewer"),
    )
    assert shown.status_code == 200, shown.text
    assert shown.headers["ETag"] == f'"{version}"'
    assert shown.json()["version"] == version


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.creates], ids=lambda c: c.name)
async def test_a_location_is_readable_at_once(api: Api, dataset_id: str, command: Command) -> None:
    for _ in range(20):
        response = await command.send(api, dataset_id, {})
        assert response.status_code in (201, 202), response.text
        location = response.headers["Location"]
        assert location == command.detail(response.json())
        shown = await api.client.get(location, headers=api.auth("viewer"))
        assert shown.status_code == 200, shown.text
        assert shown.json()["id"] == response.json()["id"]


async def test_the_metrics_stream_of_a_job_just_accepted_opens_at_once(
    api: Api, dataset_id: str
) -> None:
    headers = {**api.auth("viewer"), "Accept": "text/event-stream"}
    async with served(api.url) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        for _ in range(20):
            accepted = await client.post(
                "/api/v1/ml/train",
                json={"dataset_id": dataset_id, "hyperparameters": {"epochs": 2}},
                headers=api.auth("operator"),
            )
            assert accepted.status_code == 202, accepted.text
            path = f"{accepted.headers['Location']}/metrics"
            async with client.stream("GET", path, headers=headers) as stream:
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
