"""The audit surface over HTTP: raw events, as-of replays and chain verification."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import asyncpg

from api.pagination import encode_cursor
from domain.claims import UniqueClaim
from domain.metadata import acting_as
from tests.helpers import Api

MODELS = "/api/v1/ai/models"
EVENTS = "/api/v1/audit/events"
VERIFY = "/api/v1/audit/verify"


def aggregate_path(aggregate_id: object) -> str:
    return f"/api/v1/audit/aggregates/{aggregate_id}"


def is_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    return body


async def register(api: Api, name: str, **headers: str) -> tuple[dict[str, Any], str]:
    response = await api.client.post(
        MODELS,
        json={"name": name, "kind": "ml", "description": "first"},
        headers={**api.auth("operator"), **headers},
    )
    assert response.status_code == 201, response.text
    return response.json(), response.headers["aimm-position"]


async def describe(api: Api, model_id: str, description: str) -> str:
    response = await api.client.patch(
        f"{MODELS}/{model_id}", json={"description": description}, headers=api.auth("operator")
    )
    assert response.status_code == 200, response.text
    return str(response.headers["aimm-position"])


async def claim_in(api: Api, context: str) -> str:
    """Append an event to another context's log through its real application."""
    app = api.client.app.state.contexts[context]

    def save() -> int:
        with acting_as("system-test", "corr-other"):
            recordings = app.save(UniqueClaim.claim("audit-test", uuid4().hex, "x"))
        return max(r.notification.id for r in recordings)

    return f"{context}:{await asyncio.to_thread(save)}"


async def events(api: Api, role: str = "auditor", **params: Any) -> list[dict[str, Any]]:
    response = await api.client.get(EVENTS, params={"limit": 500, **params}, headers=api.auth(role))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None
    items: list[dict[str, Any]] = body["items"]
    return items


def stamp(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["timestamp"])


async def raw_count(api: Api) -> int:
    conn = await asyncpg.connect(api.url)
    try:
        total = 0
        for context in ("registry", "training", "predictions", "memory", "assistant"):
            total += await conn.fetchval(f"SELECT count(*) FROM {context}_events")
        return total
    finally:
        await conn.close()


async def test_only_auditors_and_admins_may_use_the_audit_endpoints(api: Api) -> None:
    model, position = await register(api, "roles-model")
    paths = (EVENTS, VERIFY, aggregate_path(model["id"]))
    for path in paths:
        is_problem(await api.client.get(path), 401)
        for role in ("viewer", "operator"):
            problem = is_problem(await api.client.get(path, headers=api.auth(role)), 403)
            assert "auditor" in problem["detail"]
        for role in ("auditor", "admin"):
            params = {"wait_for": position} if path == EVENTS else {}
            response = await api.client.get(path, params=params, headers=api.auth(role))
            assert response.status_code == 200, response.text


def is_key(event: dict[str, Any]) -> bool:
    return str(event["type"]).startswith("ApiKey.")


async def test_items_are_envelopes_with_principal_and_correlation_id(api: Api) -> None:
    model, position = await register(api, "traced", **{"X-Correlation-ID": "audit-corr-42"})
    found = await events(api, correlation_id="audit-corr-42", wait_for=position)
    assert [e["type"] for e in found] == ["Model.Registered", "UniqueClaim.Claimed"]
    first = found[0]
    assert set(first) == {
        "event_id",
        "context",
        "position",
        "aggregate_id",
        "aggregate_version",
        "type",
        "topic",
        "timestamp",
        "metadata",
        "payload",
    }
    assert first["metadata"] == {"principal": "test-operator", "correlation_id": "audit-corr-42"}
    assert first["aggregate_id"] == model["id"] and first["aggregate_version"] == 1
    assert first["topic"] == "domain.registry.model:Model.Registered"
    assert first["payload"]["name"] == "traced" and first["payload"]["description"] == "first"
    # the fixture's API keys are events of the registry log too (ApiKey.Created, by the
    # system that made them): the test's own events are the rest
    everything = [e for e in await events(api, wait_for=position) if not is_key(e)]
    assert [e for e in everything if e["metadata"]["correlation_id"] == "audit-corr-42"] == found
    assert await events(api, principal="test-operator") == everything


