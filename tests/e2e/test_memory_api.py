"""Agent memory through HTTP: record, search, graph, timeline, strength, delete, erase."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.e2e.test_models_api import is_problem
from tests.helpers import Api
from tests.integration.test_memory_projection import database_occurrences

BASE = "/api/v1/memory"


async def memory_events(api: Api) -> int:
    return len(await api.fetch("SELECT 1 FROM memory_events"))


def memory(
    agent: str = "agent-a", content: str = "AAPL earnings beat", **over: Any
) -> dict[str, Any]:
    return {"agent_id": agent, "content": content, **over}


async def record(api: Api, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    response = await api.client.post(BASE, json=body, headers=headers or api.auth("operator"))
    assert response.status_code == 201, response.text
    return response


async def get(api: Api, memory_id: str, position: str | None = None, **params: Any) -> Any:
    """The memory's detail, read once the projections reached ``position`` (if given)."""
    if position is not None:
        params["wait_for"] = position
    response = await api.client.get(
        f"{BASE}/{memory_id}", params=params, headers=api.auth("viewer")
    )
    assert response.status_code == 200, response.text
    assert response.headers["ETag"] == f'"{response.json()["version"]}"'
    return dict(response.json())


async def settled_events(api: Api) -> int:
    """The memory log's size once every projection has caught up with it."""
    count = await memory_events(api)
    [(position,)] = await api.fetch("SELECT coalesce(max(notification_id), 0) FROM memory_events")
    response = await api.client.get(
        f"{BASE}/search", params={"q": "x", "wait_for": f"memory:{position}"},
        headers=api.auth("viewer"),
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return count


async def search(api: Api, position: str, **params: Any) -> list[dict[str, Any]]:
    response = await api.client.get(
        f"{BASE}/search", params={"wait_for": position, **params}, headers=api.auth("viewer")
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def graph(api: Api, agent: str, position: str, **params: Any) -> dict[str, Any]:
    response = await api.client.get(
        f"{BASE}/agents/{agent}", params={"wait_for": position, **params},
        headers=api.auth("viewer"),
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture
async def agent_key(api: Api) -> dict[str, str]:
    return {"Authorization": f"Bearer {await api.key_for('agent', agent_id='agent-a')}"}


async def test_a_memory_is_recorded_sealed_and_read_back_with_its_strength(api: Api) -> None:
    response = await record(
        api,
        memory(
            content="Bought $AAPL after NASDAQ:MSFT guidance; watch the CEO call",
            kind="plan",
            importance=0.8,
            entities=[{"name": "Tim Cook", "type": "person"}],
            relations=[{"subject": "Tim Cook", "predicate": "leads", "object": "AAPL"}],
            tags=["Earnings", "tech"],
            source="desk-notes",
        ),
    )
    body = response.json()
    assert response.headers["Location"] == f"{BASE}/{body['id']}"
    assert "content" not in body  # command answers carry no memory text
    shown = await get(api, body["id"])
    assert shown["content"].startswith("Bought $AAPL")
    assert shown["kind"] == "plan"
    assert shown["tags"] == ["earnings", "tech"]
    # tickers: cashtags and exchange prefixes, not bare capitals like CEO
    assert {(e["name"], e["type"]) for e in shown["entities"]} == {
        ("Tim Cook", "person"), ("AAPL", "ticker"), ("MSFT", "ticker"),
    }  # fmt: skip
    strength = shown["strength"]
    assert strength["stability_days"] == pytest.approx(1 + 29 * 0.8)
    assert strength["strength"] == pytest.approx(
        strength["retention"] * (0.5 + 0.5 * 0.8), rel=1e-9
    )
    assert [h["type"] for h in shown["history"]] == ["Memory.Recorded"]
    assert shown["history"][0]["principal"] == "test-operator"
    # the log holds only the sealed text
    rows = await api.fetch("SELECT state FROM memory_events")
    assert all(b"Bought" not in bytes(r["state"]) for r in rows)


async def test_malformed_memories_are_400_naming_each_field_and_append_nothing(api: Api) -> None:
    bad = memory(content="  ", kind="rumour", importance=2)
    problem = is_problem(await api.client.post(BASE, json=bad, headers=api.auth("operator")), 400)
    fields = {e["field"] for e in problem["errors"]}  # type: ignore[union-attr]
    assert fields == {"content", "kind", "importance"}
    batch = {"memories": [memory(), memory(content=""), memory(agent="bad agent!")]}
    problem = is_problem(
        await api.client.post(f"{BASE}/batch", json=batch, headers=api.auth("operator")), 400
    )
    fields = {e["field"] for e in problem["errors"]}  # type: ignore[union-attr]
    assert fields == {"memories[1].content", "memories[2].agent_id"}
    wrong_type = {"agent_id": "agent-a", "content": 12}
    is_problem(await api.client.post(BASE, json=wrong_type, headers=api.auth("operator")), 400)
    nul = memory(content="a\x00b")
    is_problem(await api.client.post(BASE, json=nul, headers=api.auth("operator")), 400)
    assert await memory_events(api) == 0
    ok = await api.client.post(
        f"{BASE}/batch", json={"memories": [memory(), memory(content="second")]},
        headers=api.auth("operator"),
    )  # fmt: skip
    assert ok.status_code == 201, ok.text
    assert len(ok.json()["items"]) == 2
    rows = await api.fetch("SELECT count(DISTINCT notification_id) FROM memory_events")
    assert rows[0][0] == 2


async def test_an_agent_key_reads_and_writes_only_its_own_agent(
    api: Api, agent_key: dict[str, str]
) -> None:
    mine = (await record(api, memory("agent-a", "mine: $TSLA"), agent_key)).json()
    theirs = (await record(api, memory("agent-b", "theirs: $TSLA"))).json()
    position = (await record(api, memory("agent-b", "other"))).headers["Aimm-Position"]
    is_problem(await api.client.post(BASE, json=memory("agent-b"), headers=agent_key), 403)
    batch = {"memories": [memory("agent-a"), memory("agent-b")]}
    is_problem(await api.client.post(f"{BASE}/batch", json=batch, headers=agent_key), 403)
    assert (await api.client.get(f"{BASE}/{mine['id']}", headers=agent_key)).status_code == 200
    is_problem(await api.client.get(f"{BASE}/{theirs['id']}", headers=agent_key), 404)
    is_problem(await api.client.post(f"{BASE}/{theirs['id']}/reinforce", headers=agent_key), 404)
    found = await api.client.get(
        f"{BASE}/search", params={"q": "TSLA", "wait_for": position}, headers=agent_key
    )
    assert [h["id"] for h in found.json()["items"]] == [mine["id"]]
    is_problem(
        await api.client.get(f"{BASE}/search", params={"q": "x", "agent_id": "agent-b"},
                             headers=agent_key), 403,
    )  # fmt: skip
    is_problem(await api.client.get(f"{BASE}/agents/agent-b", headers=agent_key), 403)
    is_problem(await api.client.get(f"{BASE}/agents/agent-b/timeline", headers=agent_key), 403)
    is_problem(
        await api.client.delete(f"{BASE}/{mine['id']}", params={"reason": "x"}, headers=agent_key),
        403,
    )


async def test_search_ranks_the_best_match_first_and_the_stronger_of_equals(api: Api) -> None:
    weak = (await record(api, memory(content="Volatility spike in energy", importance=0.1))).json()
    strong = (
        await record(api, memory(content="Volatility spike in energy", importance=0.9))
    ).json()
    best = (
        await record(api, memory(content="Volatility spike: volatility everywhere, volatility"))
    ).json()
    other = await record(api, memory(content="Quiet session in bonds"))
    position = other.headers["Aimm-Position"]
    hits = await search(api, position, q="volatility")
    assert [h["id"] for h in hits] == [best["id"], strong["id"], weak["id"]]
    assert hits[1]["score"]["relevance"] == pytest.approx(hits[2]["score"]["relevance"])
    assert hits[1]["score"]["strength"] > hits[2]["score"]["strength"]
    assert "<mark>" in hits[0]["snippet"]
    # partial words through trigrams; phrases; exclusions
    assert {h["id"] for h in await search(api, position, q="volatil")} >= {best["id"]}
    assert [h["id"] for h in await search(api, position, q='"quiet session"')] == [
        (await get(api, other.json()["id"]))["id"]
    ]
    excluded = await search(api, position, q="volatility -energy")
    assert [h["id"] for h in excluded] == [best["id"]]
    # a reader's searches reinforce nothing
    assert (await get(api, best["id"], position))["strength"]["accesses"] == 0


async def test_strength_rises_after_feedback_and_as_of_reproduces_it(api: Api) -> None:
    recorded = await record(api, memory(importance=0.5))
    created = recorded.json()
    before = await get(api, created["id"], recorded.headers["Aimm-Position"])
    at = before["strength"]["as_of"]
    response = await api.client.post(
        f"{BASE}/{created['id']}/reinforce", json={"value": 1.0}, headers=api.auth("operator")
    )
    assert response.status_code == 200, response.text
    after = await get(api, created["id"], response.headers["Aimm-Position"])
    assert after["strength"]["stability_days"] == pytest.approx(2 * (1 + 29 * 0.5))
    assert after["strength"]["feedback"] == 1
    # the state as of the first read gives exactly the strength read then
    again = await get(api, created["id"], as_of=at)
    assert again["strength"]["strength"] == before["strength"]["strength"]
    assert again["strength"]["stability_days"] == before["strength"]["stability_days"]
    assert [h["type"] for h in again["history"]] == ["Memory.Recorded"]
    bad = await api.client.post(
        f"{BASE}/{created['id']}/reinforce", json={"value": 3}, headers=api.auth("operator")
    )
    is_problem(bad, 400)
    earlier = datetime.fromisoformat(at) - timedelta(days=1)
    is_problem(
        await api.client.get(f"{BASE}/{created['id']}", params={"as_of": earlier.isoformat()},
                             headers=api.auth("viewer")), 404,
    )  # fmt: skip


async def test_an_invalidated_memory_leaves_search_and_graph_and_comes_back(api: Api) -> None:
    kept = (await record(api, memory(content="Gold rallies on $GLD flows"))).json()
    response = await api.client.delete(f"{BASE}/{kept['id']}", headers=api.auth("operator"))
    is_problem(response, 400)  # a reason is required
    response = await api.client.delete(
        f"{BASE}/{kept['id']}", params={"reason": "outdated"}, headers=api.auth("operator")
    )
    assert response.status_code == 200, response.text
    position = response.headers["Aimm-Position"]
    assert await search(api, position, q="gold") == []
    assert [h["id"] for h in await search(api, position, q="gold", include_invalidated=True)] == [
        kept["id"]
    ]
    assert (await graph(api, "agent-a", position))["nodes"] == []
    shown = await get(api, kept["id"], position)
    assert shown["status"] == "invalidated"
    assert shown["invalidation"]["reason"] == "outdated"
    response = await api.client.post(
        f"{BASE}/{kept['id']}/restore", json={"reason": "still true"}, headers=api.auth("operator")
    )
    assert response.status_code == 200, response.text
    position = response.headers["Aimm-Position"]
    assert [h["id"] for h in await search(api, position, q="gold")] == [kept["id"]]
    nodes = (await graph(api, "agent-a", position))["nodes"]
    assert {n["id"] for n in nodes} == {f"memory:{kept['id']}", "entity:ticker:gld"}
    is_problem(
        await api.client.post(f"{BASE}/{kept['id']}/restore", headers=api.auth("operator")), 409
    )


async def test_an_erased_memory_leaves_no_trace_of_its_text_anywhere(api: Api) -> None:
    secret = "zanzibarquokka"
    erased = (
        await record(
            api,
            memory(
                content=f"Insider {secret} note on $NVDA",
                entities=[{"name": f"{secret}-fund", "type": "fund"}],
                relations=[{"subject": f"{secret}-fund", "predicate": "holds", "object": "NVDA"}],
                tags=[secret],
                source=f"{secret}-desk",
            ),
            headers={**api.auth("operator"), "Idempotency-Key": "erase-me"},
        )
    ).json()
    kept = await record(api, memory(content="Public note on $NVDA"))
    await search(api, kept.headers["Aimm-Position"], q=secret, include_invalidated=True)
    response = await api.client.delete(
        f"{BASE}/{erased['id']}", params={"reason": "GDPR request", "erase": "true"},
        headers=api.auth("operator"),
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "erased"
    shown = await get(api, erased["id"], response.headers["Aimm-Position"])
    assert shown["status"] == "erased"
    assert shown["content"] is None
    assert shown["entities"] == []
    assert shown["history"][-1]["type"] == "Memory.Erased"
    assert shown["history"][-1]["principal"] == "test-operator"
    assert shown["history"][-1]["detail"]["reason"] == "GDPR request"
    # every column of every table, the event logs included (bytea decoded as bytes)
    conn = await asyncpg.connect(api.url)
    try:
        assert await database_occurrences(conn, secret) == set()
        keys = await conn.fetchval(
            "SELECT count(*) FROM memory_keys WHERE memory_id = $1::uuid", erased["id"]
        )
        assert keys == 0
    finally:
        await conn.close()
    is_problem(
        await api.client.post(f"{BASE}/{erased['id']}/restore", headers=api.auth("operator")), 409
    )
    again = await api.client.delete(
        f"{BASE}/{erased['id']}", params={"reason": "again", "erase": "true"},
        headers=api.auth("operator"),
    )  # fmt: skip
    assert again.status_code == 200


async def test_a_newer_memory_supersedes_an_older_one(api: Api) -> None:
    old = (await record(api, memory(content="Fed holds rates"))).json()
    newer = await record(api, memory(content="Fed cuts rates", supersedes=old["id"]))
    new = newer.json()
    shown = await get(api, old["id"], newer.headers["Aimm-Position"])
    assert shown["status"] == "invalidated"
    assert shown["invalidation"]["superseded_by"] == new["id"]
    position = (await record(api, memory(content="later"))).headers["Aimm-Position"]
    full = await graph(api, "agent-a", position, include_invalidated="true")
    assert {
        "source": f"memory:{new['id']}",
        "target": f"memory:{old['id']}",
        "relation": "supersedes",
    }.items() <= next(e for e in full["edges"] if e["relation"] == "supersedes").items()
    other = (await record(api, memory("agent-b", "b's"))).json()
    stranger = memory(content="x", supersedes=other["id"])
    is_problem(await api.client.post(BASE, json=stranger, headers=api.auth("operator")), 404)


async def test_graph_timeline_and_forget(api: Api) -> None:
    first = (
        await record(
            api,
            memory(content="$AAPL supplier risk", importance=0.1,
                   relations=[{"subject": "AAPL", "predicate": "depends_on", "object": "TSMC"}]),
        )
    ).json()  # fmt: skip
    mid = (await get(api, first["id"]))["created_at"]  # read at once: waits for its projection
    await asyncio.sleep(0.05)
    second = await record(api, memory(content="$AAPL buyback announced", importance=0.9))
    position = second.headers["Aimm-Position"]
    now_graph = await graph(api, "agent-a", position)
    memory_nodes = [n for n in now_graph["nodes"] if n["type"] == "memory"]
    assert len(memory_nodes) == 2
    for node in memory_nodes:
        assert node["strength_components"]["strength"] == node["strength"]
        assert node["strength_components"]["stability_days"] > 1
    aapl = next(n for n in now_graph["nodes"] if n["id"] == "entity:ticker:aapl")
    assert aapl["mentions"] == 2
    assert any(e["relation"] == "depends_on" for e in now_graph["edges"])
    past = await graph(api, "agent-a", position, as_of=mid)
    assert [n["id"] for n in past["nodes"] if n["type"] == "memory"] == [f"memory:{first['id']}"]
    strong = await graph(api, "agent-a", position, min_strength=0.6)
    assert [n["id"] for n in strong["nodes"] if n["type"] == "memory"] == [
        f"memory:{second.json()['id']}"
    ]
    timeline = await api.client.get(
        f"{BASE}/agents/agent-a/timeline", params={"wait_for": position, "limit": 1},
        headers=api.auth("viewer"),
    )  # fmt: skip
    body = timeline.json()
    assert [i["id"] for i in body["items"]] == [first["id"]]
    assert body["items"][0]["marks"][0]["mark"] == "created"
    assert body["items"][0]["strength"]["importance"] == 0.1
    assert sum(c["created"] for c in body["counts"]) == 2
    rest = await api.client.get(
        f"{BASE}/agents/agent-a/timeline", params={"cursor": body["next_cursor"]},
        headers=api.auth("viewer"),
    )  # fmt: skip
    assert [i["id"] for i in rest.json()["items"]] == [second.json()["id"]]
    # forget: the weak one only; a dry run changes nothing
    dry = await api.client.post(
        f"{BASE}/agents/agent-a/forget", json={"max_strength": 0.6, "dry_run": True},
        headers=api.auth("operator"),
    )  # fmt: skip
    assert [i["id"] for i in dry.json()["items"]] == [first["id"]]
    assert dry.json()["next_cursor"] is None
    assert (await get(api, first["id"]))["status"] == "active"
    done = await api.client.post(
        f"{BASE}/agents/agent-a/forget", json={"max_strength": 0.6, "reason": "weak"},
        headers=api.auth("operator"),
    )  # fmt: skip
    assert done.json()["count"] == 1
    weak = await get(api, first["id"], done.headers["Aimm-Position"])
    assert weak["invalidation"]["reason"] == "weak"
    is_problem(
        await api.client.post(f"{BASE}/agents/agent-a/forget", json={},
                              headers=api.auth("operator")), 400,
    )  # fmt: skip


async def test_the_memory_and_ml_endpoints_are_in_the_openapi_schema(api: Api) -> None:
    response = await api.client.get("/schema/openapi.json", headers=api.auth("viewer"))
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {
        BASE, f"{BASE}/batch", f"{BASE}/search", f"{BASE}/{{memory_id}}",
        f"{BASE}/{{memory_id}}/restore", f"{BASE}/{{memory_id}}/reinforce",
        f"{BASE}/agents/{{agent_id}}", f"{BASE}/agents/{{agent_id}}/timeline",
        f"{BASE}/agents/{{agent_id}}/forget", "/api/v1/ml/datasets", "/api/v1/ml/train",
        "/api/v1/ml/jobs", "/api/v1/ml/jobs/{job_id}", "/api/v1/ml/jobs/{job_id}/metrics",
        "/api/v1/ml/jobs/{job_id}/stop", "/api/v1/ml/jobs/compare",
    } <= set(paths)  # fmt: skip
    body = paths[f"{BASE}/batch"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]


async def test_a_readers_search_appends_nothing_and_an_agents_reinforces_once_an_hour(
    api: Api, agent_key: dict[str, str]
) -> None:
    hit = await record(api, memory(content="Copper squeeze in Shanghai"))
    position = hit.headers["Aimm-Position"]
    before = await settled_events(api)
    auditor = await api.key_for("auditor", name="test-auditor-2")
    for headers in (api.auth("viewer"), {"Authorization": f"Bearer {auditor}"}):
        found = await api.client.get(
            f"{BASE}/search", params={"q": "copper", "wait_for": position}, headers=headers
        )
        assert found.status_code == 200, found.text
        assert [h["id"] for h in found.json()["items"]] == [hit.json()["id"]]
        assert "Aimm-Position" not in found.headers
        asking = await api.client.get(
            f"{BASE}/search", params={"q": "copper", "reinforce": "true"}, headers=headers
        )
        is_problem(asking, 403)
    assert await settled_events(api) == before
    # an agent's search is a retrieval for use: it reinforces, and says where in the log
    used = await api.client.get(f"{BASE}/search", params={"q": "copper"}, headers=agent_key)
    assert used.status_code == 200, used.text
    shown = await get(api, hit.json()["id"], used.headers["Aimm-Position"])
    assert shown["strength"]["accesses"] == 1
    assert shown["history"][-1]["principal"] == "test-agent"
    # once an hour at most; and an operator may ask for it explicitly
    again = await api.client.get(f"{BASE}/search", params={"q": "copper"}, headers=agent_key)
    assert "Aimm-Position" not in again.headers
    explicit = await api.client.get(
        f"{BASE}/search", params={"q": "copper", "reinforce": "true"}, headers=api.auth("operator")
    )
    assert explicit.status_code == 200
    assert await memory_events(api) == before + 1
    opted_out = await api.client.get(
        f"{BASE}/search", params={"q": "copper", "reinforce": "false"}, headers=agent_key
    )
    assert opted_out.status_code == 200 and "Aimm-Position" not in opted_out.headers


@pytest.mark.parametrize(
    "payload",
    ["<img src=x onerror=alert(1)> copper", "copper </mark><script>alert(1)</script>"],
)
async def test_search_snippets_are_escaped_and_only_our_marks_are_markup(
    api: Api, payload: str
) -> None:
    position = (await record(api, memory(content=payload))).headers["Aimm-Position"]
    [hit] = await search(api, position, q="copper")
    snippet = hit["snippet"]
    assert "<img" not in snippet and "<script" not in snippet
    assert snippet.replace("<mark>", "").replace("</mark>", "").count("<") == 0
    assert "<mark>copper</mark>" in snippet
    # what ts_headline keeps of the markup is text: escaped, never live
    assert snippet.count("<mark>") == snippet.count("</mark>") == 1


async def test_search_is_cursor_paginated(api: Api) -> None:
    ids = set()
    for i in range(5):
        response = await record(api, memory(content=f"Nickel note {i}", importance=i / 5))
        ids.add(response.json()["id"])
    position = response.headers["Aimm-Position"]
    seen: list[str] = []
    params: dict[str, Any] = {"q": "nickel", "limit": 2, "wait_for": position}
    while True:
        page = await api.client.get(f"{BASE}/search", params=params, headers=api.auth("viewer"))
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [h["id"] for h in body["items"]]
        if body["next_cursor"] is None:
            break
        params = {"q": "nickel", "limit": 2, "cursor": body["next_cursor"]}
    assert len(seen) == 5 and set(seen) == ids
    scores = [h["score"]["score"] for h in (await search(api, position, q="nickel", limit=5))]
    assert scores == sorted(scores, reverse=True)
    is_problem(
        await api.client.get(f"{BASE}/search", params={"q": "nickel", "cursor": "bm90LWEtbGlzdA"},
                             headers=api.auth("viewer")), 400,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "params", "body"),
    [
        ("GET", "/agents/agent-a", {"as_of": "0.5"}, None),
        ("GET", "/agents/agent-a/timeline", {"start": "0.5"}, None),
        ("GET", "/search", {"q": "x", "start": "0.5"}, None),
        ("GET", "/search", {"q": "x", "end": "1700000000"}, None),
        ("POST", "/agents/agent-a/forget", None, {"max_strength": 0.5, "dry_run": "true"}),
        ("POST", "/agents/agent-a/forget", None, {"max_strength": "0.5", "dry_run": True}),
        ("POST", "", None, {"agent_id": "agent-a", "content": "x", "importance": "0.5"}),
    ],
)
async def test_parameters_of_the_wrong_type_are_400(
    api: Api, method: str, path: str, params: Any, body: Any
) -> None:
    response = await api.client.request(
        method, f"{BASE}{path}", params=params, json=body, headers=api.auth("operator")
    )
    is_problem(response, 400)
    assert await memory_events(api) == 0


async def test_forget_runs_in_pages_and_an_idempotent_retry_appends_nothing(api: Api) -> None:
    for i in range(5):
        response = await record(api, memory(content=f"Zinc note {i}", importance=0.1))
    position = response.headers["Aimm-Position"]
    await search(api, position, q="zinc")  # the projection has them all
    url = f"{BASE}/agents/agent-a/forget"
    headers = {**api.auth("operator"), "Idempotency-Key": "forget-1"}
    first = await api.client.post(url, json={"max_strength": 0.6, "limit": 2}, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["count"] == 2 and first.json()["next_cursor"] is not None
    events = await memory_events(api)
    retry = await api.client.post(url, json={"max_strength": 0.6, "limit": 2}, headers=headers)
    assert retry.json() == first.json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert await memory_events(api) == events
    done = [i["id"] for i in first.json()["items"]]
    cursor = first.json()["next_cursor"]
    while cursor is not None:
        page = await api.client.post(
            url, json={"max_strength": 0.6, "limit": 2, "cursor": cursor},
            headers=api.auth("operator"),
        )  # fmt: skip
        assert page.status_code == 200, page.text
        done += [i["id"] for i in page.json()["items"]]
        cursor = page.json()["next_cursor"]
    assert len(set(done)) == 5
    invalidated = await api.fetch(
        "SELECT count(*) FROM memory_events WHERE topic LIKE '%Memory.Invalidated'"
    )
    assert invalidated[0][0] == 5


async def test_the_agents_are_listed_with_their_counts_and_an_agent_key_sees_its_own(
    api: Api, agent_key: dict[str, str]
) -> None:
    kept = (await record(api, memory("agent-a", "kept"))).json()
    dropped = (await record(api, memory("agent-a", "dropped"))).json()
    await record(api, memory("agent-b", "theirs"))
    await record(api, memory("agent-c", "third"))
    deleted = await api.client.delete(
        f"{BASE}/{dropped['id']}", params={"reason": "wrong"}, headers=api.auth("operator")
    )
    assert deleted.status_code == 200, deleted.text
    position = deleted.headers["Aimm-Position"]
    listed = await api.client.get(
        f"{BASE}/agents", params={"wait_for": position, "limit": 2}, headers=api.auth("viewer")
    )
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert [a["agent_id"] for a in page["items"]] == ["agent-a", "agent-b"]
    first = page["items"][0]
    assert (first["memories"], first["active"], first["invalidated"], first["erased"]) == (
        2, 1, 1, 0,
    )  # fmt: skip
    detail = await get(api, kept["id"], position)
    assert first["last_recorded_at"] >= detail["created_at"]
    rest = await api.client.get(
        f"{BASE}/agents", params={"cursor": page["next_cursor"]}, headers=api.auth("viewer")
    )
    assert [a["agent_id"] for a in rest.json()["items"]] == ["agent-c"]
    assert rest.json()["next_cursor"] is None
    own = await api.client.get(f"{BASE}/agents", headers=agent_key)
    assert [a["agent_id"] for a in own.json()["items"]] == ["agent-a"]
    is_problem(
        await api.client.get(f"{BASE}/agents", params={"cursor": "bm90LW9uZQ"}, headers=agent_key),
        400,
    )
