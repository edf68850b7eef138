"""A prompt test job is stopped at once, queued or running (``POST …/test-jobs/{id}/stop``).

Stopping records ``PromptTestJob.Stopped`` with why and who: the job ends ``stopped``,
keeping the cases already run, and records no run. A running job's worker (the real
handler, on the offline model) meets the new version at its next save and stops
writing. The command follows the contract: ``If-Match`` (a stale one is 409 naming the
current version), ``Idempotency-Key``, 404 for an unknown job or one of another prompt,
409 once the job has ended, 400 for a body it does not take, each changing nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from application.prompt_test_worker import KIND as PROMPT_TEST
from tests.e2e.test_assistant_prompt_tests import PROMPTS, prompt_with_version
from tests.e2e.test_assistant_suites import PASSING, QUICK, eventually, queue_test_job
from tests.e2e.test_leased_jobs import claimed, prompt_test_handler
from tests.helpers import Api


def stop_path(prompt_id: str, job_id: str) -> str:
    return f"{PROMPTS}/{prompt_id}/test-jobs/{job_id}/stop"


async def shown(api: Api, prompt_id: str, job_id: str, wait_for: str = "") -> dict[str, Any]:
    response = await api.client.get(
        f"{PROMPTS}/{prompt_id}/test-jobs/{job_id}",
        params={"wait_for": wait_for} if wait_for else {},
        headers=api.auth("viewer"),
    )
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


async def test_a_queued_job_stops_at_once_and_bad_stops_change_nothing(api: Api) -> None:
    prompt_id = await prompt_with_version(api)
    other = await prompt_with_version(api, role="other-tester")
    queued = await queue_test_job(api, prompt_id, "Ada")
    job_id = queued["id"]
    before = await shown(api, prompt_id, job_id, queued["position"])
    operator = api.auth("operator")

    refused = [
        await api.client.post(stop_path(prompt_id, job_id), json={"why": "x"}, headers=operator),
        await api.client.post(stop_path(prompt_id, job_id), json={"reason": 5}, headers=operator),
        await api.client.post(
            stop_path(prompt_id, job_id), json={}, headers={**operator, "If-Match": '"99"'}
        ),
        await api.client.post(stop_path(other, job_id), json={}, headers=operator),
        await api.client.post(
            stop_path(prompt_id, "00000000-0000-0000-0000-000000000000"), json={}, headers=operator
        ),
        await api.client.post(stop_path(prompt_id, job_id), json={}, headers=api.auth("viewer")),
    ]
    assert [r.status_code for r in refused] == [400, 400, 409, 404, 404, 403]
    for response in refused:
        assert response.headers["content-type"] == "application/problem+json", response.text
    assert refused[2].json()["current_version"] == before["aggregate_version"]
    assert await shown(api, prompt_id, job_id) == before  # nothing was recorded

    stopped = await api.client.post(
        stop_path(prompt_id, job_id),
        json={"reason": "wrong inputs"},
        headers={
            **operator,
            "If-Match": f'"{before["aggregate_version"]}"',
            "Idempotency-Key": "s1",
        },
    )
    assert stopped.status_code == 200, stopped.text
    body = stopped.json()
    assert (body["status"], body["stop_reason"], body["stopped_by"]) == (
        "stopped",
        "wrong inputs",
        "test-operator",
    )
    assert body["finished_at"] is not None and body["done"] == 0 and body["run_id"] is None
    assert stopped.headers["ETag"] == f'"{body["aggregate_version"]}"'
    # the read model says the same, field for field
    assert await shown(api, prompt_id, job_id, stopped.headers["Aimm-Position"]) == body

    # the same key again: the same answer, replayed; a new stop: the job has ended
    again = await api.client.post(
        stop_path(prompt_id, job_id),
        json={"reason": "wrong inputs"},
        headers={**operator, "Idempotency-Key": "s1"},
    )
    assert again.status_code == 200 and again.json() == body
    assert again.headers["Idempotent-Replayed"] == "true"
    ended = await api.client.post(stop_path(prompt_id, job_id), headers=operator)
    assert ended.status_code == 409, ended.text
    assert "already ended (stopped)" in ended.json()["detail"]

    listed = await api.client.get(
        f"{PROMPTS}/{prompt_id}/test-jobs", params={"status": "stopped"}, headers=api.auth()
    )
    assert [j["id"] for j in listed.json()["items"]] == [job_id]


async def test_a_running_job_stops_and_its_worker_stops_writing(api: Api) -> None:
    prompt_id = await prompt_with_version(api)
    response = await api.client.post(
        f"{PROMPTS}/{prompt_id}/test",
        json={
            "versions": [1],
            "inputs": [{"values": {"name": f"Person {n}"}} for n in range(200)],
            "assertions": PASSING,
            "settings": QUICK,
            "reason": "a long run",
            "job": True,
        },
        headers=api.auth("operator"),
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    await shown(api, prompt_id, job_id, response.headers["Aimm-Position"])  # the queue reads it
    with prompt_test_handler(api.url, 30, heartbeat_seconds=0.5) as (queue, handler):
        assert await asyncio.to_thread(queue.sync) >= 1
        lease = await claimed(queue, handler.name, PROMPT_TEST)
        working = asyncio.create_task(asyncio.to_thread(handler, lease))
        running = await eventually(
            lambda: shown(api, prompt_id, job_id), lambda j: j["done"] >= 1, within=120
        )
        assert running["status"] == "running"
        stopped = await api.client.post(
            stop_path(prompt_id, job_id), json={"reason": "enough"}, headers=api.auth("operator")
        )
        assert stopped.status_code == 200, stopped.text
        at_stop = stopped.json()
        await asyncio.wait_for(working, timeout=120)  # the worker gave the job up
        stored = handler.load(UUID(job_id))
    # nothing was written after the stop: the case in flight was refused with its save
    assert (stored.status, stored.version) == ("stopped", at_stop["aggregate_version"])
    assert len(stored.cases) == at_stop["done"] < at_stop["total"] == 200
    final = await shown(api, prompt_id, job_id, stopped.headers["Aimm-Position"])
    assert (final["status"], final["run_id"], final["stopped_by"]) == (
        "stopped",
        None,
        "test-operator",
    )
