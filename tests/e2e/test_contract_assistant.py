"""The shared header rules on every assistant command, one row per command (DESIGN.md, "One
contract, everywhere"; docs/assistant.md):

- stale ``If-Match`` → 409 with ``current_version``, nothing appended (every command that
  changes an existing aggregate: the configuration or a prompt);
- an ``Idempotency-Key`` retry → the same status and body, ``Idempotent-Replayed: true``,
  nothing appended (every POST, PUT and DELETE);
- ``ETag`` = the aggregate's version: the log's last version of it, and a GET's ETag;
- ``Location`` followed at once (no ``wait_for``, no sleep) → 200 with the same ETag.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import pytest

from domain.assistant.config import CONFIG_ID
from tests.helpers import Api

BASE = "/api/v1/ai-assistant"
PROMPTS = f"{BASE}/prompts"
EMBEDDED = "embedded:smollm2-135m-instruct"
_n = itertools.count(1)


async def prepared(api: Api) -> str:
    """A role ``base`` and its prompt with three versions, ``staging`` moved from 1 to 2."""
    role = await api.client.post(
        f"{BASE}/roles", json={"role": "base", "model": EMBEDDED}, headers=api.auth()
    )
    assert role.status_code == 201, role.text
    created = await api.client.post(
        PROMPTS, json={"role": "base", "name": "system"}, headers=api.auth()
    )
    prompt_id: str = created.json()["id"]
    for n in (1, 2, 3):
        body = {"system_template": f"v{n}", "user_template": "", "message": f"v{n}"}
        done = await api.client.put(f"{PROMPTS}/{prompt_id}", json=body, headers=api.auth())
        assert done.status_code == 201, done.text
    for version in (1, 2):
        moved = await api.client.put(
            f"{PROMPTS}/{prompt_id}/labels/staging", json={"version": version}, headers=api.auth()
        )
        assert moved.status_code == 200, moved.text
    return prompt_id


Send = Callable[[Api, str, dict[str, str]], Awaitable[httpx.Response]]


def request(method: str, path: str, body: Callable[[dict[str, str]], Any] | None = None) -> Send:
    """A command as an operator; ``body`` is given the headers (a retry with the same
    Idempotency-Key must send the same body, any other call a new one)."""

    async def send(api: Api, prompt_id: str, headers: dict[str, str]) -> httpx.Response:
        return await api.client.request(
            method,
            path.format(id=prompt_id),
            json=body(headers) if body is not None else None,
            headers={**api.auth("operator"), **headers},
        )

    return send


def unique(headers: dict[str, str]) -> str:
    """The same for a retry with the same Idempotency-Key, new for any call without one."""
    return headers.get("Idempotency-Key", f"n{next(_n)}").lower().replace(" ", "-")[-20:]


@dataclass(frozen=True)
class Command:
    name: str
    send: Send
    on_prompt: bool = True  # the aggregate is the prompt (else the configuration)
    changes_existing: bool = True
    creates: bool = False
    test_run: bool = False  # the aggregate is a new PromptTestRun (its id in the body)


COMMANDS = [
    Command(
        "add role",
        request("POST", f"{BASE}/roles", lambda h: {"role": f"r-{unique(h)}", "model": EMBEDDED}),
        on_prompt=False,
        creates=True,
    ),
    Command(
        "update config",
        request(
            "PUT",
            f"{BASE}/config",
            lambda h: {
                "roles": [{"role": "base", "settings": {"max_tokens": 2000 + len(unique(h))}}],
                "reason": "table",
            },
        ),
        on_prompt=False,
    ),
    Command(
        "create prompt",
        request("POST", PROMPTS, lambda h: {"role": "base", "name": f"p-{unique(h)}"}),
        changes_existing=False,
        creates=True,
    ),
    Command(
        "commit version",
        request(
            "PUT",
            PROMPTS + "/{id}",
            lambda h: {"system_template": f"t {unique(h)}", "user_template": "", "message": "m"},
        ),
        creates=True,
    ),
    Command(
        "move label", request("PUT", PROMPTS + "/{id}/labels/staging", lambda h: {"version": 3})
    ),
    Command("remove label", request("DELETE", PROMPTS + "/{id}/labels/staging")),
    Command(
        "rollback", request("POST", PROMPTS + "/{id}/rollback", lambda h: {"label": "staging"})
    ),
    Command(
        "run prompt test",
        request(
            "POST",
            PROMPTS + "/{id}/test",
            lambda h: {
                "versions": ["staging"],
                "inputs": [{"values": {}}],
                "settings": {"temperature": 0, "max_tokens": 4},  # the real model: kept short
                "reason": unique(h),
            },
        ),
        changes_existing=False,
        creates=True,
        test_run=True,
    ),
]
CHANGES = [c for c in COMMANDS if c.changes_existing]


async def events(api: Api) -> int:
    [(count,)] = await api.fetch("SELECT count(*) FROM assistant_events")
    return int(count)


def aggregate_of(command: Command, prompt_id: str, body: dict[str, Any]) -> UUID:
    if command.test_run:
        return UUID(body["id"])
    if not command.on_prompt:
        return CONFIG_ID
    return UUID(body.get("prompt_id") or body.get("id") or prompt_id)


def shown_at(command: Command, aggregate: UUID, response: httpx.Response) -> str:
    if command.test_run:
        return response.headers["location"]
    return f"{BASE}/config" if aggregate == CONFIG_ID else f"{PROMPTS}/{aggregate}"


@pytest.mark.parametrize("command", CHANGES, ids=lambda c: c.name)
async def test_a_stale_if_match_is_409_with_the_current_version_and_appends_nothing(
    api: Api, command: Command
) -> None:
    prompt_id = await prepared(api)
    before = await events(api)
    response = await command.send(api, prompt_id, {"If-Match": '"1"'})
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    current = response.json()["current_version"]
    assert current > 1 and response.headers["etag"] == f'"{current}"'
    assert await events(api) == before
    fresh = await command.send(api, prompt_id, {"If-Match": f'"{current}"'})
    assert fresh.status_code in (200, 201), fresh.text


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
async def test_an_idempotency_key_retry_replays_and_appends_nothing(
    api: Api, command: Command
) -> None:
    prompt_id = await prepared(api)
    headers = {"Idempotency-Key": "contract-" + command.name.replace(" ", "-")}
    first = await command.send(api, prompt_id, headers)
    assert first.status_code in (200, 201), first.text
    after_first = await events(api)
    again = await command.send(api, prompt_id, headers)
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["etag"] == first.headers["etag"]
    assert await events(api) == after_first


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
async def test_the_etag_is_the_aggregates_version(api: Api, command: Command) -> None:
    prompt_id = await prepared(api)
    response = await command.send(api, prompt_id, {})
    assert response.status_code in (200, 201), response.text
    aggregate = aggregate_of(command, prompt_id, response.json())
    [(stored,)] = await api.fetch(
        "SELECT max(originator_version) FROM assistant_events WHERE originator_id = $1",
        aggregate,
    )
    assert response.headers["etag"] == f'"{stored}"'
    shown = await api.client.get(
        shown_at(command, aggregate, response),
        params={"wait_for": response.headers["Aimm-Position"]},
        headers=api.auth("viewer"),
    )
    assert shown.status_code == 200, shown.text
    assert shown.headers["etag"] == response.headers["etag"]


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.creates], ids=lambda c: c.name)
async def test_the_location_is_readable_at_once(api: Api, command: Command) -> None:
    prompt_id = await prepared(api)
    for _ in range(5):
        response = await command.send(api, prompt_id, {})
        assert response.status_code == 201, response.text
        shown = await api.client.get(response.headers["location"], headers=api.auth("viewer"))
        assert shown.status_code == 200, shown.text
        assert shown.headers["etag"] == response.headers["etag"]
