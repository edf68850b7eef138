"""Prompt tests against sample inputs over HTTP (F11.4.3), on the real embedded model.

Real app, real PostgreSQL, the real SmolLM2-135M in process (``max_tokens`` kept small):
outputs with token counts, determinism at temperature 0 with a seed, assertion verdicts,
every bad field named before any call, and a provider failure answered 503 with nothing
recorded.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.helpers import Api

BASE = "/api/v1/ai-assistant"
PROMPTS = f"{BASE}/prompts"
EMBEDDED = "embedded:smollm2-135m-instruct"
FAST = {"temperature": 0, "seed": 42, "max_tokens": 16}
NEVER = "zqxj-never-said"


async def events(api: Api) -> int:
    [(count,)] = await api.fetch("SELECT count(*) FROM assistant_events")
    return int(count)


async def prompt_with_version(api: Api, role: str = "tester") -> str:
    """A role on the embedded model and a prompt whose version 1 is in production."""
    added = await api.client.post(
        f"{BASE}/roles",
        json={"role": role, "model": EMBEDDED, "settings": FAST},
        headers=api.auth("operator"),
    )
    assert added.status_code == 201, added.text
    created = await api.client.post(
        PROMPTS, json={"role": role, "name": "greeter"}, headers=api.auth("operator")
    )
    assert created.status_code == 201, created.text
    prompt_id: str = created.json()["id"]
    version = {
        "system_template": "You are a friendly assistant. Answer in one short sentence.",
        "user_template": "Say hello to {{name}}.",
        "variables": ["name"],
        "message": "first",
    }
    done = await api.client.put(
        f"{PROMPTS}/{prompt_id}", json=version, headers=api.auth("operator")
    )
    assert done.status_code == 201, done.text
    moved = await api.client.put(
        f"{PROMPTS}/{prompt_id}/labels/production", json={"version": 1}, headers=api.auth()
    )
    assert moved.status_code == 200, moved.text
    return prompt_id


async def run(api: Api, prompt_id: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return await api.client.post(
        f"{PROMPTS}/{prompt_id}/test", json=body, headers={**api.auth("operator"), **headers}
    )


def fields(response: httpx.Response) -> list[str]:
    assert response.headers["content-type"].startswith("application/problem+json")
    return [e["field"] for e in response.json()["errors"]]


async def test_a_run_with_two_inputs_records_outputs_and_is_listed(api: Api) -> None:
    prompt_id = await prompt_with_version(api)
    body = {
        "versions": ["production"],
        "inputs": [
            {"name": "ada", "values": {"name": "Ada"}},
            {"values": {"name": "Bob"}},
            {"name": "nobody", "values": {}},
        ],
        "assertions": [
            {"kind": "max_chars", "value": 100_000},
            {"kind": "not_contains", "value": NEVER},
        ],
        "reason": "smoke test",
    }
    response = await run(api, prompt_id, body)
    assert response.status_code == 201, response.text
    out = response.json()
    assert response.headers["location"] == f"{PROMPTS}/{prompt_id}/tests/{out['id']}"
    assert response.headers["etag"] == '"1"'
    assert (out["total"], out["passed"], out["failed"]) == (3, 2, 1)
    [subject] = out["subjects"]
    assert (subject["version"], subject["asked"], subject["draft"]) == (1, "production", False)
    assert subject["provider"] == "embedded" and subject["settings"]["max_tokens"] == 16
    ada, bob, nobody = out["cases"]
    assert ada["input_name"] == "ada" and ada["rendered_user"] == "Say hello to Ada."
    assert bob["rendered_user"] == "Say hello to Bob."
    for case in (ada, bob):
        assert case["passed"] and case["error"] is None
        assert case["output"] and case["tokens_in"] > 0 and case["tokens_out"] > 0
        assert 0 < case["tokens_out"] <= 16 and case["latency_ms"] > 0
        assert case["finish_reason"] in ("stop", "length") and case["model"]
        assert [a["passed"] for a in case["assertions"]] == [True, True]
    assert not nobody["passed"] and nobody["output"] is None
    assert "name" in nobody["error"] and nobody["tokens_in"] is None
    assert out["created_by"] and out["reason"] == "smoke test"

    shown = await api.client.get(response.headers["location"], headers=api.auth("viewer"))
    assert shown.status_code == 200, shown.text
    assert shown.headers["etag"] == '"1"'
    assert shown.json() == out
    listed = await api.client.get(
        f"{PROMPTS}/{prompt_id}/tests",
        params={"wait_for": response.headers["aimm-position"]},
        headers=api.auth("viewer"),
    )
    assert listed.status_code == 200, listed.text
    [item] = listed.json()["items"]
    assert (item["id"], item["passed"], item["failed"]) == (out["id"], 2, 1)
    [(recorded,)] = await api.fetch(
        "SELECT count(*) FROM assistant_events WHERE topic LIKE '%PromptTestRun.Recorded'"
    )
    assert recorded == 1


async def test_temperature_zero_with_a_seed_gives_the_same_output_twice(api: Api) -> None:
    prompt_id = await prompt_with_version(api)
    body = {
        "versions": [1],
        "draft": {  # the same content as version 1, unsaved
            "system_template": "You are a friendly assistant. Answer in one short sentence.",
            "user_template": "Say hello to {{name}}.",
            "variables": ["name"],
        },
        "inputs": [{"values": {"name": "Grace"}}],
        "settings": {"temperature": 0, "seed": 7, "max_tokens": 24},
    }
    first = await run(api, prompt_id, body)
    second = await run(api, prompt_id, body)
    assert (first.status_code, second.status_code) == (201, 201), first.text + second.text
    outputs = [c["output"] for r in (first, second) for c in r.json()["cases"]]
    assert outputs[0] and len(set(outputs)) == 1, outputs
    version, draft = first.json()["subjects"]
    assert (version["draft"], draft["draft"], draft["version"]) == (False, True, None)
    assert version["content_hash"] == draft["content_hash"]
    assert first.json()["id"] != second.json()["id"]


async def test_failing_assertions_are_reported_failed_and_passing_ones_passed(api: Api) -> None:
    prompt_id = await prompt_with_version(api)
    body = {
        "versions": ["latest"],
        "inputs": [{"values": {"name": "Alan"}}],
        "assertions": [
            {"kind": "contains", "value": NEVER},
            {"kind": "max_chars", "value": 1},
            {"kind": "max_chars", "value": 100_000},
            {"kind": "not_contains", "value": NEVER},
        ],
    }
    response = await run(api, prompt_id, body)
    assert response.status_code == 201, response.text
    out = response.json()
    [case] = out["cases"]
    verdicts = [(a["kind"], a["passed"]) for a in case["assertions"]]
    assert verdicts == [
        ("contains", False),
        ("max_chars", False),
        ("max_chars", True),
        ("not_contains", True),
    ]
    assert NEVER in case["assertions"][0]["detail"]
    assert "characters, more than 1" in case["assertions"][1]["detail"]
    assert case["assertions"][2]["detail"] == ""
    assert not case["passed"] and (out["passed"], out["failed"]) == (0, 1)


async def test_bad_fields_are_400_naming_each_and_append_nothing(api: Api) -> None:
    prompt_id = await prompt_with_version(api)
    before = await events(api)
    bad = await run(
        api,
        prompt_id,
        {
            "versions": [1, 9, "nolabel", "production"],
            "inputs": [{"values": {"name": "x"}}],
            "assertions": [
                {"kind": "sounds_nice"},
                {"kind": "regex", "value": "("},
                {"kind": "max_chars", "value": 0},
            ],
            "settings": {"top_p": 0},
        },
    )
    assert bad.status_code == 400, bad.text
    assert set(fields(bad)) == {
        "versions[1]",
        "versions[2]",
        "versions[3]",
        "assertions[0].kind",
        "assertions[1].value",
        "assertions[2].value",
        "settings.top_p",
    }
    too_many = await run(
        api, prompt_id, {"versions": [1], "draft": {"system_template": "s", "user_template": ""},
                         "inputs": [{"values": {}}] * 201},
    )  # fmt: skip
    assert too_many.status_code == 400 and fields(too_many) == ["inputs"], too_many.text
    nothing = await run(api, prompt_id, {"inputs": [{"values": {}}]})
    assert nothing.status_code == 400 and fields(nothing) == ["versions"], nothing.text
    undeclared = await run(
        api,
        prompt_id,
        {
            "draft": {"system_template": "Hi {{who}}", "user_template": "{{name}}",
                      "variables": ["name"]},
            "inputs": [{"values": {"name": "x", "who": "y"}}],
        },
    )  # fmt: skip
    assert undeclared.status_code == 400, undeclared.text
    assert fields(undeclared) == ["draft.system_template"]
    assert await events(api) == before


async def test_unknown_prompt_or_run_is_404(api: Api) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    body = {"versions": [1], "inputs": [{"values": {}}]}
    assert (await run(api, unknown, body)).status_code == 404
    listed = await api.client.get(f"{PROMPTS}/{unknown}/tests", headers=api.auth("viewer"))
    assert listed.status_code == 404
    prompt_id = await prompt_with_version(api)
    shown = await api.client.get(
        f"{PROMPTS}/{prompt_id}/tests/{unknown}", headers=api.auth("viewer")
    )
    assert shown.status_code == 404


async def test_a_provider_failure_is_503_with_retry_after_and_appends_nothing(api: Api) -> None:
    prompt_id = await prompt_with_version(api)
    before = await events(api)
    # Some 9,000 tokens: beyond the embedded model's 4,096-token context, so it refuses
    # (at once: the prompt is never evaluated).
    response = await run(
        api,
        prompt_id,
        {
            "draft": {"system_template": "", "user_template": "{{a}}{{a}}{{a}}",
                      "variables": ["a"]},
            "inputs": [{"values": {"a": "hello " * 3000}}],
        },
        **{"Idempotency-Key": "too-long"},
    )  # fmt: skip
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"]
    assert "nothing was recorded" in response.json()["detail"]
    assert await events(api) == before


async def test_an_idempotency_key_retry_replays_without_running_again(api: Api) -> None:
    prompt_id = await prompt_with_version(api)
    body = {"versions": [1], "inputs": [{"values": {"name": "Lin"}}]}
    first = await run(api, prompt_id, body, **{"Idempotency-Key": "run-1"})
    assert first.status_code == 201, first.text
    after = await events(api)
    again = await run(api, prompt_id, body, **{"Idempotency-Key": "run-1"})
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert await events(api) == after
