"""The shared header rules on every memory command, one row per command (DESIGN.md, "One
contract, everywhere"; docs/memory.md).

- stale ``If-Match`` → 409 with ``current_version``, nothing appended (the commands that
  change an existing memory: reinforce, invalidate, erase, restore; erase keeps the key);
- an ``Idempotency-Key`` retry → the same status and body, ``Idempotent-Replayed: true``,
  nothing appended (every POST and DELETE, forget included);
- ``ETag`` = the memory's version: the log's last version of it and a GET's ETag;
- ``Location`` followed at once (no ``wait_for``) → 200.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.helpers import Api

BASE = "/api/v1/memory"


async def fresh(api: Api, *, invalidated: bool = False) -> dict[str, Any]:
    """A new memory (invalidated if asked), once its last event is projected."""
    created = await api.client.post(
        BASE, json={"agent_id": "agent-c", "content": "Contract note on $IBM"},
        headers=api.auth("operator"),
    )  # fmt: skip
    assert created.status_code == 201, created.text
    body = dict(created.json())
    if invalidated:
        done = await api.client.delete(
            f"{BASE}/{body['id']}", params={"reason": "setup"}, headers=api.auth("operator")
        )
        assert done.status_code == 200, done.text
        body = dict(done.json())
    return body


Send = Callable[[Api, dict[str, Any], dict[str, str]], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class Command:
    name: str
    send: Send
    invalidated_first: bool = False  # the command needs an invalidated memory
    changes_existing: bool = True


def _h(api: Api, headers: dict[str, str]) -> dict[str, str]:
    return {**api.auth("operator"), **headers}


COMMANDS = [
    Command(
        "record",
        lambda api, _, h: api.client.post(
            BASE, json={"agent_id": "agent-c", "content": "By the table"}, headers=_h(api, h)
        ),
        changes_existing=False,
    ),
    Command(
        "reinforce",
        lambda api, m, h: api.client.post(
            f"{BASE}/{m['id']}/reinforce", json={"value": 0.5}, headers=_h(api, h)
        ),
    ),
    Command(
        "invalidate",
        lambda api, m, h: api.client.delete(
            f"{BASE}/{m['id']}", params={"reason": "table"}, headers=_h(api, h)
        ),
    ),
    Command(
        "erase",
        lambda api, m, h: api.client.delete(
            f"{BASE}/{m['id']}", params={"reason": "table", "erase": "true"}, headers=_h(api, h)
        ),
    ),
    Command(
        "restore",
        lambda api, m, h: api.client.post(
            f"{BASE}/{m['id']}/restore", json={"reason": "table"}, headers=_h(api, h)
        ),
        invalidated_first=True,
    ),
]
CHANGES = [c for c in COMMANDS if c.changes_existing]


async def events(api: Api) -> int:
    return len(await api.fetch("SELECT 1 FROM memory_events"))


@pytest.mark.parametrize("command", CHANGES, ids=lambda c: c.name)
async def test_a_stale_if_match_is_409_with_the_current_version_and_appends_nothing(
    api: Api, command: Command
) -> None:
    memory = await fresh(api, invalidated=command.invalidated_first)
    before = await events(api)
    stale = memory["version"] - 1 if memory["version"] > 1 else memory["version"] + 5
    response = await command.send(api, memory, {"If-Match": f'"{stale}"'})
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["current_version"] == memory["version"]
    assert await events(api) == before
    keys = await api.fetch("SELECT 1 FROM memory_keys WHERE memory_id = $1::uuid", memory["id"])
    assert len(keys) == 1  # a refused erasure destroys nothing
    current = await command.send(api, memory, {"If-Match": f'"{memory["version"]}"'})
    assert current.status_code == 200, current.text


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
async def test_an_idempotent_retry_answers_the_same_and_appends_nothing(
    api: Api, command: Command
) -> None:
    memory = await fresh(api, invalidated=command.invalidated_first)
    headers = {"Idempotency-Key": f"contract-{command.name}"}
    first = await command.send(api, memory, headers)
    assert first.status_code in (200, 201), first.text
    after = await events(api)
    retry = await command.send(api, memory, headers)
    assert (retry.status_code, retry.json()) == (first.status_code, first.json())
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert await events(api) == after


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
async def test_the_etag_is_the_memorys_version_and_a_location_is_readable_at_once(
    api: Api, command: Command
) -> None:
    memory = await fresh(api, invalidated=command.invalidated_first)
    response = await command.send(api, memory, {})
    assert response.status_code in (200, 201), response.text
    body = response.json()
    [(stored,)] = await api.fetch(
        "SELECT max(originator_version) FROM memory_events WHERE originator_id = $1::uuid",
        body["id"],
    )
    assert response.headers["ETag"] == f'"{stored}"' == f'"{body["version"]}"'
    url = response.headers.get("Location", f"{BASE}/{body['id']}")
    shown = await api.client.get(url, headers=api.auth("viewer"))  # at once: no wait_for
    assert shown.status_code == 200, shown.text
    if command.name == "record":  # a new memory is read once its creation is projected
        assert shown.headers["ETag"] == response.headers["ETag"]
    # a change of an existing memory is read as changed with the command's position
    mine = await api.client.get(
        url,
        params={"wait_for": response.headers["Aimm-Position"]},
        headers=api.auth("viewer"),
    )
    assert mine.headers["ETag"] == response.headers["ETag"]


async def test_forget_takes_an_idempotency_key_and_no_if_match(api: Api) -> None:
    await fresh(api)
    url = f"{BASE}/agents/agent-c/forget"
    headers = {**api.auth("operator"), "Idempotency-Key": "forget-contract"}
    body = {"max_strength": 1.0, "reason": "contract"}
    first = await api.client.post(url, json=body, headers=headers)
    assert first.status_code == 200, first.text
    after = await events(api)
    retry = await api.client.post(url, json=body, headers=headers)
    assert retry.json() == first.json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert await events(api) == after
    other = await api.client.post(url, json={**body, "reason": "other"}, headers=headers)
    assert other.status_code == 422, other.text


async def test_an_idempotency_key_is_bound_to_the_query_too(api: Api) -> None:
    """``DELETE …`` and ``DELETE …?erase=true`` are different requests: reusing the key of an
    invalidation for an erasure is a 422, never a replay that silently skips the erasure."""
    memory = await fresh(api)
    url = f"{BASE}/{memory['id']}"
    key = {"Idempotency-Key": "query-bound-1"}
    first = await api.client.delete(url, params={"reason": "x"}, headers=_h(api, key))
    assert first.status_code == 200, first.text
    again = await api.client.delete(url, params={"reason": "x"}, headers=_h(api, key))
    assert again.headers.get("Idempotent-Replayed") == "true"
    erase = await api.client.delete(
        url, params={"reason": "x", "erase": "true"}, headers=_h(api, key)
    )
    assert erase.status_code == 422, erase.text
    assert erase.headers["content-type"].startswith("application/problem+json")
    # the same parameters in another order are the same request
    other = {"Idempotency-Key": "query-bound-2"}
    erased = await api.client.delete(f"{url}?reason=y&erase=true", headers=_h(api, other))
    assert erased.status_code == 200, erased.text
    reordered = await api.client.delete(f"{url}?erase=true&reason=y", headers=_h(api, other))
    assert reordered.headers.get("Idempotent-Replayed") == "true", reordered.text
