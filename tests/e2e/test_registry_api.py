"""Model registry through HTTP: versions, status, deploy, rollback, history, lineage (F11.1)."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from typing import Any

import asyncpg

from tests.helpers import Api

MODELS = "/api/v1/ai/models"


async def registry_events(api: Api) -> int:
    conn = await asyncpg.connect(api.url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM registry_events"))
    finally:
        await conn.close()


async def new_model(api: Api, name: str = "forecaster", kind: str = "ml", versions: int = 0) -> str:
    created = await api.client.post(
        MODELS, json={"name": name, "kind": kind}, headers=api.auth("operator")
    )
    assert created.status_code == 201, created.text
    model_id: str = created.json()["id"]
    for i in range(versions):
        await add_version(api, model_id, metrics={"accuracy": 0.5 + i / 100})
    return model_id


async def add_version(api: Api, model_id: str, **body: Any) -> dict[str, Any]:
    body.setdefault("artifact", f"sha256:{len(body)}")
    response = await api.client.post(
        f"{MODELS}/{model_id}/versions", json=body, headers=api.auth("operator")
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def deploy(api: Api, model_id: str, version: int, **extra: Any) -> Any:
    return await api.client.post(
        f"{MODELS}/{model_id}/deploy",
        json={"version": version, **extra},
        headers=api.auth("operator"),
    )


async def detail(api: Api, model_id: str, query: str = "") -> dict[str, Any]:
    """The model once the read models have caught up with everything written so far."""
    conn = await asyncpg.connect(api.url)
    try:
        head = int(
            await conn.fetchval("SELECT coalesce(max(notification_id), 0) FROM registry_events")
        )
    finally:
        await conn.close()
    response = await api.client.get(
        f"{MODELS}/{model_id}?wait_for=registry:{head}{query}", headers=api.auth("viewer")
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_versions_are_numbered_in_order_and_start_as_staging(api: Api) -> None:
    model_id = await new_model(api)
    first = await add_version(
        api,
        model_id,
        artifact="sha256:aa",
        framework="jax",
        parameters={"layers": 2},
        metrics={"accuracy": 0.61},
        lineage={"dataset": {"id": "ds-1", "hash": "h1"}, "training_run": "run-1"},
    )
    second = await add_version(
        api, model_id, artifact="s3://models/b", lineage={"parent_version": 1}
    )
    assert (first["version"], second["version"]) == (1, 2)
    body = await detail(api, model_id)
    assert [(v["version"], v["status"]) for v in body["versions"]] == [
        (1, "staging"),
        (2, "staging"),
    ]
    assert body["versions"][0]["metrics"] == {"accuracy": 0.61}
    assert body["latest_version"] == 2
    assert body["active"] == {}


async def test_deploy_makes_a_version_active_and_archives_the_one_it_replaces(api: Api) -> None:
    model_id = await new_model(api, versions=3)
    first = await deploy(api, model_id, 1, reason="first release")
    assert first.status_code == 200, first.text
    assert first.json()["deployment"]["previous_version"] is None
    second = await deploy(api, model_id, 2, reason="better accuracy")
    assert second.json()["deployment"] | {"deployed_at": None} == {
        "sequence": 2,
        "action": "deploy",
        "environment": "production",
        "version": 2,
        "previous_version": 1,
        "reason": "better accuracy",
        "deployed_at": None,
        "deployed_by": "test-operator",
    }
    await deploy(api, model_id, 3, environment="staging")
    body = await detail(api, model_id)
    statuses = {v["version"]: (v["status"], v["environments"]) for v in body["versions"]}
    assert statuses == {
        1: ("archived", []),
        2: ("active", ["production"]),
        3: ("active", ["staging"]),
    }
    assert body["active"] == {"production": 2, "staging": 3}
    listed = (await api.client.get(f"{MODELS}?status=archived", headers=api.auth("viewer"))).json()
    assert [(m["name"], m["latest_version"], m["active"]) for m in listed["items"]] == [
        ("forecaster", 3, {"production": 2, "staging": 3})
    ]


async def test_twenty_concurrent_deploys_leave_exactly_one_active_version(api: Api) -> None:
    model_id = await new_model(api, versions=20)
    before = await registry_events(api)
    responses = await asyncio.gather(*(deploy(api, model_id, v) for v in range(1, 21)))
    accepted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert accepted, "at least one deploy must win"
    assert all(r.status_code == 409 for r in refused)
    assert all(r.headers["content-type"].startswith("application/problem+json") for r in refused)
    assert await registry_events(api) == before + len(accepted)
    body = await detail(api, model_id)
    active = [v for v in body["versions"] if "production" in v["environments"]]
    assert len(active) == 1
    history = (await api.client.get(f"{MODELS}/{model_id}/deployments", headers=api.auth())).json()[
        "items"
    ]
    accepted_versions = sorted(r.json()["deployment"]["sequence"] for r in accepted)
    assert (
        [d["sequence"] for d in history] == accepted_versions == list(range(1, len(accepted) + 1))
    )
    for earlier, later in itertools.pairwise(history):
        assert later["previous_version"] == earlier["version"]
    assert body["active"]["production"] == history[-1]["version"]


async def test_deploy_refusals_are_404_400_403_409_and_append_nothing(api: Api) -> None:
    model_id = await new_model(api, versions=2)
    other_id = await new_model(api, name="other", versions=5)
    await deploy(api, model_id, 1)
    before = await registry_events(api)
    assert (await deploy(api, model_id, 9)).status_code == 404
    assert (await deploy(api, model_id, 5)).status_code == 404, "version 5 belongs to another model"
    missing = "0b7a0d1e-4f5e-4c4b-9a51-6f3e8a1c2d33"
    assert (await deploy(api, missing, 1)).status_code == 404
    for body in ({"version": "one"}, {}, {"version": 1, "environment": "moon"}, {"version": 0}):
        response = await api.client.post(
            f"{MODELS}/{model_id}/deploy", json=body, headers=api.auth()
        )
        assert response.status_code == 400, (body, response.text)
    viewer = await api.client.post(
        f"{MODELS}/{model_id}/deploy", json={"version": 2}, headers=api.auth("viewer")
    )
    assert viewer.status_code == 403
    assert (await deploy(api, model_id, 1)).status_code == 409, "already active"
    stale = await deploy(api, model_id, 2, expected_version=1)
    assert stale.status_code == 409
    assert stale.json()["current_version"] == 4
    assert await registry_events(api) == before
    assert other_id


async def test_rollback_is_a_new_event_and_the_history_keeps_everything(api: Api) -> None:
    model_id = await new_model(api, versions=3)
    for version in (1, 2, 3):
        await deploy(api, model_id, version)
    rolled = await api.client.post(
        f"{MODELS}/{model_id}/rollback",
        json={"reason": "latency regression"},
        headers=api.auth("operator"),
    )
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["deployment"]["action"] == "rollback"
    assert (rolled.json()["deployment"]["version"], rolled.json()["active"]) == (
        2,
        {"production": 2},
    )
    explicit = await api.client.post(
        f"{MODELS}/{model_id}/rollback", json={"version": 1}, headers=api.auth("operator")
    )
    assert explicit.json()["deployment"]["version"] == 1
    wait = explicit.headers["aimm-position"]
    history = (
        await api.client.get(f"{MODELS}/{model_id}/deployments?wait_for={wait}", headers=api.auth())
    ).json()["items"]
    assert [(d["action"], d["version"], d["previous_version"]) for d in history] == [
        ("deploy", 1, None),
        ("deploy", 2, 1),
        ("deploy", 3, 2),
        ("rollback", 2, 3),
        ("rollback", 1, 2),
    ]
    assert history[3]["reason"] == "latency regression"
    never = await api.client.post(
        f"{MODELS}/{model_id}/rollback", json={"environment": "staging"}, headers=api.auth()
    )
    assert never.status_code == 422


async def test_as_of_answers_what_was_in_production_then(api: Api) -> None:
    model_id = await new_model(api, versions=2)
    await deploy(api, model_id, 1)
    between = datetime.now(UTC)
    await asyncio.sleep(0.01)
    await deploy(api, model_id, 2)
    then = (
        await api.client.get(
            f"{MODELS}/{model_id}",
            params={"as_of": between.isoformat()},
            headers=api.auth("viewer"),
        )
    ).json()
    now = await detail(api, model_id)
    assert then["active"] == {"production": 1}
    assert now["active"] == {"production": 2}
    assert [d["version"] for d in then["deployments"]] == [1]
    before_created = "2000-01-01T00:00:00Z"
    gone = await api.client.get(
        f"{MODELS}/{model_id}?as_of={before_created}", headers=api.auth("viewer")
    )
    assert gone.status_code == 404
    bad = await api.client.get(f"{MODELS}/{model_id}?as_of=yesterday", headers=api.auth("viewer"))
    assert bad.status_code == 400


async def test_metrics_history_is_kept_and_the_latest_shown(api: Api) -> None:
    model_id = await new_model(api)
    await add_version(api, model_id, metrics={"accuracy": 0.6})
    path = f"{MODELS}/{model_id}/versions/1/metrics"
    recorded = await api.client.post(
        path,
        json={"metrics": {"accuracy": 0.58, "sharpe": 1.2}, "source": "re-evaluation"},
        headers=api.auth("operator"),
    )
    assert recorded.status_code == 201, recorded.text
    version = (await detail(api, model_id))["versions"][0]
    assert version["metrics"] == {"accuracy": 0.58, "sharpe": 1.2}
    assert [(m["source"], m["metrics"]) for m in version["metrics_history"]] == [
        ("registration", {"accuracy": 0.6}),
        ("re-evaluation", {"accuracy": 0.58, "sharpe": 1.2}),
    ]
    for body in ({"metrics": {}}, {"metrics": {"a": "high"}}, {"metrics": {"a": 1}, "extra": 1}):
        assert (await api.client.post(path, json=body, headers=api.auth())).status_code == 400
    assert (
        await api.client.post(
            f"{MODELS}/{model_id}/versions/7/metrics",
            json={"metrics": {"a": 1}},
            headers=api.auth(),
        )
    ).status_code == 404


async def test_compare_marks_differences_and_the_best_version(api: Api) -> None:
    model_id = await new_model(api)
    await add_version(
        api, model_id, parameters={"lr": 0.01, "layers": 2}, metrics={"accuracy": 0.6, "loss": 0.9}
    )
    await add_version(
        api,
        model_id,
        parameters={"lr": 0.001, "layers": 2},
        metrics={"accuracy": 0.64, "loss": 0.7},
    )
    await add_version(
        api,
        model_id,
        parameters={"lr": 0.001, "layers": 2},
        metrics={"accuracy": 0.62, "loss": 0.8},
    )
    head = await detail(api, model_id)
    assert head["latest_version"] == 3
    body = (
        await api.client.get(
            f"{MODELS}/{model_id}/versions/compare?versions=1,2,3", headers=api.auth("viewer")
        )
    ).json()
    metrics = {m["name"]: m for m in body["metrics"]}
    assert metrics["accuracy"]["best_version"] == 2
    assert metrics["loss"]["best_version"] == 2
    assert metrics["accuracy"]["values"] == {"1": 0.6, "2": 0.64, "3": 0.62}
    params = {p["name"]: p for p in body["parameters"]}
    assert params["lr"]["differs"] is True
    assert params["layers"]["differs"] is False
    for query in ("versions=1", "versions=a,b", "versions=0,1"):
        assert (
            await api.client.get(
                f"{MODELS}/{model_id}/versions/compare?{query}", headers=api.auth()
            )
        ).status_code == 400
    assert (
        await api.client.get(
            f"{MODELS}/{model_id}/versions/compare?versions=1,9", headers=api.auth()
        )
    ).status_code == 404


async def test_lineage_graph_and_its_text_forms(api: Api) -> None:
    base = await new_model(api, name="base-llm", kind="llm")
    model_id = await new_model(api, name="tuned-llm", kind="llm")
    await add_version(api, base, artifact="hf:base")
    await add_version(
        api,
        model_id,
        artifact="sha256:t1",
        lineage={
            "dataset": {"id": "ds-9", "hash": "abc"},
            "training_run": "run-7",
            "base_model": base,
            "prompt_versions": ["prompt-1@3"],
        },
    )
    await add_version(api, model_id, artifact="sha256:t2", lineage={"parent_version": 1})
    await deploy(api, model_id, 2)
    await detail(api, model_id)
    graph = (
        await api.client.get(f"{MODELS}/{model_id}/lineage", headers=api.auth("viewer"))
    ).json()
    types = sorted(n["type"] for n in graph["nodes"])
    assert types == sorted(
        [
            "model",
            "version",
            "version",
            "dataset",
            "training_run",
            "model",
            "prompt_version",
            "deployment",
        ]
    )
    relations = {
        (e["source"].split(":")[0], e["relation"], e["target"].split(":")[0])
        for e in graph["edges"]
    }
    assert relations >= {
        ("version", "version_of", "model"),
        ("version", "trained_on", "dataset"),
        ("version", "produced_by", "run"),
        ("version", "derived_from", "version"),
        ("version", "based_on", "model"),
        ("version", "uses_prompt", "prompt"),
        ("deployment", "deployed", "version"),
    }
    base_graph = (
        await api.client.get(f"{MODELS}/{base}/lineage", headers=api.auth("viewer"))
    ).json()
    assert any(
        e["relation"] == "based_on" and e["target"] == f"model:{base}" for e in base_graph["edges"]
    )
    mermaid = await api.client.get(
        f"{MODELS}/{model_id}/lineage?format=mermaid", headers=api.auth("viewer")
    )
    assert mermaid.text.startswith("graph LR") and "-->|trained_on|" in mermaid.text
    dot = await api.client.get(
        f"{MODELS}/{model_id}/lineage?format=dot", headers=api.auth("viewer")
    )
    assert dot.text.startswith("digraph lineage {") and '[label="produced_by"]' in dot.text
    assert (
        await api.client.get(f"{MODELS}/{model_id}/lineage?format=png", headers=api.auth())
    ).status_code == 400


async def test_version_rules_refuse_bad_lineage_and_prompts_for_ml(api: Api) -> None:
    model_id = await new_model(api)
    path = f"{MODELS}/{model_id}/versions"
    before = await registry_events(api)
    cases = [
        ({"artifact": "a", "lineage": {"parent_version": 3}}, 422),
        ({"artifact": "a", "lineage": {"prompt_versions": ["p1"]}}, 422),
        ({"artifact": ""}, 400),
        ({"artifact": "a", "lineage": {"dataset": {"id": "d"}}}, 400),
        ({"artifact": "a", "lineage": {"unknown": 1}}, 400),
    ]
    for body, status in cases:
        response = await api.client.post(path, json=body, headers=api.auth())
        assert response.status_code == status, (body, response.text)
    assert await registry_events(api) == before


async def test_stage_and_archive_a_version_that_is_not_active(api: Api) -> None:
    model_id = await new_model(api, versions=2)
    await deploy(api, model_id, 1)
    path = f"{MODELS}/{model_id}/versions"
    refused = await api.client.post(
        f"{path}/1/stage", json={"status": "archived"}, headers=api.auth()
    )
    assert refused.status_code == 422
    archived = await api.client.post(
        f"{path}/2/stage", json={"status": "archived", "reason": "superseded"}, headers=api.auth()
    )
    assert archived.json()["status"] == "archived"
    staged = await api.client.post(
        f"{path}/2/stage", json={"status": "staging"}, headers=api.auth()
    )
    assert staged.json()["status"] == "staging"
    again = await api.client.post(f"{path}/2/stage", json={"status": "staging"}, headers=api.auth())
    assert again.status_code == 409


async def test_an_idempotent_deploy_retry_appends_nothing(api: Api) -> None:
    model_id = await new_model(api, versions=2)
    headers = {**api.auth("operator"), "Idempotency-Key": "deploy-2"}
    first = await api.client.post(
        f"{MODELS}/{model_id}/deploy", json={"version": 2}, headers=headers
    )
    before = await registry_events(api)
    again = await api.client.post(
        f"{MODELS}/{model_id}/deploy", json={"version": 2}, headers=headers
    )
    assert again.json() == first.json()
    assert await registry_events(api) == before