async def test_filters_by_context_type_aggregate_and_time(api: Api) -> None:
    a, _ = await register(api, "model-a")
    b, _ = await register(api, "model-b")
    await describe(api, a["id"], "second")
    training = await claim_in(api, "training")
    position = await describe(api, b["id"], "second")
    await events(api, wait_for=training)
    everything = await events(api, wait_for=position)

    registry = await events(api, context="registry")
    assert {e["context"] for e in registry} == {"registry"}
    assert [e["position"] for e in registry] == sorted(e["position"] for e in registry)
    assert len([e for e in registry if not is_key(e)]) == 6
    assert [e["type"] for e in registry if is_key(e)] == ["ApiKey.Created"] * 4  # the fixture's
    assert [(e["context"], e["type"]) for e in await events(api, context="training")] == [
        ("training", "UniqueClaim.Claimed")
    ]

    registered = await events(api, type="Model.Registered")
    assert [e["aggregate_id"] for e in registered] == [a["id"], b["id"]]
    of_a = await events(api, aggregate_id=a["id"])
    assert [(e["type"], e["aggregate_version"]) for e in of_a] == [
        ("Model.Registered", 1),
        ("Model.DetailsUpdated", 2),
    ]
    both = await events(api, aggregate_id=a["id"], type="Model.DetailsUpdated", context="registry")
    assert [e["payload"]["description"] for e in both] == ["second"]
    assert await events(api, type="Model.Nothing") == []

    middle = everything[len(everything) // 2]
    at = stamp(middle)
    since = await events(api, since=middle["timestamp"])
    until = await events(api, until=middle["timestamp"])
    assert since == [e for e in everything if stamp(e) >= at]
    assert until == [e for e in everything if stamp(e) <= at]
    assert since[0] == middle and until[-1] == middle
    window = await events(api, since=registered[0]["timestamp"], until=registered[1]["timestamp"])
    assert window[0] == registered[0] and window[-1] == registered[1]
    assert len(window) < len(everything)


async def test_pages_cover_every_event_exactly_once_in_order(api: Api) -> None:
    for i in range(5):
        model, _ = await register(api, f"paged-{i}")
        if i % 2 == 0:
            await describe(api, model["id"], f"changed {i}")
        await claim_in(api, "memory" if i % 2 else "assistant")
    position = await describe(api, model["id"], "last")
    await events(api, wait_for=position)
    await events(api, wait_for=await claim_in(api, "training"))
    total = await raw_count(api)

    for params in ({}, {"context": "registry"}):
        everything = await events(api, **params)
        seen: list[dict[str, Any]] = []
        cursor = None
        pages = 0
        while True:
            response = await api.client.get(
                EVENTS,
                params={"limit": 4, **params, **({"cursor": cursor} if cursor else {})},
                headers=api.auth("auditor"),
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert len(body["items"]) <= 4
            seen.extend(body["items"])
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == everything
        assert len({e["event_id"] for e in seen}) == len(seen)
        assert pages == -(-len(everything) // 4)
        if params:
            positions = [e["position"] for e in seen]
            assert positions == sorted(positions) and len(seen) < total
        else:
            assert len(seen) == total
            keys = [(stamp(e), e["context"], e["position"]) for e in seen]
            assert keys == sorted(keys)
            assert {e["context"] for e in seen} == {"registry", "memory", "assistant", "training"}


async def test_bad_query_parameters_are_400_naming_the_field(api: Api) -> None:
    auditor = api.auth("auditor")
    for params, field in (
        ({"context": "nowhere"}, "context"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-01-01T00:00:00"}, "until"),  # no time zone
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"cursor": "%%%"}, "cursor"),
        ({"aggregate_id": "not-a-uuid"}, "aggregate_id"),
        ({"type": "Model.\x00"}, "type"),
        ({"correlation_id": "x" * 201}, "correlation_id"),
        ({"since": "0001-01-01T00:00:00+14:00"}, "since"),  # before year 1 in UTC
        ({"context": "registry", "cursor": encode_cursor([2**63])}, "cursor"),
        ({"cursor": encode_cursor(["2026-01-01T00:00:00Z", "nowhere", 1])}, "cursor"),
    ):
        problem = is_problem(await api.client.get(EVENTS, params=params, headers=auditor), 400)
        assert field in problem["detail"] or field in str(problem.get("errors")), (params, problem)
    # a cursor of a one-context walk does not continue a walk across contexts
    await register(api, "c1")
    _, position = await register(api, "c2")
    await events(api, wait_for=position)
    page = (
        await api.client.get(EVENTS, params={"context": "registry", "limit": 1}, headers=auditor)
    ).json()
    problem = is_problem(
        await api.client.get(EVENTS, params={"cursor": page["next_cursor"]}, headers=auditor), 400
    )
    assert "cursor" in problem["detail"]


async def test_since_later_than_until_is_an_empty_range_not_an_error(api: Api) -> None:
    _, position = await register(api, "r1")
    await events(api, wait_for=position)
    params = {"since": "2999-02-01T00:00:00Z", "until": "1999-01-01T00:00:00Z"}
    response = await api.client.get(EVENTS, params=params, headers=api.auth("auditor"))
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "next_cursor": None}


async def test_as_of_replays_the_aggregate_before_and_after_a_change(api: Api) -> None:
    model, position = await register(api, "as-of-model")
    (registered,) = await events(
        api, type="Model.Registered", aggregate_id=model["id"], wait_for=position
    )
    registered_at = datetime.fromisoformat(registered["timestamp"])
    await describe(api, model["id"], "second")

    async def history(aggregate_id: object, as_of: str | None = None) -> Any:
        params = {} if as_of is None else {"as_of": as_of}
        return await api.client.get(
            aggregate_path(aggregate_id), params=params, headers=api.auth("auditor")
        )

    before = await history(model["id"], registered_at.isoformat())
    assert before.status_code == 200, before.text
    old = before.json()
    assert (old["context"], old["type"], old["version"]) == ("registry", "Model", 1)
    assert old["state"]["description"] == "first" and old["state"]["name"] == "as-of-model"
    assert old["state"]["id"] == model["id"] and old["state"]["version"] == 1
    assert [e["type"] for e in old["events"]] == ["Model.Registered"]
    assert datetime.fromisoformat(old["as_of"]) == registered_at

    now = (await history(model["id"])).json()
    assert now["version"] == 2 and now["state"]["description"] == "second"
    assert now["as_of"] is None
    assert [e["type"] for e in now["events"]] == ["Model.Registered", "Model.DetailsUpdated"]
    assert now["state"]["modified_on"] > now["state"]["created_on"]
    tomorrow = (datetime.now().astimezone() + timedelta(days=1)).isoformat()
    assert (await history(model["id"], tomorrow)).json()["state"] == now["state"]

    too_early = (registered_at - timedelta(microseconds=1)).isoformat()
    is_problem(await history(model["id"], too_early), 404)
    is_problem(await history(uuid4()), 404)
    for bad in ("last tuesday", "2026-01-01T00:00:00", "9999-12-31T23:00:00-14:00"):
        problem = is_problem(await history(model["id"], bad), 400)
        assert problem["errors"][0]["field"] == "as_of"


async def test_the_payload_served_is_the_stored_one_and_verify_sees_the_change(api: Api) -> None:
    model, position = await register(api, "tamper-me")
    await events(api, wait_for=position)
    assert (await api.client.get(VERIFY, headers=api.auth("auditor"))).json()["ok"] is True
    conn = await asyncpg.connect(api.url)
    try:
        status = await conn.execute(
            "UPDATE registry_events SET state = convert_to(replace(convert_from(state, 'UTF8'), "
            "'\"first\"', '\"forged\"'), 'UTF8') "
            "WHERE originator_id = $1 AND originator_version = 1",
            model["id"],
        )
        assert status == "UPDATE 1"
        stored = await conn.fetchval(
            "SELECT notification_id FROM registry_events WHERE originator_id = $1", model["id"]
        )
    finally:
        await conn.close()
    (item,) = await events(api, aggregate_id=model["id"])
    assert item["payload"]["description"] == "forged"

    report = (await api.client.get(VERIFY, headers=api.auth("admin"))).json()
    assert report["ok"] is False
    by_context = {c["context"]: c for c in report["contexts"]}
    assert by_context["registry"]["broken"]["position"] == stored
    assert by_context["registry"]["broken"]["kind"] == "changed"
    assert by_context["training"]["ok"] is True
    only_training = await api.client.get(
        VERIFY, params={"context": "training"}, headers=api.auth("auditor")
    )
    assert only_training.json()["ok"] is True
    assert [c["context"] for c in only_training.json()["contexts"]] == ["training"]
    unknown = await api.client.get(VERIFY, params={"context": "x"}, headers=api.auth("auditor"))
    is_problem(unknown, 400)
