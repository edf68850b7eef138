"""Saved test suites, the production gate and long prompt test runs as jobs (F11.4.3).

Real app, real PostgreSQL, the real SmolLM2-135M in process (``max_tokens`` kept small).
Long runs are run by a real worker (the training worker's claim loop with the prompt
test handler, as ``aimm worker`` runs it) in a thread of this process.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from application.assistant import AssistantApplication
from application.prompt_test_worker import KIND, PromptTestJobs
from application.training import TrainingApplication
from application.worker import TrainingWorker
from infrastructure.postgres import eventsourcing_env
from infrastructure.settings import Settings
from infrastructure.wiring import jax_trainer, job_queue, llm_providers, postgres_ports
from tests.e2e.test_assistant_prompt_tests import (
    BASE,
    NEVER,
    PROMPTS,
    events,
    fields,
    prompt_with_version,
)
from tests.helpers import Api

UNKNOWN = "00000000-0000-4000-8000-000000000000"
QUICK = {"temperature": 0, "seed": 1, "max_tokens": 4}
PASSING = [{"kind": "max_chars", "value": 100_000}, {"kind": "not_contains", "value": NEVER}]
FAILING = [{"kind": "contains", "value": NEVER}]


def suite_body(
    n: int = 2, assertions: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "inputs": [{"name": f"p{i}", "values": {"name": f"Person {i}"}} for i in range(n)],
        "assertions": PASSING if assertions is None else assertions,
        "settings": QUICK,
        "reason": "smoke suite",
        **extra,
    }


async def put_suite(
    api: Api, prompt_id: str, body: dict[str, Any], **headers: str
) -> httpx.Response:
    return await api.client.put(
        f"{PROMPTS}/{prompt_id}/suite", json=body, headers={**api.auth("operator"), **headers}
    )


async def run_suite(api: Api, prompt_id: str, body: dict[str, Any]) -> httpx.Response:
    return await api.client.post(
        f"{PROMPTS}/{prompt_id}/suite/run", json=body, headers=api.auth("operator")
    )


async def new_version(api: Api, prompt_id: str, text: str) -> int:
    done = await api.client.put(
        f"{PROMPTS}/{prompt_id}",
        json={
            "system_template": "You are a friendly assistant. Answer in one short sentence.",
            "user_template": f"{text} {{{{name}}}}.",
            "variables": ["name"],
            "message": text,
        },
        headers=api.auth("operator"),
    )
    assert done.status_code == 201, done.text
    number: int = done.json()["version"]
    return number


async def move_production(api: Api, prompt_id: str, version: int) -> httpx.Response:
    return await api.client.put(
        f"{PROMPTS}/{prompt_id}/labels/production",
        json={"version": version, "reason": "release"},
        headers=api.auth(),
    )


async def require_suite_pass(api: Api, role: str, on: bool) -> str:
    """Set the role's gate; the position of the change (for ``wait_for``)."""
    changed = await api.client.put(
        f"{BASE}/config",
        json={"roles": [{"role": role, "require_suite_pass": on}], "reason": "gate"},
        headers=api.auth(),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["changed"] == [role]
    position: str = changed.headers["aimm-position"]
    return position


async def eventually(
    probe: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], within: float = 300
) -> Any:
    """Poll ``probe`` until ``done`` holds of its answer (bounded by ``within`` seconds)."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"not reached in {within}s: {value}"
        await asyncio.sleep(0.2)


class Worker:
    """A worker serving prompt test jobs (the training loop with the prompt test handler)."""

    def __init__(self, url: str) -> None:
        env = eventsourcing_env(url)
        settings = Settings.from_env({})
        self.training = TrainingApplication(env, postgres_ports())
        self.assistant = AssistantApplication(env, postgres_ports(llm_providers(settings)))
        queue = job_queue(self.training, lease_seconds=30)
        handler = PromptTestJobs(self.assistant, queue, name="suite-worker", heartbeat_seconds=0.5)
        self.worker = TrainingWorker(
            self.training, queue, jax_trainer, name="suite-worker", poll_seconds=0.1,
            handlers={KIND: handler},
        )  # fmt: skip
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.worker.run, args=(self.stopping,), daemon=True)

    def __enter__(self) -> Worker:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=120)
        self.training.close()
        self.assistant.close()


@pytest.fixture
def worker(api: Api) -> Iterator[Worker]:
    with Worker(api.url) as running:
        yield running


async def test_a_suite_is_saved_shown_and_an_identical_put_appends_nothing(api: Api) -> None:
    prompt_id = await prompt_with_version(api)
    missing = await api.client.get(f"{PROMPTS}/{prompt_id}/suite", headers=api.auth("viewer"))
    assert missing.status_code == 404, missing.text
    first = await put_suite(api, prompt_id, suite_body(), **{"If-Match": '"0"'})
    assert first.status_code == 201, first.text
    assert first.headers["location"] == f"{PROMPTS}/{prompt_id}/suite"
    saved = first.json()
    assert (saved["revision"], saved["changed"], saved["version"]) == (1, True, 2)
    assert first.headers["etag"] == '"2"'
    assert [i["values"]["name"] for i in saved["inputs"]] == ["Person 0", "Person 1"]

    shown = await api.client.get(
        f"{PROMPTS}/{prompt_id}/suite",
        params={"wait_for": first.headers["aimm-position"]},
        headers=api.auth("viewer"),
    )
    assert shown.status_code == 200, shown.text
    assert shown.headers["etag"] == '"2"'
    body = shown.json()
    assert body["suite_hash"] == saved["suite_hash"] and body["inputs"] == saved["inputs"]
    assert body["assertions"] == PASSING and body["settings"] == QUICK
    assert body["created_by"] and body["reason"] == "smoke suite"

    before = await events(api)
    same = await put_suite(api, prompt_id, suite_body(reason="again"), **{"If-Match": '"2"'})
    assert same.status_code == 200, same.text
    assert same.json()["changed"] is False and same.headers["etag"] == '"2"'
    assert await events(api) == before

    changed = await put_suite(api, prompt_id, suite_body(3), **{"If-Match": '"2"'})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["revision"], changed.json()["changed"]) == (2, True)
    assert changed.headers["etag"] == '"3"'

    stale = await put_suite(api, prompt_id, suite_body(4), **{"If-Match": '"2"'})
    assert stale.status_code == 409, stale.text
    assert stale.headers["content-type"].startswith("application/problem+json")
    assert stale.json()["current_version"] == 3

    key = {"Idempotency-Key": "suite-1"}
    once = await put_suite(api, prompt_id, suite_body(5), **key)
    after = await events(api)
    twice = await put_suite(api, prompt_id, suite_body(5), **key)
    assert (once.status_code, twice.status_code) == (200, 200)
    assert twice.headers["idempotent-replayed"] == "true" and await events(api) == after


async def test_bad_input_is_400_naming_each_field_and_unknown_ids_404(api: Api) -> None:
    prompt_id = await prompt_with_version(api)
    before = await events(api)
    bad = await put_suite(
        api,
        prompt_id,
        {
            "inputs": [{"values": {"name": "x"}}],
            "assertions": [{"kind": "sounds_nice"}, {"kind": "regex", "value": "("}],
            "settings": {"top_p": 0},
        },
    )
    assert bad.status_code == 400, bad.text
    assert set(fields(bad)) == {"assertions[0].kind", "assertions[1].value", "settings.top_p"}
    empty = await put_suite(api, prompt_id, {"inputs": []})
    assert empty.status_code == 400 and fields(empty) == ["inputs"], empty.text
    assert await events(api) == before

    assert (await put_suite(api, UNKNOWN, suite_body())).status_code == 404
    no_suite = await run_suite(api, prompt_id, {"versions": [1]})
    assert no_suite.status_code == 404, no_suite.text
    assert (await run_suite(api, UNKNOWN, {"versions": [1]})).status_code == 404
    for path in (f"{UNKNOWN}/suite", f"{UNKNOWN}/suite/runs", f"{prompt_id}/test-jobs/{UNKNOWN}"):
        found = await api.client.get(f"{PROMPTS}/{path}", headers=api.auth("viewer"))
        assert found.status_code == 404, (path, found.text)

    assert (await put_suite(api, prompt_id, suite_body(1))).status_code == 201
    unknown_version = await run_suite(api, prompt_id, {"versions": [1, 7, "nolabel"]})
    assert unknown_version.status_code == 400, unknown_version.text
    assert fields(unknown_version) == ["versions[1]", "versions[2]"]


async def test_a_suite_reruns_against_a_new_version_and_reports_failures(api: Api) -> None:
    prompt_id = await prompt_with_version(api)
    saved = await put_suite(api, prompt_id, suite_body(2, [*PASSING, *FAILING]))
    assert saved.status_code == 201, saved.text
    suite = saved.json()
    first = await run_suite(api, prompt_id, {"versions": [1], "reason": "baseline"})
    assert first.status_code == 201, first.text
    run = first.json()
    assert first.headers["location"] == f"{PROMPTS}/{prompt_id}/tests/{run['id']}"
    assert (run["total"], run["passed"], run["failed"]) == (2, 0, 2)
    for case in run["cases"]:
        assert [a["passed"] for a in case["assertions"]] == [True, True, False]
        assert not case["passed"] and case["output"] is not None

    version = await new_version(api, prompt_id, "Greet")
    again = await run_suite(api, prompt_id, {"versions": ["latest"], "reason": "new version"})
    assert again.status_code == 201, again.text
    [subject] = again.json()["subjects"]
    assert subject["version"] == version
    assert [c["rendered_user"] for c in again.json()["cases"]] == [
        "Greet Person 0.",
        "Greet Person 1.",
    ]

    runs = await api.client.get(
        f"{PROMPTS}/{prompt_id}/suite/runs",
        params={"wait_for": again.headers["aimm-position"]},
        headers=api.auth("viewer"),
    )
    assert runs.status_code == 200, runs.text
    items = runs.json()["items"]
    assert [(i["version"], i["failed"], i["current"]) for i in items] == [
        (1, 2, True),
        (version, 2, True),
    ]
    assert items[0]["run_id"] == run["id"] and items[0]["suite_hash"] == suite["suite_hash"]
    listed = await api.client.get(
        f"{PROMPTS}/{prompt_id}/tests",
        params={"wait_for": again.headers["aimm-position"]},
        headers=api.auth("viewer"),
    )
    assert len(listed.json()["items"]) == 2  # suite runs are test runs like any other


async def test_the_gate_refuses_production_without_a_passing_run_then_allows_it(
    api: Api,
) -> None:
    prompt_id = await prompt_with_version(api)  # version 1 in production
    position = await require_suite_pass(api, "tester", True)
    role = await api.client.get(
        f"{BASE}/roles/tester", params={"wait_for": position}, headers=api.auth("viewer")
    )
    assert role.json()["require_suite_pass"] is True
    history = await api.client.get(f"{BASE}/roles/tester/history", headers=api.auth("viewer"))
    changes = history.json()["items"][-1]["changes"]
    assert changes["require_suite_pass"] == {"before": False, "after": True}
    operator = await api.client.put(
        f"{BASE}/config",
        json={"roles": [{"role": "tester", "require_suite_pass": False}], "reason": "off"},
        headers=api.auth("operator"),
    )
    assert operator.status_code == 403, operator.text  # turning the gate off is for admins
    version = await new_version(api, prompt_id, "Welcome")
    before = await events(api)

    no_suite = await move_production(api, prompt_id, version)
    assert no_suite.status_code == 409, no_suite.text
    assert no_suite.headers["content-type"].startswith("application/problem+json")
    assert no_suite.json()["version"] == version and "no saved suite" in no_suite.json()["detail"]
    assert await events(api) == before

    failing = await put_suite(api, prompt_id, suite_body(2, FAILING))
    assert failing.status_code == 201, failing.text
    no_run = await move_production(api, prompt_id, version)
    assert no_run.status_code == 409 and no_run.json()["run_id"] is None, no_run.text
    assert no_run.json()["suite"]["revision"] == 1

    failed = await run_suite(api, prompt_id, {"versions": [version]})
    assert failed.status_code == 201 and failed.json()["failed"] == 2, failed.text
    refused = await move_production(api, prompt_id, version)
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["run_id"] == failed.json()["id"] and problem["version"] == version
    assert "failed 2 of 2" in problem["detail"]

    passing = await put_suite(
        api, prompt_id, suite_body(2), **{"If-Match": failing.headers["etag"]}
    )
    assert passing.status_code == 200, passing.text
    stale_run = await move_production(api, prompt_id, version)
    assert stale_run.status_code == 409 and "revision 1" in stale_run.json()["detail"]

    passed = await run_suite(api, prompt_id, {"versions": [version]})
    assert passed.status_code == 201 and passed.json()["failed"] == 0, passed.text
    moved = await move_production(api, prompt_id, version)
    assert moved.status_code == 200, moved.text
    assert moved.json()["labels"]["production"] == version

    back = await api.client.post(
        f"{PROMPTS}/{prompt_id}/rollback", json={"reason": "oops"}, headers=api.auth()
    )
    assert back.status_code == 409, back.text  # version 1 has no passing run of the suite
    assert back.json()["version"] == 1
    staging = await api.client.put(
        f"{PROMPTS}/{prompt_id}/labels/staging", json={"version": 1}, headers=api.auth()
    )
    assert staging.status_code == 200, staging.text  # only production is gated

    await require_suite_pass(api, "tester", False)
    rolled = await api.client.post(
        f"{PROMPTS}/{prompt_id}/rollback", json={"reason": "oops"}, headers=api.auth()
    )
    assert rolled.status_code == 200 and rolled.json()["labels"]["production"] == 1


async def test_a_long_run_is_a_job_a_worker_finishes_with_progress(
    api: Api, worker: Worker
) -> None:
    prompt_id = await prompt_with_version(api)
    saved = await put_suite(api, prompt_id, suite_body(21))
    assert saved.status_code == 201, saved.text
    response = await run_suite(api, prompt_id, {"versions": [1], "reason": "long"})
    assert response.status_code == 202, response.text
    job = response.json()
    location = response.headers["location"]
    assert location == f"{PROMPTS}/{prompt_id}/test-jobs/{job['id']}"
    assert (job["status"], job["total"], job["done"], job["run_id"]) == ("queued", 21, 0, None)
    assert job["suite"]["revision"] == 1

    async def show() -> dict[str, Any]:
        found = await api.client.get(location, headers=api.auth("viewer"))
        assert found.status_code == 200, found.text
        assert found.headers["etag"] == f'"{found.json()["aggregate_version"]}"'
        shown: dict[str, Any] = found.json()
        return shown

    seen: set[int] = set()

    def progressed(shown: dict[str, Any]) -> bool:
        seen.add(shown["done"])
        return shown["status"] in ("completed", "failed")

    finished = await eventually(show, progressed)
    assert finished["status"] == "completed", finished
    assert (finished["done"], finished["passed"], finished["failed"]) == (21, 21, 0)
    assert any(0 < done < 21 for done in seen), seen  # progress was visible on the way
    assert finished["attempt"] == 1 and finished["worker"] == "suite-worker"
    run = await api.client.get(finished["run"], headers=api.auth("viewer"))
    assert run.status_code == 200, run.text
    assert run.json()["id"] == finished["run_id"] and run.json()["total"] == 21
    assert run.json()["created_by"] != "worker:suite-worker"  # recorded as the requester
    runs = await api.client.get(f"{PROMPTS}/{prompt_id}/suite/runs", headers=api.auth("viewer"))
    assert [(i["version"], i["passed"]) for i in runs.json()["items"]] == [(1, 21)]


async def test_a_test_asked_as_a_job_answers_202_and_records_the_run(
    api: Api, worker: Worker
) -> None:
    prompt_id = await prompt_with_version(api)
    response = await api.client.post(
        f"{PROMPTS}/{prompt_id}/test",
        json={
            "versions": [1],
            "inputs": [{"values": {"name": "Ada"}}, {"values": {}}],
            "assertions": PASSING,
            "settings": QUICK,
            "job": True,
        },
        headers=api.auth("operator"),
    )
    assert response.status_code == 202, response.text
    assert response.json()["suite"] is None and response.json()["total"] == 2

    async def show() -> dict[str, Any]:
        found = await api.client.get(response.headers["location"], headers=api.auth("viewer"))
        shown: dict[str, Any] = found.json()
        return shown

    finished = await eventually(show, lambda s: s["status"] in ("completed", "failed"))
    assert (finished["status"], finished["passed"], finished["failed"]) == ("completed", 1, 1)
    run = await api.client.get(finished["run"], headers=api.auth("viewer"))
    cases = run.json()["cases"]
    assert cases[0]["passed"] and "name" in cases[1]["error"]


async def queue_test_job(api: Api, prompt_id: str, name: str) -> dict[str, Any]:
    response = await api.client.post(
        f"{PROMPTS}/{prompt_id}/test",
        json={
            "versions": [1],
            "inputs": [{"values": {"name": name}}],
            "assertions": PASSING,
            "settings": QUICK,
            "reason": name,
            "job": True,
        },
        headers=api.auth("operator"),
    )
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    job["position"] = response.headers["aimm-position"]
    return job


async def test_a_prompts_test_jobs_are_listed_oldest_or_newest_first_a_page_at_a_time(
    api: Api,
) -> None:
    prompt_id = await prompt_with_version(api)
    other = await prompt_with_version(api, role="other-tester")
    jobs = [await queue_test_job(api, prompt_id, f"Person {n}") for n in range(3)]
    await queue_test_job(api, other, "not listed with the first prompt")
    listing = f"{PROMPTS}/{prompt_id}/test-jobs"

    async def page(**params: Any) -> dict[str, Any]:
        response = await api.client.get(
            listing, params={"wait_for": jobs[-1]["position"], **params}, headers=api.auth("viewer")
        )
        assert response.status_code == 200, response.text
        shown: dict[str, Any] = response.json()
        return shown

    ids = [j["id"] for j in jobs]
    oldest = await page()
    assert [i["id"] for i in oldest["items"]] == ids and oldest["next_cursor"] is None
    assert [i["reason"] for i in oldest["items"]] == ["Person 0", "Person 1", "Person 2"]
    assert {i["status"] for i in oldest["items"]} == {"queued"}  # no worker runs here
    first = await page(order="newest", limit=2)
    assert [i["id"] for i in first["items"]] == ids[::-1][:2]
    rest = await page(order="newest", limit=2, cursor=first["next_cursor"])
    assert [i["id"] for i in rest["items"]] == ids[:1] and rest["next_cursor"] is None
    assert len((await page(status="queued"))["items"]) == 3
    assert (await page(status="completed"))["items"] == []
    # each item is the job as GET …/test-jobs/{id} shows it
    one = await api.client.get(f"{listing}/{ids[0]}", headers=api.auth("viewer"))
    assert oldest["items"][0] == one.json()

    for params, status in (
        ({"cursor": "bm90LW91cnM"}, 400),  # base64url of "not-ours": not a cursor we made
        ({"status": "finished"}, 400),
        ({"limit": 0}, 400),
        ({"order": "sideways"}, 400),
    ):
        refused = await api.client.get(listing, params=params, headers=api.auth("viewer"))
        assert refused.status_code == status, (params, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
    unknown = await api.client.get(f"{PROMPTS}/{UNKNOWN}/test-jobs", headers=api.auth("viewer"))
    assert unknown.status_code == 404, unknown.text
    assert unknown.headers["content-type"].startswith("application/problem+json")


async def test_an_experiment_conclusion_is_gated_like_a_production_move(api: Api) -> None:
    prompt_id = await prompt_with_version(api)  # version 1 in production
    version = await new_version(api, prompt_id, "Welcome")
    started = await api.client.post(
        f"{BASE}/experiments",
        json={
            "role": "tester",
            "variants": [
                {"prompt_id": prompt_id, "prompt_version": 1},
                {"prompt_id": prompt_id, "prompt_version": version},
            ],
            "metric": "rate",
            "min_sample": 1,
            "reason": "welcome or not",
        },
        headers=api.auth("operator"),
    )
    assert started.status_code == 201, started.text
    await require_suite_pass(api, "tester", True)
    assert (await put_suite(api, prompt_id, suite_body(1))).status_code == 201
    conclude = f"{BASE}/experiments/{started.json()['id']}/conclude"
    before = await events(api)
    refused = await api.client.post(
        conclude, json={"winner": 1, "reason": "it won"}, headers=api.auth()
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["version"] == version and refused.json()["run_id"] is None
    assert await events(api) == before  # still running, production unchanged

    passed = await run_suite(api, prompt_id, {"versions": [version]})
    assert passed.status_code == 201 and passed.json()["failed"] == 0, passed.text
    done = await api.client.post(
        conclude, json={"winner": 1, "reason": "it won"}, headers=api.auth()
    )
    assert done.status_code == 200, done.text
    assert (done.json()["changed"], done.json()["prompt_version"]) == (True, version)
