"""A prediction job or a prompt test job whose worker vanished mid-way is failed after
``max_attempts``, naming the worker whose lease expired (``application.leased_jobs``), as
a training run is (``test_training_api``).

A "ghost" worker claims the job from the real queue with a one-second lease and records
``Started``, then is never heard of again. A real handler of the kind, with
``max_attempts=1``, claims the job once the lease has expired: the job ends ``failed``
with the reason, nothing is run a second time, and the queue holds the job as done.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

from application.assistant import AssistantApplication
from application.leased_jobs import LeasedJobs
from application.ports import JobQueue, Lease
from application.prediction_worker import PredictionJobs
from application.predictions import PredictionsApplication
from application.prompt_test_worker import KIND as PROMPT_TEST
from application.prompt_test_worker import PromptTestJobs
from application.training import TrainingApplication
from domain.metadata import acting_as
from infrastructure.postgres import eventsourcing_env
from infrastructure.settings import Settings
from infrastructure.wiring import forecast_engine, job_queue, llm_providers, postgres_ports
from tests.e2e.test_assistant_prompt_tests import PROMPTS, prompt_with_version
from tests.e2e.test_assistant_suites import eventually, queue_test_job
from tests.e2e.test_predictions_api import accepted, finished, sp500
from tests.helpers import Api

__all__ = ["sp500"]  # the fixture, from the predictions tests

PREDICTION = "prediction"  # the queue's kinds
LEASE = 1.0  # seconds: the ghost's lease, short so the test need not wait long


async def claimed(queue: JobQueue, owner: str, kind: str, within: float = 30.0) -> Lease:
    """The next lease of ``kind`` for ``owner`` (the ghost's must expire first)."""
    deadline = time.monotonic() + within
    while True:
        lease = await asyncio.to_thread(queue.claim, owner, (kind,))
        if lease is not None:
            return lease
        assert time.monotonic() < deadline, f"{owner} never claimed a {kind} job"
        await asyncio.sleep(0.1)


async def vanish_then_give_up(
    queue: JobQueue, handler: LeasedJobs, kind: str, job_id: str
) -> Callable[[], Any]:
    """The ghost starts the job and vanishes; the handler claims it after the lease
    expired and, past ``max_attempts``, fails it. Returns the job's aggregate loader."""
    assert await asyncio.to_thread(queue.sync) >= 1
    ghost = await claimed(queue, "ghost", kind)
    assert str(ghost.run_id) == job_id
    with acting_as("worker:ghost", "test"):
        job = handler.load(ghost.run_id)
        job.start("ghost", 1, "first attempt")
        handler.save(job)
    lease = await claimed(queue, handler.name, kind)
    assert lease.run_id == ghost.run_id and lease.attempt == 2
    await asyncio.to_thread(handler, lease)
    # released as done: nobody claims it again
    assert await asyncio.to_thread(queue.claim, "anyone", (kind,)) is None
    return lambda: handler.load(UUID(job_id))


@contextlib.contextmanager
def prompt_test_handler(
    url: str, lease_seconds: float, **options: Any
) -> Iterator[tuple[JobQueue, PromptTestJobs]]:
    """The real prompt test handler (``name`` test-worker, on the offline model) and the
    job queue it serves, on the test's database; their applications closed after."""
    env = eventsourcing_env(url)
    training = TrainingApplication(env, postgres_ports())
    assistant = AssistantApplication(env, postgres_ports(llm_providers(Settings.from_env({}))))
    try:
        queue = job_queue(training, lease_seconds=lease_seconds)
        yield queue, PromptTestJobs(assistant, queue, name="test-worker", **options)
    finally:
        training.close()
        assistant.close()


def assert_given_up(shown: dict[str, Any], field: str) -> None:
    """Failed, saying why in ``field`` (a prediction job's ``reason``, a prompt test
    job's ``error``: its ``reason`` is the requester's)."""
    assert shown["status"] == "failed", shown
    assert "gave up after 1 attempt" in shown[field], shown
    assert "ghost" in shown[field], shown


async def test_a_prediction_job_whose_worker_vanished_is_failed_after_max_attempts(
    api: Api, sp500: None
) -> None:
    job = await accepted(
        api, "run", {"ticker": "SP500", "model": "random_walk", "horizon": 5, "as_of": "2018-06-01"}
    )
    env = eventsourcing_env(api.url)
    training = TrainingApplication(env, postgres_ports())
    predictions = PredictionsApplication(env, postgres_ports())
    try:
        queue = job_queue(training, lease_seconds=LEASE)
        handler = PredictionJobs(
            predictions, training, queue, forecast_engine(), name="test-worker", max_attempts=1
        )
        load = await vanish_then_give_up(queue, handler, PREDICTION, job["id"])
        assert load().attempt == 1  # the handler never started an attempt of its own
    finally:
        training.close()
        predictions.close()
    done = await finished(api, job["id"], within=30)
    assert_given_up(done, "reason")
    assert done["made"] == 0


async def test_a_prompt_test_job_whose_worker_vanished_is_failed_after_max_attempts(
    api: Api,
) -> None:
    prompt_id = await prompt_with_version(api)
    queued = await queue_test_job(api, prompt_id, "Ada")
    location = f"{PROMPTS}/{prompt_id}/test-jobs/{queued['id']}"
    with prompt_test_handler(api.url, LEASE, max_attempts=1) as (queue, handler):
        load = await vanish_then_give_up(queue, handler, PROMPT_TEST, queued["id"])
        assert load().attempt == 1

    async def show() -> dict[str, Any]:
        shown: dict[str, Any] = (await api.client.get(location, headers=api.auth("viewer"))).json()
        return shown

    shown = await eventually(show, lambda j: j["status"] not in ("queued", "running"), within=30)
    assert_given_up(shown, "error")
    assert (shown["done"], shown["run_id"]) == (0, None)  # no case was run
