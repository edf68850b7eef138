"""A role's ``max_tokens`` against its model's context length when the registry deploys a
version with a shorter one (F11.4.2), on the real embedded model.

The role is checked when it is saved; a registry reference (``registry:NAME@production``)
can name another version afterwards. Then the configuration warns, and the role's
completions (409) and tests (400 naming ``settings.max_tokens``) are refused until the
setting fits, instead of calling the model with a budget its context cannot hold.
"""

from __future__ import annotations

from typing import Any

from tests.e2e.test_assistant_api import BASE, CONFIG, problem_fields, read
from tests.e2e.test_assistant_prompt_tests import EMBEDDED, PROMPTS
from tests.helpers import Api

MODELS = "/api/v1/ai/models"


async def deploy(api: Api, model_id: str, version: int) -> str:
    done = await api.client.post(
        f"{MODELS}/{model_id}/deploy", json={"version": version}, headers=api.auth()
    )
    assert done.status_code == 200, done.text
    position: str = done.headers["aimm-position"]
    return position


async def served_model(api: Api) -> str:
    """An LLM of the registry served by the embedded model: version 1 states a context of
    4,096 tokens, version 2 of 64."""
    model = await api.client.post(
        MODELS, json={"name": "served-llm", "kind": "llm"}, headers=api.auth()
    )
    assert model.status_code == 201, model.text
    model_id: str = model.json()["id"]
    for length in (4096, 64):
        version = await api.client.post(
            f"{MODELS}/{model_id}/versions",
            json={
                "artifact": "hf://smollm2",
                "parameters": {"context_length": length, "serving": EMBEDDED},
            },
            headers=api.auth(),
        )
        assert version.status_code == 201, version.text
    return model_id


async def complete(api: Api, wait: str) -> Any:
    return await api.client.post(
        f"{BASE}/roles/desk/complete",
        params={"wait_for": wait},
        json={"unit": "agent-1", "variables": {"question": "Hi?"}},
        headers=api.auth("operator"),
    )


async def test_a_deploy_with_a_shorter_context_warns_and_refuses_the_roles_calls(
    api: Api,
) -> None:
    model_id = await served_model(api)
    await read(api, f"{MODELS}/{model_id}", await deploy(api, model_id, 1))
    settings = {"max_tokens": 100, "temperature": 0, "seed": 3}
    added = await api.client.post(
        f"{BASE}/roles",
        json={"role": "desk", "model": "registry:served-llm@production", "settings": settings},
        headers=api.auth("operator"),
    )
    assert added.status_code == 201, added.text
    assert added.json()["warnings"] == []
    assert added.json()["registry_model"]["context_length"] == 4096
    prompt = await api.client.post(
        PROMPTS, json={"role": "desk", "name": "system"}, headers=api.auth("operator")
    )
    prompt_id = prompt.json()["id"]
    version = {"system_template": "Be brief.", "user_template": "{{question}}", "message": "1"}
    committed = await api.client.put(
        f"{PROMPTS}/{prompt_id}", json={**version, "variables": ["question"]},
        headers=api.auth("operator"),
    )  # fmt: skip
    assert committed.status_code == 201, committed.text
    moved = await api.client.put(
        f"{PROMPTS}/{prompt_id}/labels/production", json={"version": 1}, headers=api.auth()
    )
    runs = await api.client.put(
        CONFIG,
        json={"roles": [{"role": "desk", "prompt_id": prompt_id}], "reason": "run it"},
        headers=api.auth("admin"),
    )
    assert moved.status_code == 200 and runs.status_code == 200, runs.text
    assert (await complete(api, runs.headers["aimm-position"])).status_code == 200

    # the registry deploys version 2 (64 tokens of context): max_tokens 100 no longer fits
    deployed = await deploy(api, model_id, 2)
    await read(api, f"{MODELS}/{model_id}", deployed)
    shown = await read(api, CONFIG, runs.headers["aimm-position"])
    [desk] = shown.json()["roles"]
    assert desk["registry_model"]["version"] == 2
    assert desk["registry_model"]["context_length"] == 64
    [warning] = desk["warnings"]
    assert warning["field"] == "settings.max_tokens"
    assert "100" in warning["message"] and "64" in warning["message"]
    refused = await complete(api, runs.headers["aimm-position"])
    assert refused.status_code == 409, refused.text
    assert "max_tokens 100 is over the context length 64" in refused.json()["detail"]
    test = {"versions": ["production"], "inputs": [{"values": {"question": "Hi?"}}]}
    untested = await api.client.post(
        f"{PROMPTS}/{prompt_id}/test", json=test, headers=api.auth("operator")
    )
    assert untested.status_code == 400 and problem_fields(untested) == ["settings.max_tokens"]
    fitted = await api.client.post(
        f"{PROMPTS}/{prompt_id}/test",
        json={**test, "settings": {"max_tokens": 8}},
        headers=api.auth("operator"),
    )
    assert fitted.status_code == 201, fitted.text

    # lowering the role's max_tokens clears the warning and the role runs again
    lowered = await api.client.put(
        CONFIG,
        json={"roles": [{"role": "desk", "settings": {"max_tokens": 8}}], "reason": "fit"},
        headers={**api.auth("operator"), "If-Match": shown.headers["etag"]},
    )
    assert lowered.status_code == 200, lowered.text
    assert lowered.json()["roles"][0]["warnings"] == []
    ran = await complete(api, lowered.headers["aimm-position"])
    assert ran.status_code == 200 and 1 <= ran.json()["tokens_out"] <= 8
