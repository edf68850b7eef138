"""The assistant's roles, settings, prompts, versions and labels over HTTP (F11.4.1, .2, .4).

Real app, real PostgreSQL, the real LLM provider registry (the embedded provider is asked
for its context length, and answers only the rebuild test's short prompt test run).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

import httpx

from application.assistant_seed import SEED_ROLES, seed_assistant
from infrastructure.postgres import create_pool
from projections.assistant import AssistantViews
from projections.base import live_tables
from projections.rebuild import rebuild
from tests.helpers import Api

BASE = "/api/v1/ai-assistant"
CONFIG = f"{BASE}/config"
ROLES = f"{BASE}/roles"
PROMPTS = f"{BASE}/prompts"
EMBEDDED = "embedded:smollm2-135m-instruct"
_names = itertools.count(1)


async def events(api: Api) -> int:
    [(count,)] = await api.fetch("SELECT count(*) FROM assistant_events")
    return int(count)


async def add_role(
    api: Api, key: str, model: str = EMBEDDED, settings: dict[str, Any] | None = None
) -> httpx.Response:
    response = await api.client.post(
        ROLES,
        json={"role": key, "model": model, "settings": settings or {}, "reason": f"add {key}"},
        headers=api.auth("operator"),
    )
    assert response.status_code == 201, response.text
    return response


async def new_prompt(api: Api, role: str, name: str = "system") -> str:
    created = await api.client.post(
        PROMPTS, json={"role": role, "name": name}, headers=api.auth("operator")
    )
    assert created.status_code == 201, created.text
    prompt_id: str = created.json()["id"]
    return prompt_id


def version_body(system: str, user: str = "{{question}}", **extra: Any) -> dict[str, Any]:
    return {
        "system_template": system,
        "user_template": user,
        "variables": ["question"],
        "message": f"edit {next(_names)}",
        **extra,
    }


async def commit(api: Api, prompt_id: str, body: dict[str, Any]) -> httpx.Response:
    response = await api.client.put(
        f"{PROMPTS}/{prompt_id}", json=body, headers=api.auth("operator")
    )
    assert response.status_code == 201, response.text
    return response


async def move(api: Api, prompt_id: str, label: str, version: int) -> httpx.Response:
    response = await api.client.put(
        f"{PROMPTS}/{prompt_id}/labels/{label}",
        json={"version": version, "reason": f"{label} to {version}"},
        headers=api.auth("admin"),
    )
    assert response.status_code == 200, response.text
    return response


async def read(api: Api, path: str, position: str, **params: Any) -> httpx.Response:
    response = await api.client.get(
        path, params={"wait_for": position, **params}, headers=api.auth("viewer")
    )
    assert response.status_code == 200, response.text
    return response


def problem_fields(response: httpx.Response) -> list[str]:
    assert response.headers["content-type"].startswith("application/problem+json")
    return [e["field"] for e in response.json()["errors"]]


# -- seeding ------------------------------------------------------------------------------


async def test_the_seed_adds_roles_with_prompts_in_production_once(api: Api) -> None:
    empty = await api.client.get(CONFIG, headers=api.auth("viewer"))
    assert (empty.status_code, empty.headers["etag"], empty.json()["roles"]) == (200, '"0"', [])
    contexts = api.client.app.state.contexts

    def seed() -> list[str]:
        return seed_assistant(contexts.assistant, contexts.registry)

    done = await asyncio.to_thread(seed)
    assert f"role {SEED_ROLES[0].key} added" in done
    after_first = await events(api)
    assert await asyncio.to_thread(seed) == []
    assert await events(api) == after_first
    [(position,)] = await api.fetch("SELECT max(notification_id) FROM assistant_events")
    config = (await read(api, CONFIG, f"assistant:{position}")).json()
    assert [r["role"] for r in config["roles"]] == sorted(r.key for r in SEED_ROLES)
    for role in config["roles"]:
        assert role["model"] == EMBEDDED
        assert role["prompt"]["label"] == "production" and role["prompt"]["version"] == 1
    history = await read(api, f"{ROLES}/risk-analyst/history", f"assistant:{position}")
    assert {entry["by"] for entry in history.json()["items"]} == {"system:seed"}


# -- roles and settings -------------------------------------------------------------------


async def test_a_stale_if_match_on_the_config_is_409_and_appends_nothing(api: Api) -> None:
    first = await api.client.post(
        ROLES,
        json={"role": "analyst", "model": EMBEDDED, "reason": "first"},
        headers={**api.auth("operator"), "If-Match": '"0"'},  # "0": no config yet
    )
    assert (first.status_code, first.headers["etag"]) == (201, '"2"')
    await add_role(api, "helper")
    shown = await read(api, CONFIG, (await add_role(api, "third")).headers["Aimm-Position"])
    current = shown.headers["etag"]
    assert current == f'"{shown.json()["version"]}"' == '"4"'
    before = await events(api)
    stale = await api.client.put(
        CONFIG,
        json={"roles": [{"role": "analyst", "settings": {"temperature": 0.1}}], "reason": "r"},
        headers={**api.auth("operator"), "If-Match": '"3"'},
    )
    assert stale.status_code == 409, stale.text
    assert stale.json()["current_version"] == 4 and stale.headers["etag"] == current
    assert await events(api) == before
    changed = await api.client.put(
        CONFIG,
        json={
            "roles": [
                {"role": "analyst", "settings": {"temperature": 0.1}},
                {"role": "helper", "settings": {"max_tokens": 300, "stop": ["END"], "seed": 42}},
            ],
            "reason": "tighter answers",
        },
        headers={**api.auth("operator"), "If-Match": current},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["changed"] == ["analyst", "helper"]
    assert changed.headers["etag"] == '"6"'  # one event per role changed
    shown = await read(api, CONFIG, changed.headers["Aimm-Position"])
    helper = next(r for r in shown.json()["roles"] if r["role"] == "helper")
    assert helper["settings"] == {
        "temperature": 0.7,
        "max_tokens": 300,
        "top_p": None,
        "stop": ["END"],
        "seed": 42,
    }
    assert shown.headers["etag"] == '"6"'


async def test_out_of_range_settings_are_400_naming_each_field_and_append_nothing(
    api: Api,
) -> None:
    await add_role(api, "analyst")
    await add_role(api, "helper")
    before = await events(api)
    refused = await api.client.put(
        CONFIG,
        json={
            "roles": [
                {"role": "analyst", "settings": {"temperature": 2.5, "max_tokens": 5000}},
                {"role": "helper", "model": "openai:gpt-4o", "settings": {"top_p": 0}},
                {"role": "nobody"},
            ],
            "reason": "too far",
        },
        headers=api.auth("operator"),
    )
    assert refused.status_code == 400, refused.text
    assert problem_fields(refused) == [
        "roles[0].settings.temperature",
        "roles[0].settings.max_tokens",  # above the embedded model's 4096 tokens
        "roles[1].model",  # no openai provider is configured here
        "roles[1].settings.top_p",
        "roles[2].role",
    ]
    new = await api.client.post(
        ROLES,
        json={
            "role": "Bad Key",
            "model": "smollm2",
            "settings": {"stop": ["", "a", "b", "c", "d"]},
        },
        headers=api.auth("operator"),
    )
    assert new.status_code == 400
    assert problem_fields(new) == ["model", "role", "settings.stop"]
    assert await events(api) == before


async def test_a_roles_history_lists_who_and_why_and_as_of_shows_past_settings(
    api: Api,
) -> None:
    added = await add_role(api, "analyst", settings={"temperature": 0.3})
    then = added.json()["updated_at"]
    changed = await api.client.put(
        CONFIG,
        json={"roles": [{"role": "analyst", "settings": {"temperature": 0.9}}], "reason": "warmer"},
        headers=api.auth("admin"),
    )
    assert changed.status_code == 200, changed.text
    history = await read(api, f"{ROLES}/analyst/history", changed.headers["Aimm-Position"])
    entries = history.json()["items"]
    assert [(e["action"], e["by"], e["reason"]) for e in entries] == [
        ("added", "test-operator", "add analyst"),
        ("changed", "bootstrap-admin", "warmer"),
    ]
    assert entries[1]["changes"] == {"temperature": {"before": 0.3, "after": 0.9}}
    assert all(e["correlation_id"] for e in entries)
    past = await api.client.get(CONFIG, params={"as_of": then}, headers=api.auth("viewer"))
    assert past.status_code == 200, past.text
    assert past.json()["roles"][0]["settings"]["temperature"] == 0.3
    assert past.headers["etag"] == '"2"' and past.json()["as_of"] is not None
    role_then = await api.client.get(
        f"{ROLES}/analyst", params={"as_of": then}, headers=api.auth("viewer")
    )
    assert role_then.json()["settings"]["temperature"] == 0.3
    before_any = await api.client.get(
        CONFIG, params={"as_of": "2001-01-01T00:00:00Z"}, headers=api.auth("viewer")
    )
    assert before_any.json()["roles"] == []
    now = await api.client.get(f"{ROLES}/analyst", headers=api.auth("viewer"))
    assert now.json()["settings"]["temperature"] == 0.9 and now.headers["etag"] == '"3"'


async def test_a_taken_role_key_or_prompt_name_is_409(api: Api) -> None:
    await add_role(api, "analyst")
    again = await api.client.post(
        ROLES, json={"role": "analyst", "model": EMBEDDED}, headers=api.auth("operator")
    )
    assert again.status_code == 409
    await new_prompt(api, "analyst", "system")
    taken = await api.client.post(
        PROMPTS, json={"role": "analyst", "name": "system"}, headers=api.auth("operator")
    )
    assert taken.status_code == 409
    unknown_role = await api.client.post(
        PROMPTS, json={"role": "nobody", "name": "Bad Name"}, headers=api.auth("operator")
    )
    assert unknown_role.status_code == 400
    assert problem_fields(unknown_role) == ["name", "role"]


# -- prompts and versions -----------------------------------------------------------------


async def test_versions_are_immutable_and_an_identical_put_appends_nothing(api: Api) -> None:
    await add_role(api, "analyst")
    prompt_id = await new_prompt(api, "analyst")
    body = version_body("You are a {{tone}} analyst.", variables=["tone", "question"])
    first = await commit(api, prompt_id, body)
    assert first.headers["location"] == f"{PROMPTS}/{prompt_id}/versions/1"
    shown = await api.client.get(first.headers["location"], headers=api.auth("viewer"))
    assert shown.status_code == 200 and shown.headers["etag"] == first.headers["etag"] == '"2"'
    assert shown.json()["effective_settings"]["temperature"] == 0.7
    before = await events(api)
    same = await api.client.put(
        f"{PROMPTS}/{prompt_id}",
        json={**body, "variables": ["question", "tone"], "message": "no change really"},
        headers=api.auth("operator"),
    )
    assert same.status_code == 200, same.text
    assert same.json()["version"] == 1 and same.json()["message"] == body["message"]
    assert "location" not in same.headers and same.headers["etag"] == '"2"'
    assert await events(api) == before
    stale = await api.client.put(
        f"{PROMPTS}/{prompt_id}",
        json=version_body("Changed"),
        headers={**api.auth("operator"), "If-Match": '"1"'},
    )
    assert stale.status_code == 409 and stale.json()["current_version"] == 2
    assert await events(api) == before
    second = await api.client.put(
        f"{PROMPTS}/{prompt_id}",
        json=version_body("Changed", overrides={"temperature": 0.1}),
        headers={**api.auth("operator"), "If-Match": '"2"'},
    )
    assert second.status_code == 201 and second.json()["version"] == 2
    old = await api.client.get(f"{PROMPTS}/{prompt_id}/versions/1", headers=api.auth("viewer"))
    assert old.json()["system_template"] == "You are a {{tone}} analyst."


async def test_an_undeclared_variable_is_400_naming_the_field_and_appends_nothing(
    api: Api,
) -> None:
    await add_role(api, "analyst")
    prompt_id = await new_prompt(api, "analyst")
    before = await events(api)
    refused = await api.client.put(
        f"{PROMPTS}/{prompt_id}",
        json=version_body(
            "Hello {{ name }} {{ 1x }}",
            user="{{question}} about {{ticker}}",
            overrides={"temperature": -1, "max_tokens": 100000},
            model="registry:missing@production",
        ),
        headers=api.auth("operator"),
    )
    assert refused.status_code == 400, refused.text
    assert problem_fields(refused) == [
        "model",
        "system_template",
        "system_template",
        "user_template",
        "overrides.temperature",
    ]
    assert "'ticker'" in refused.json()["detail"]
    assert await events(api) == before


async def test_unknown_ids_are_404(api: Api) -> None:
    await add_role(api, "analyst")
    prompt_id = await new_prompt(api, "analyst")
    await commit(api, prompt_id, version_body("v1"))
    unknown = uuid.uuid4()
    viewer, operator = api.auth("viewer"), api.auth("operator")
    for response in (
        await api.client.get(f"{PROMPTS}/{unknown}", headers=viewer),
        await api.client.put(f"{PROMPTS}/{unknown}", json=version_body("x"), headers=operator),
        await api.client.get(f"{PROMPTS}/{unknown}/versions", headers=viewer),
        await api.client.get(f"{PROMPTS}/{prompt_id}/versions/9", headers=viewer),
        await api.client.get(f"{PROMPTS}/{prompt_id}/diff?from=1&to=9", headers=viewer),
        await api.client.get(f"{PROMPTS}/{prompt_id}/diff?from=canary", headers=viewer),
        await api.client.put(
            f"{PROMPTS}/{unknown}/labels/staging", json={"version": 1}, headers=operator
        ),
        await api.client.delete(f"{PROMPTS}/{prompt_id}/labels/staging", headers=operator),
        await api.client.get(f"{ROLES}/nobody", headers=viewer),
        await api.client.get(f"{ROLES}/nobody/history", headers=viewer),
    ):
        assert response.status_code == 404, (response.request.url, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_the_diff_shows_the_texts_variables_and_settings_that_changed(api: Api) -> None:
    await add_role(api, "analyst")
    prompt_id = await new_prompt(api, "analyst")
    await commit(
        api,
        prompt_id,
        version_body(
            "You are a risk analyst.\nBe brief.\n",
            user="Q: {{question}}",
            overrides={"temperature": 0.2},
        ),
    )
    second = await commit(
        api,
        prompt_id,
        {
            **version_body(
                "You are a risk analyst.\nBe thorough.\n",
                user="Portfolio: {{portfolio}}\nQ: {{question}}",
                overrides={"temperature": 0.5, "max_tokens": 256},
            ),
            "variables": ["question", "portfolio"],
        },
    )
    await move(api, prompt_id, "production", 1)
    position = (await move(api, prompt_id, "staging", 2)).headers["Aimm-Position"]
    diff = await read(api, f"{PROMPTS}/{prompt_id}/diff", position, **{"from": "production"})
    body = diff.json()
    assert (body["from_version"], body["to_version"], body["identical"]) == (1, 2, False)
    assert body["system_diff"] == (
        "--- a/system\n"
        "+++ b/system\n"
        "@@ -1,2 +1,2 @@\n"
        " You are a risk analyst.\n"
        "-Be brief.\n"
        "+Be thorough.\n"
    )
    assert body["user_diff"] == (
        "--- a/user\n"
        "+++ b/user\n"
        "@@ -1 +1,2 @@\n"
        "+Portfolio: {{portfolio}}\n"
        " Q: {{question}}\n"
        "\\ No newline at end of file\n"  # as git marks a last line without one
    )
    assert (body["variables_added"], body["variables_removed"]) == (["portfolio"], [])
    assert body["settings_changed"] == [
        {"name": "temperature", "before": 0.2, "after": 0.5},
        {"name": "max_tokens", "before": None, "after": 256},
    ]
    assert body["model_changed"] is None
    same = await read(
        api, f"{PROMPTS}/{prompt_id}/diff", second.headers["Aimm-Position"], **{"from": "2"}
    )
    assert same.json()["identical"] is True and same.json()["system_diff"] == ""


# -- labels -------------------------------------------------------------------------------


async def test_as_of_gives_the_version_in_production_at_a_past_time(api: Api) -> None:
    await add_role(api, "analyst")
    prompt_id = await new_prompt(api, "analyst")
    for n in (1, 2, 3):
        await commit(api, prompt_id, version_body(f"version {n}"))
    await move(api, prompt_id, "production", 1)
    await move(api, prompt_id, "production", 3)
    runs = await api.client.put(
        CONFIG,
        json={"roles": [{"role": "analyst", "prompt_id": prompt_id}], "reason": "run it"},
        headers=api.auth("admin"),
    )
    assert runs.status_code == 200, runs.text
    assert runs.json()["roles"][0]["prompt"]["version"] == 3  # as GET shows it
    back = await api.client.post(
        f"{PROMPTS}/{prompt_id}/rollback",
        json={"reason": "v3 rambles"},
        headers=api.auth("admin"),
    )
    assert back.status_code == 200, back.text
    assert (back.json()["version"], back.json()["previous_version"]) == (1, 3)
    history = await read(api, f"{PROMPTS}/{prompt_id}/label-history", back.headers["Aimm-Position"])
    moves = history.json()["items"]
    assert [(m["action"], m["version"], m["by"]) for m in moves] == [
        ("move", 1, "bootstrap-admin"),
        ("move", 3, "bootstrap-admin"),
        ("rollback", 1, "bootstrap-admin"),
    ]
    assert moves[2]["reason"] == "v3 rambles"
    for move_entry, expected in zip(moves, (1, 3, 1), strict=True):
        past = await api.client.get(
            f"{PROMPTS}/{prompt_id}", params={"as_of": move_entry["at"]}, headers=api.auth("viewer")
        )
        assert past.status_code == 200, past.text
        assert past.json()["labels"]["production"] == expected
    config_then = await api.client.get(
        CONFIG, params={"as_of": moves[2]["at"]}, headers=api.auth("viewer")
    )
    assert config_then.json()["roles"][0]["prompt"]["version"] == 1
    before = await api.client.get(
        f"{PROMPTS}/{prompt_id}", params={"as_of": "2001-01-01T00:00:00Z"}, headers=api.auth()
    )
    assert before.status_code == 404
    now = await read(api, CONFIG, back.headers["Aimm-Position"])
    assert now.json()["roles"][0]["prompt"] == {
        "id": prompt_id,
        "name": "system",
        "label": "production",
        "version": 1,
    }


async def test_a_protected_label_refuses_a_non_admin_and_changes_nothing(api: Api) -> None:
    await add_role(api, "analyst")
    prompt_id = await new_prompt(api, "analyst")
    await commit(api, prompt_id, version_body("v1"))
    await commit(api, prompt_id, version_body("v2"))
    await move(api, prompt_id, "production", 1)
    before = await events(api)
    operator = api.auth("operator")
    for response in (
        await api.client.put(
            f"{PROMPTS}/{prompt_id}/labels/production", json={"version": 2}, headers=operator
        ),
        await api.client.delete(f"{PROMPTS}/{prompt_id}/labels/production", headers=operator),
        await api.client.post(f"{PROMPTS}/{prompt_id}/rollback", json={}, headers=operator),
        await api.client.put(
            CONFIG,
            json={"roles": [{"role": "analyst", "prompt_id": prompt_id}], "reason": "mine"},
            headers=operator,
        ),
    ):
        assert response.status_code == 403, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "admin" in response.json()["detail"]
    assert await events(api) == before
    staging = await api.client.put(
        f"{PROMPTS}/{prompt_id}/labels/staging", json={"version": 2}, headers=operator
    )
    assert staging.status_code == 200 and staging.json()["labels"] == {
        "production": 1,
        "staging": 2,
    }
    again = await api.client.put(
        f"{PROMPTS}/{prompt_id}/labels/staging", json={"version": 2}, headers=operator
    )
    assert again.json()["changed"] is False and await events(api) == before + 1
    reserved = await api.client.put(
        f"{PROMPTS}/{prompt_id}/labels/latest", json={"version": 2}, headers=operator
    )
    assert reserved.status_code == 400


async def test_prompts_are_listed_per_role_with_latest_version_and_labels(api: Api) -> None:
    await add_role(api, "analyst")
    await add_role(api, "helper")
    ids = [await new_prompt(api, "analyst", name) for name in ("c-prompt", "a-prompt")]
    other = await new_prompt(api, "helper", "b-prompt")
    await commit(api, ids[0], version_body("one"))
    position = (await move(api, ids[0], "production", 1)).headers["Aimm-Position"]
    first = await read(api, PROMPTS, position, limit=2)
    page = first.json()
    assert [(p["role"], p["name"]) for p in page["items"]] == [
        ("analyst", "a-prompt"),
        ("analyst", "c-prompt"),
    ]
    assert page["items"][1]["latest_version"] == 1 and page["items"][1]["labels"] == {
        "production": 1
    }
    assert page["items"][1]["latest_message"].startswith("edit")
    rest = await read(api, PROMPTS, position, limit=2, cursor=page["next_cursor"])
    assert [p["id"] for p in rest.json()["items"]] == [other]
    assert rest.json()["next_cursor"] is None
    helper = await read(api, PROMPTS, position, role="helper")
    assert [p["id"] for p in helper.json()["items"]] == [other]


# -- registry models and lineage ----------------------------------------------------------


async def registered_llm(api: Api) -> tuple[str, str]:
    model = await api.client.post(
        "/api/v1/ai/models", json={"name": "chat-llm", "kind": "llm"}, headers=api.auth()
    )
    model_id = model.json()["id"]
    for length in (2048, 8192):
        version = await api.client.post(
            f"/api/v1/ai/models/{model_id}/versions",
            json={"artifact": "hf://chat", "parameters": {"context_length": length}},
            headers=api.auth(),
        )
        assert version.status_code == 201, version.text
    deployed = await api.client.post(
        f"/api/v1/ai/models/{model_id}/deploy", json={"version": 2}, headers=api.auth()
    )
    assert deployed.status_code == 200, deployed.text
    return model_id, deployed.headers["Aimm-Position"]


async def test_a_prompt_version_names_the_registry_version_it_runs_on_in_the_lineage(
    api: Api,
) -> None:
    model_id, registry_position = await registered_llm(api)
    await read(api, f"/api/v1/ai/models/{model_id}", registry_position)
    too_long = await api.client.post(
        ROLES,
        json={"role": "chat", "model": "registry:chat-llm@1", "settings": {"max_tokens": 6000}},
        headers=api.auth("operator"),
    )
    assert too_long.status_code == 400 and problem_fields(too_long) == ["settings.max_tokens"]
    added = await add_role(
        api, "chat", model="registry:chat-llm@production", settings={"max_tokens": 6000}
    )
    shown = await read(api, f"{ROLES}/chat", added.headers["Aimm-Position"])
    target = {"model_id": model_id, "model_name": "chat-llm", "version": 2, "context_length": 8192}
    assert shown.json()["registry_model"] == added.json()["registry_model"] == target
    prompt_id = await new_prompt(api, "chat")
    committed = await commit(api, prompt_id, version_body("Be helpful."))
    assert committed.json()["runs_on"]["registry_version"] == 2
    assert committed.json()["runs_on"]["registry_model_id"] == model_id
    pinned = await commit(api, prompt_id, version_body("Be brief.", model=f"registry:{model_id}@1"))
    assert pinned.json()["runs_on"]["registry_version"] == 1
    lineage = await read(
        api, f"/api/v1/ai/models/{model_id}/lineage", pinned.headers["Aimm-Position"]
    )
    graph = lineage.json()
    edges = {(e["source"], e["relation"], e["target"]) for e in graph["edges"]}
    assert (f"prompt:{prompt_id}@1", "runs_on", f"version:{model_id}:2") in edges
    assert (f"prompt:{prompt_id}@2", "runs_on", f"version:{model_id}:1") in edges
    node = next(n for n in graph["nodes"] if n["id"] == f"prompt:{prompt_id}@1")
    assert node["label"] == "chat/system v1"
    ml = await api.client.post(
        "/api/v1/ai/models", json={"name": "an-ml-model", "kind": "ml"}, headers=api.auth()
    )
    refused = await api.client.put(
        CONFIG,
        json={"roles": [{"role": "chat", "model": f"registry:{ml.json()['id']}@1"}], "reason": "x"},
        headers=api.auth("operator"),
    )
    assert refused.status_code == 400 and problem_fields(refused) == ["roles[0].model"]


# -- read models --------------------------------------------------------------------------


async def table_rows(api: Api) -> dict[str, list[Any]]:
    rows = {}
    for table in live_tables(AssistantViews()).values():
        rows[table] = [tuple(r) for r in await api.fetch(f"SELECT * FROM {table} ORDER BY 1, 2")]
    return rows


async def test_a_rebuild_from_zero_gives_the_read_models_the_projector_built(api: Api) -> None:
    contexts = api.client.app.state.contexts
    await asyncio.to_thread(seed_assistant, contexts.assistant, contexts.registry)
    prompt_id = await new_prompt(api, "risk-analyst", "second")
    await commit(api, prompt_id, version_body("one"))
    await commit(api, prompt_id, version_body("two", overrides={"seed": 3}))
    await move(api, prompt_id, "staging", 1)
    await move(api, prompt_id, "staging", 2)
    removed = await api.client.delete(
        f"{PROMPTS}/{prompt_id}/labels/staging", headers=api.auth("admin")
    )
    tested = await api.client.post(
        f"{PROMPTS}/{prompt_id}/test",
        json={
            "versions": [1, 2],
            "inputs": [{"values": {"question": "Risk?"}}, {"values": {}}],
            "settings": {"temperature": 0, "max_tokens": 4},
        },
        headers=api.auth("operator"),
    )
    assert tested.status_code == 201, tested.text
    changed = await api.client.put(
        CONFIG,
        json={"roles": [{"role": "support-agent", "settings": {"top_p": 0.9}}], "reason": "r"},
        headers=api.auth(),
    )
    assert removed.status_code == changed.status_code == 200
    experiment = await api.client.post(
        f"{BASE}/experiments",
        json={
            "role": "risk-analyst",
            "variants": [
                {"prompt_id": prompt_id, "prompt_version": 1},
                {"prompt_id": prompt_id, "prompt_version": 2},
            ],
            "metric": "rate",
            "min_sample": 10,
        },
        headers=api.auth("operator"),
    )
    assert experiment.status_code == 201, experiment.text
    resolved = await api.client.get(
        f"{BASE}/resolve",
        params={
            "role": "risk-analyst",
            "unit": "u1",
            "wait_for": experiment.headers["Aimm-Position"],
        },
        headers=api.auth(),
    )
    assert resolved.status_code == 200, resolved.text
    outcome = await api.client.post(
        f"{BASE}/experiments/{experiment.json()['id']}/outcomes",
        json={"unit": "u1", "value": 1},
        headers=api.auth(),
    )
    assert outcome.status_code == 200, outcome.text
    await read(api, CONFIG, outcome.headers["Aimm-Position"])
    live = await table_rows(api)
    assert all(live.values())
    pool = await create_pool(api.url, max_size=2)  # the app's pool is on its own loop
    try:
        result = await rebuild(pool, AssistantViews())
    finally:
        await pool.close()
    assert result.events > 0
    assert await table_rows(api) == live
