"""The shared header rules on every registry and market-data command, one row per command
(DESIGN.md, "One contract, everywhere"; ``docs/registry.md``):

- stale ``If-Match`` → 409 with ``current_version``, nothing appended (every command that
  changes an existing aggregate);
- an ``Idempotency-Key`` retry → the same status and body, ``Idempotent-Replayed: true``,
  nothing appended (every POST and PATCH);
- ``ETag`` = the aggregate's version: the log's last version of it, and the ETag of a GET;
- ``Location`` followed at once (no ``wait_for``, no sleep) → 200.

And: the model detail is never torn under concurrent deploys; ``/metrics`` takes any valid
key, agents' included.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import pytest

from domain.market_data import market_data_id
from tests.helpers import Api

MODELS = "/api/v1/ai/models"
BARS = [
    {"date": "2024-01-02", "open": 10, "high": 11, "low": 9, "close": 10.5, "volume": 100},
]
ENVIRONMENTS = ("production", "staging")
_names = itertools.count(1)


async def new_model(api: Api, versions: int = 1) -> str:
    created = await api.client.post(
        MODELS, json={"name": f"contract-{next(_names)}", "kind": "ml"}, headers=api.auth()
    )
    assert created.status_code == 201, created.text
    model_id: str = created.json()["id"]
    for _ in range(versions):
        added = await api.client.post(
            f"{MODELS}/{model_id}/versions", json={"artifact": "s3://a"}, headers=api.auth()
        )
        assert added.status_code == 201, added.text
    return model_id


Send = Callable[[Api, str, dict[str, str]], Awaitable[httpx.Response]]


def post(path: str, body: dict[str, Any], method: str = "POST") -> Send:
    async def send(api: Api, model_id: str, headers: dict[str, str]) -> httpx.Response:
        return await api.client.request(
            method,
            path.format(id=model_id),
            json=body,
            headers={**api.auth("operator"), **headers},
        )

    return send


async def register_model(api: Api, model_id: str, headers: dict[str, str]) -> httpx.Response:
    # a retry sends the same body; each call without a key registers a new name
    name = f"new-{model_id}" if "Idempotency-Key" in headers else f"new-{next(_names)}"
    body = {"name": name, "kind": "llm"}
    return await api.client.post(MODELS, json=body, headers={**api.auth("operator"), **headers})


async def import_bars(api: Api, model_id: str, headers: dict[str, str]) -> httpx.Response:
    ticker = f"T{model_id[:8].upper()}"
    return await api.client.post(
        f"/api/v1/market-data/{ticker}/bars",
        json={"rows": BARS},
        headers={**api.auth("operator"), **headers},
    )


@dataclass(frozen=True)
class Command:
    name: str
    send: Send
    versions: int = 2  # versions of the model before the command
    changes_existing: bool = True
    creates: bool = False
    market: bool = False  # the aggregate is the ticker's MarketData, not the model


COMMANDS = [
    Command("register model", register_model, changes_existing=False, creates=True),
    Command("update model", post(MODELS + "/{id}", {"description": "x"}, "PATCH")),
    Command(
        "register version", post(MODELS + "/{id}/versions", {"artifact": "s3://b"}), creates=True
    ),
    Command("record metrics", post(MODELS + "/{id}/versions/1/metrics", {"metrics": {"a": 1}})),
    Command("stage", post(MODELS + "/{id}/versions/1/stage", {"status": "archived"})),
    Command("deploy", post(MODELS + "/{id}/deploy", {"version": 1})),
    Command("rollback", post(MODELS + "/{id}/rollback", {"version": 1}), versions=-2),
    Command("import bars", import_bars, market=True),
]


async def prepared(api: Api, command: Command) -> str:
    model_id = await new_model(api, abs(command.versions))
    if command.versions < 0:  # a rollback needs two deploys to go back from
        for version in (1, 2):
            deployed = await api.client.post(
                f"{MODELS}/{model_id}/deploy", json={"version": version}, headers=api.auth()
            )
            assert deployed.status_code == 200, deployed.text
    return model_id


async def event_count(api: Api) -> int:
    rows = await api.fetch(
        "SELECT (SELECT count(*) FROM registry_events) + (SELECT count(*) FROM "
        "predictions_events) AS n"
    )
    return int(rows[0]["n"])


async def aggregate_version(api: Api, command: Command, model_id: str, body: Any) -> int:
    table = "predictions_events" if command.market else "registry_events"
    if command.market:
        aggregate = market_data_id(body["ticker"])
    else:
        aggregate = UUID(body.get("model_id") or body.get("id") or model_id)
    rows = await api.fetch(
        f"SELECT max(originator_version) AS v FROM {table} WHERE originator_id = $1", aggregate
    )
    return int(rows[0]["v"])


def ids(command: Command) -> str:
    return command.name


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.changes_existing], ids=ids)
async def test_a_stale_if_match_is_409_with_the_current_version(api: Api, command: Command) -> None:
    model_id = await prepared(api, command)
    if command.market:
        first = await command.send(api, model_id, {})
        assert first.status_code == 201, first.text
    before = await event_count(api)
    response = await command.send(api, model_id, {"If-Match": '"1"'})
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["current_version"] > 1
    assert response.headers["etag"] == f'"{problem["current_version"]}"'
    assert await event_count(api) == before


@pytest.mark.parametrize("command", COMMANDS, ids=ids)
async def test_an_idempotency_key_retry_replays_and_appends_nothing(
    api: Api, command: Command
) -> None:
    model_id = await prepared(api, command)
    headers = {"Idempotency-Key": "contract-" + command.name.replace(" ", "-")}
    first = await command.send(api, model_id, headers)
    assert first.status_code in (200, 201), first.text
    after_first = await event_count(api)
    again = await command.send(api, model_id, headers)
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert await event_count(api) == after_first


@pytest.mark.parametrize("command", COMMANDS, ids=ids)
async def test_the_etag_is_the_aggregates_version(api: Api, command: Command) -> None:
    model_id = await prepared(api, command)
    response = await command.send(api, model_id, {})
    assert response.status_code in (200, 201), response.text
    body = response.json()
    version = await aggregate_version(api, command, model_id, body)
    assert response.headers["etag"] == f'"{version}"'
    if command.market:
        return
    shown = await api.client.get(
        f"{MODELS}/{body.get('model_id') or body['id']}",
        params={"wait_for": response.headers["Aimm-Position"]},
        headers=api.auth("viewer"),
    )
    assert shown.headers["etag"] == response.headers["etag"]
    assert shown.json()["version"] == version


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.creates], ids=ids)
async def test_the_location_is_readable_at_once(api: Api, command: Command) -> None:
    model_id = await prepared(api, command)
    for _ in range(10):
        response = await command.send(api, model_id, {})
        assert response.status_code == 201, response.text
        shown = await api.client.get(response.headers["location"], headers=api.auth("viewer"))
        assert shown.status_code == 200, shown.text
        assert shown.headers["etag"] == response.headers["etag"]


async def test_a_version_read_has_its_metrics_history_and_lineage(api: Api) -> None:
    model_id = await new_model(api, 1)
    path = f"{MODELS}/{model_id}/versions/1"
    recorded = await api.client.post(
        f"{path}/metrics", json={"metrics": {"acc": 0.7}}, headers=api.auth()
    )
    assert recorded.status_code == 201, recorded.text
    shown = await api.client.get(
        path, params={"wait_for": recorded.headers["Aimm-Position"]}, headers=api.auth("viewer")
    )
    body = shown.json()
    assert (body["version"], body["model_version"], body["model_id"]) == (1, 3, model_id)
    assert [m["metrics"] for m in body["metrics_history"]] == [{"acc": 0.7}]
    assert "lineage" in body and shown.headers["etag"] == '"3"'
    missing = await api.client.get(f"{MODELS}/{model_id}/versions/9", headers=api.auth())
    assert missing.status_code == 404


def torn(detail: dict[str, Any], etag: str) -> list[str]:
    """What a torn read would break: the model's version (ETag), its versions' active
    environments, its ``active`` map and its deployment history must tell one story."""
    broken = []
    if etag != f'"{detail["version"]}"':
        broken.append("ETag is not the detail's version")
    from_versions = {e: v["version"] for v in detail["versions"] for e in v["environments"]}
    if from_versions != detail["active"]:
        broken.append("versions[*].environments disagree with active")
    last: dict[str, int] = {}
    for d in detail["deployments"]:
        last[d["environment"]] = d["version"]
    if last != detail["active"]:
        broken.append("the last deployment per environment disagrees with active")
    # 1 registration + 2 versions + one event per deployment: the version counts them.
    if detail["version"] != 3 + len(detail["deployments"]):
        broken.append("the model's version does not count its deployments")
    return broken


async def test_the_detail_is_never_torn_under_concurrent_deploys(api: Api) -> None:
    model_id = await new_model(api, 2)
    deploys = 40
    done = asyncio.Event()

    async def deploy() -> None:
        try:
            for i in range(deploys):
                response = await api.client.post(
                    f"{MODELS}/{model_id}/deploy",
                    # each deploy changes its environment: prod 1, staging 1, prod 2, ...
                    json={"version": 1 + i // 2 % 2, "environment": ENVIRONMENTS[i % 2]},
                    headers=api.auth("operator"),
                )
                assert response.status_code == 200, response.text
        finally:
            done.set()

    async def read() -> list[str]:
        problems: list[str] = []
        seen: set[int] = set()
        while not done.is_set() or not seen:
            shown = await api.client.get(f"{MODELS}/{model_id}", headers=api.auth("viewer"))
            assert shown.status_code == 200, shown.text
            detail = shown.json()
            seen.add(detail["version"])
            problems += torn(detail, shown.headers["etag"])
        return problems

    _, problems = await asyncio.gather(deploy(), read())
    assert problems == []


async def test_metrics_take_every_valid_key_agents_included(api: Api) -> None:
    agent = await api.key_for("agent", agent_id="agent-m")
    for key in (agent, api.keys["viewer"], api.keys["auditor"]):
        response = await api.client.get("/metrics", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200, response.text
        assert "aimm_projection_lag_events" in response.text
    assert (await api.client.get("/metrics")).status_code == 401
    unknown = await api.client.get("/metrics", headers={"Authorization": "Bearer nope-nope"})
    assert unknown.status_code == 401
