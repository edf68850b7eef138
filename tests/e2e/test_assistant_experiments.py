"""A/B experiments of prompt versions over HTTP (F11.4.5): start, resolve, outcomes,
results, conclusion. Real app, real PostgreSQL; no model is called (resolve only answers
which version and settings to run)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.e2e.test_assistant_api import (
    BASE,
    CONFIG,
    PROMPTS,
    add_role,
    commit,
    events,
    move,
    new_prompt,
    problem_fields,
    read,
    version_body,
)
from tests.helpers import Api

EXPERIMENTS = f"{BASE}/experiments"
RESOLVE = f"{BASE}/resolve"
SALT = "e2e-fixed-salt"  # a fixed salt makes the split, and so the test, deterministic


async def role_with_two_versions(api: Api, role: str = "writer") -> str:
    """A role running a prompt with versions 1 (production) and 2 (temperature 0.2)."""
    await add_role(api, role)
    prompt_id = await new_prompt(api, role)
    await commit(api, prompt_id, version_body("You are terse."))
    await commit(api, prompt_id, version_body("You are kind.", overrides={"temperature": 0.2}))
    await move(api, prompt_id, "production", 1)
    runs = await api.client.put(
        CONFIG,
        json={"roles": [{"role": role, "prompt_id": prompt_id}], "reason": "run it"},
        headers=api.auth("admin"),
    )
    assert runs.status_code == 200, runs.text
    return prompt_id


def definition(prompt_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "role": "writer",
        "variants": [
            {"prompt_id": prompt_id, "prompt_version": 1},
            {"prompt_id": prompt_id, "prompt_version": 2, "settings": {"max_tokens": 64}},
        ],
        "metric": "rate",
        "min_sample": 150,
        "salt": SALT,
        "reason": "kinder answers convert better?",
        **extra,
    }


async def start(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    started = await api.client.post(EXPERIMENTS, json=body, headers=api.auth("operator"))
    assert started.status_code == 201, started.text
    assert started.headers["location"] == f"{EXPERIMENTS}/{started.json()['id']}"
    found: dict[str, Any] = started.json()
    return found


async def resolve(api: Api, unit: str, role: str = "writer") -> dict[str, Any]:
    """Resolve as an agent that must see every change made before (``wait_for``: resolve
    reads the read models)."""
    response = await api.client.get(
        RESOLVE,
        params={"role": role, "unit": unit, "wait_for": await head(api)},
        headers=api.auth("operator"),
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    found: dict[str, Any] = response.json()
    return found


async def outcome(api: Api, experiment_id: str, unit: str, value: float) -> Any:
    return await api.client.post(
        f"{EXPERIMENTS}/{experiment_id}/outcomes",
        json={"unit": unit, "value": value},
        headers=api.auth("operator"),
    )


async def head(api: Api) -> str:
    [(position,)] = await api.fetch("SELECT max(notification_id) FROM assistant_events")
    return f"assistant:{position}"


async def test_an_experiment_from_start_to_conclusion(api: Api) -> None:
    prompt_id = await role_with_two_versions(api)
    before = await resolve(api, "u-0")
    assert (before["source"], before["prompt_version"], before["experiment_id"]) == (
        "production",
        1,
        None,
    )
    experiment = await start(api, definition(prompt_id))
    experiment_id = experiment["id"]
    assert experiment["status"] == "running" and experiment["salt"] == SALT
    again = await api.client.post(
        EXPERIMENTS, json=definition(prompt_id), headers=api.auth("operator")
    )
    assert again.status_code == 409, again.text  # one running experiment per role

    # sticky assignment, exposure recorded once
    first = await resolve(api, "u-1")
    assert first["source"] == "experiment" and first["exposure_recorded"] is True
    assert first["experiment_id"] == experiment_id
    count = await events(api)
    for _ in range(3):
        repeat = await resolve(api, "u-1")
        assert repeat["variant"] == first["variant"] and repeat["exposure_recorded"] is False
    assert await events(api) == count
    if first["variant"] == 1:
        assert first["prompt_version"] == 2
        assert first["settings"]["temperature"] == 0.2 and first["settings"]["max_tokens"] == 64

    results = await read(api, f"{EXPERIMENTS}/{experiment_id}/results", await head(api))
    assert results.json()["status"] == "insufficient_data" and results.json()["units"] == 1

    # many units split within sampling error
    units = [f"user-{i}" for i in range(400)]
    variants: dict[str, int] = {}
    for unit in units:
        variants[unit] = (await resolve(api, unit))["variant"]
    share = sum(1 for v in variants.values() if v == 1) / len(units)
    treated = await resolve(api, next(u for u in units if variants[u] == 1))
    assert 0.4 < share < 0.6  # 4 standard errors of a 50/50 split of 400

    # outcomes: variant 1 converts far better
    refused = await outcome(api, experiment_id, "never-seen", 1)
    assert refused.status_code == 409, refused.text
    bad = await outcome(api, experiment_id, "u-1", 2)
    assert bad.status_code == 400 and problem_fields(bad) == ["value"]
    unknown = await outcome(api, str(uuid.uuid4()), "u-1", 1)
    assert unknown.status_code == 404, unknown.text
    for i, unit in enumerate(units):
        if (variants[unit] == 1 and i % 10 < 6) or (variants[unit] == 0 and i % 10 < 2):
            recorded = await outcome(api, experiment_id, unit, 1)
            assert recorded.status_code == 200, recorded.text
    # a second outcome of a unit is reduced (a rate: it succeeded once)
    assert (await outcome(api, experiment_id, units[0], 0)).status_code == 200

    shown = await read(api, f"{EXPERIMENTS}/{experiment_id}/results", await head(api))
    body = shown.json()
    assert body["status"] == "ready" and body["units"] == 401
    control, treatment = body["variants"]
    assert control["n"] + treatment["n"] == 401
    assert 0.1 < control["estimate"] < 0.3 and 0.5 < treatment["estimate"] < 0.7
    versus = treatment["versus_control"]
    assert versus["lift"] > 1 and versus["p_value"] < 1e-6
    assert versus["adjusted_p_value"] == versus["p_value"]  # Holm over one comparison
    assert versus["significant"] is True
    assert control["ci"]["lower"] < control["estimate"] < control["ci"]["upper"]
    assert body["sample_ratio"]["mismatch"] is False
    [(exposed,)] = await api.fetch(
        "SELECT count(*) FROM rm_experiment_units WHERE experiment_id = $1",
        uuid.UUID(experiment_id),
    )
    assert exposed == 401

    # reads
    one = await read(api, f"{EXPERIMENTS}/{experiment_id}", await head(api))
    etag = one.headers["etag"]
    assert one.json()["exposed"] == 401 and etag == f'"{one.json()["version"]}"'
    listed = await read(api, EXPERIMENTS, await head(api), role="writer", status="running")
    assert [e["id"] for e in listed.json()["items"]] == [experiment_id]

    # conclusion: stale If-Match, admins only, then production moves to the winner
    conclude = f"{EXPERIMENTS}/{experiment_id}/conclude"
    winner = {"winner": 1, "reason": "kinder converts"}
    stale = await api.client.post(
        conclude, json=winner, headers={**api.auth("admin"), "If-Match": '"2"'}
    )
    assert stale.status_code == 409, stale.text
    forbidden = await api.client.post(conclude, json=winner, headers=api.auth("operator"))
    assert forbidden.status_code == 403, forbidden.text
    done = await api.client.post(
        conclude, json=winner, headers={**api.auth("admin"), "If-Match": etag}
    )
    assert done.status_code == 200, done.text
    # variant 1 (version 2) won with a setting of its own (max_tokens 64): production
    # runs exactly that, as a new version 3 whose overrides include it
    assert done.json()["changed"] is True and done.json()["prompt_version"] == 3
    after = await resolve(api, "user-0")
    assert (after["source"], after["prompt_version"]) == ("production", 3)
    assert after["experiment_id"] is None and after["exposure_recorded"] is False
    assert after["settings"] == treated["settings"]  # what the winner ran with
    prompt = await read(api, f"{PROMPTS}/{prompt_id}", done.headers["aimm-position"])
    assert prompt.json()["labels"]["production"] == 3
    made = await read(api, f"{PROMPTS}/{prompt_id}/versions/3", done.headers["aimm-position"])
    assert made.json()["overrides"] == {"temperature": 0.2, "max_tokens": 64}
    assert experiment_id in made.json()["message"]
    diff = await read(
        api, f"{PROMPTS}/{prompt_id}/diff", done.headers["aimm-position"], **{"from": 2, "to": 3}
    )
    assert [c["name"] for c in diff.json()["settings_changed"]] == ["max_tokens"]
    count = await events(api)
    repeated = await api.client.post(
        conclude, json=winner, headers={**api.auth("admin"), "If-Match": etag}
    )
    assert repeated.status_code == 200 and repeated.json()["changed"] is False
    assert await events(api) == count
    other = await api.client.post(conclude, json={"winner": 0}, headers=api.auth("admin"))
    assert other.status_code == 409, other.text
    late = await outcome(api, experiment_id, "user-1", 1)
    assert late.status_code == 409, late.text
    concluded = await read(api, f"{EXPERIMENTS}/{experiment_id}", await head(api))
    assert concluded.json()["status"] == "concluded" and concluded.json()["winner"] == 1
    # the role is free for a new experiment
    await start(api, definition(prompt_id, salt="another"))


async def test_racing_resolves_of_a_new_unit_expose_it_once(api: Api) -> None:
    prompt_id = await role_with_two_versions(api)
    experiment_id = (await start(api, definition(prompt_id)))["id"]
    count = await events(api)
    answers = await asyncio.gather(*(resolve(api, "racer") for _ in range(6)))
    assert len({a["variant"] for a in answers}) == 1
    assert sum(a["exposure_recorded"] for a in answers) == 1
    assert await events(api) == count + 1
    results = await read(api, f"{EXPERIMENTS}/{experiment_id}/results", await head(api))
    assert results.json()["units"] == 1


async def test_bad_definitions_name_every_field_and_unknown_ids_are_404(api: Api) -> None:
    prompt_id = await role_with_two_versions(api)
    other = await new_prompt(api, "writer", "other")
    body = definition(prompt_id, metric="clicks", min_sample=0, unit="planet")
    body["variants"] = [
        {"prompt_id": prompt_id, "prompt_version": 1, "weight": -1},
        {"prompt_id": prompt_id, "prompt_version": 9},
        {"prompt_id": other, "prompt_version": 1},
        {"prompt_id": str(uuid.uuid4()), "prompt_version": 1},
    ]
    count = await events(api)
    refused = await api.client.post(EXPERIMENTS, json=body, headers=api.auth("operator"))
    assert refused.status_code == 400, refused.text
    assert set(problem_fields(refused)) == {
        "variants[0].weight",
        "variants[1]",
        "variants[2]",
        "variants[3]",
        "metric",
        "min_sample",
        "unit",
    }
    no_role = await api.client.post(
        EXPERIMENTS, json=definition(prompt_id, role="nobody"), headers=api.auth("operator")
    )
    assert no_role.status_code == 400 and "role" in problem_fields(no_role)
    one = await api.client.post(
        EXPERIMENTS,
        json={**definition(prompt_id), "variants": definition(prompt_id)["variants"][:1]},
        headers=api.auth("operator"),
    )
    assert one.status_code == 400 and problem_fields(one) == ["variants"]
    assert await events(api) == count
    missing = str(uuid.uuid4())
    for path in (f"{EXPERIMENTS}/{missing}", f"{EXPERIMENTS}/{missing}/results"):
        response = await api.client.get(path, headers=api.auth("viewer"))
        assert response.status_code == 404, response.text
    gone = await api.client.post(
        f"{EXPERIMENTS}/{missing}/conclude", json={"winner": 0}, headers=api.auth("admin")
    )
    assert gone.status_code == 404, gone.text
    nobody = await api.client.get(
        RESOLVE, params={"role": "nobody", "unit": "u"}, headers=api.auth("operator")
    )
    assert nobody.status_code == 404, nobody.text


async def test_complete_resolves_exposes_and_runs_the_variant_on_the_model(api: Api) -> None:
    await add_role(api, "helper", settings={"max_tokens": 4, "temperature": 0, "seed": 1})
    prompt_id = await new_prompt(api, "helper")
    await commit(api, prompt_id, version_body("Answer in one word."))
    await commit(api, prompt_id, version_body("Answer briefly."))
    body = definition(prompt_id, role="helper")
    body["variants"][1]["settings"] = {"max_tokens": 3}
    experiment_id = (await start(api, body))["id"]
    path = f"{BASE}/roles/helper/complete"
    done = await api.client.post(
        path,
        params={"wait_for": await head(api)},
        json={"unit": "agent-7", "variables": {"question": "Sky colour?"}},
        headers=api.auth("operator"),
    )
    assert done.status_code == 200, done.text
    ran = done.json()
    assert ran["experiment_id"] == experiment_id and ran["exposure_recorded"] is True
    assert isinstance(ran["output"], str) and 1 <= ran["tokens_out"] <= 4
    assert ran["prompt_version"] == ran["variant"] + 1
    assert (await outcome(api, experiment_id, "agent-7", 1)).status_code == 200
    missing = await api.client.post(
        path, json={"unit": "agent-7", "variables": {}}, headers=api.auth("operator")
    )
    assert missing.status_code == 400 and problem_fields(missing) == ["variables"]


async def test_exposures_and_outcomes_after_the_conclusion_are_not_counted(api: Api) -> None:
    """A resolve that read the experiment running just before it was concluded records
    its exposure after ``Concluded``; the results count only what came before it, and a
    rebuild gives the same (the projection applies the log in order)."""
    prompt_id = await role_with_two_versions(api)
    experiment_id = (await start(api, definition(prompt_id)))["id"]
    await resolve(api, "early")
    assert (await outcome(api, experiment_id, "early", 1)).status_code == 200
    app = api.client.app.state.contexts.assistant
    experiment = app.get_experiment(uuid.UUID(experiment_id))
    done = await api.client.post(
        f"{EXPERIMENTS}/{experiment_id}/conclude",
        json={"winner": 0, "reason": "enough"},
        headers=api.auth("admin"),
    )
    assert done.status_code == 200, done.text
    # what a resolve racing the conclusion does: the exposure lands after it
    recorded, position = app.expose(experiment_id, experiment.definition, "late")
    assert recorded is True
    again, _ = app.expose(experiment_id, experiment.definition, "late")
    assert again is False  # once per unit, whatever the experiment's state
    shown = await read(api, f"{EXPERIMENTS}/{experiment_id}/results", f"assistant:{position}")
    assert shown.json()["units"] == 1
    assert [v["n"] for v in shown.json()["variants"]] in ([1, 0], [0, 1])
    late = await outcome(api, experiment_id, "early", 1)
    assert late.status_code == 409 and "concluded" in late.json()["detail"]
