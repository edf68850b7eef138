"""Datasets and training through HTTP, with a real worker training with JAX.

The worker runs in this process (a thread, as ``aimm worker`` runs it) against the
test's database; the killed-worker test uses a real ``aimm worker`` process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from eventsourcing.persistence import IntegrityError, InternalError
from eventsourcing.projection import EventSourcedProjectionRunner

from api.app import create_app
from application.registrar import ModelRegistrar, run_registrar
from application.training import TrainingApplication
from application.worker import TrainingWorker
from domain.metadata import acting_as
from infrastructure.postgres import eventsourcing_env
from infrastructure.settings import Settings
from infrastructure.wiring import jax_trainer, job_queue, postgres_ports
from tests.conftest import free_port
from tests.e2e.test_models_api import is_problem
from tests.helpers import ADMIN_KEY, Api

DATASETS = "/api/v1/ml/datasets"
JOBS = "/api/v1/ml/jobs"


def random_walk(days: int, seed: int, start: float = 100.0) -> list[dict[str, Any]]:
    """Daily bars of a seeded random walk with a little momentum (something to learn)."""
    rng = random.Random(seed)
    rows, close, previous = [], start, 0.0
    day = 0
    ordinal = 737425  # 2020-01-01
    from datetime import date

    while len(rows) < days:
        current = date.fromordinal(ordinal + day)
        day += 1
        if current.weekday() >= 5:
            continue
        change = 0.3 * previous + rng.gauss(0, 0.01)
        previous = change
        open_ = close
        close = close * math.exp(change)
        high = max(open_, close) * (1 + abs(rng.gauss(0, 0.004)))
        low = min(open_, close) * (1 - abs(rng.gauss(0, 0.004)))
        rows.append(
            {
                "date": current.isoformat(),
                "open": round(open_, 4),
                "high": round(high, 4),
                "low": round(low, 4),
                "close": round(close, 4),
                "volume": rng.randint(1000, 5000),
            }
        )
    return rows


BARS = random_walk(420, seed=7)


async def training_events(api: Api) -> list[str]:
    rows = await api.fetch("SELECT topic FROM training_events ORDER BY notification_id")
    return [r["topic"].rpartition(":")[2] for r in rows]


async def import_bars(api: Api, ticker: str = "ACME", rows: list[Any] = BARS) -> None:
    response = await api.client.post(
        f"/api/v1/market-data/{ticker}/bars", json={"rows": rows}, headers=api.auth("operator")
    )
    assert response.status_code == 201, response.text


async def create_dataset(api: Api, name: str = "acme-daily", **spec: Any) -> dict[str, Any]:
    body = {"name": name, "tickers": ["ACME"], "start": "2020-01-01", "end": "2021-12-31"}
    body.update(spec)
    response = await api.client.post(DATASETS, json=body, headers=api.auth("operator"))
    assert response.status_code == 201, response.text
    return {**response.json(), "position": response.headers["Aimm-Position"]}


async def train(api: Api, dataset_id: str, **body: Any) -> dict[str, Any]:
    body.setdefault("hyperparameters", {"epochs": 5, "batch_size": 32, "hidden_units": 16})
    response = await api.client.post(
        "/api/v1/ml/train", json={"dataset_id": dataset_id, **body}, headers=api.auth("operator")
    )
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"{JOBS}/{response.json()['id']}"
    return dict(response.json())


async def job(api: Api, job_id: str) -> dict[str, Any]:
    response = await api.client.get(f"{JOBS}/{job_id}", headers=api.auth("viewer"))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def wait_job(api: Api, job_id: str, until: Any, within: float = 90.0) -> dict[str, Any]:
    """Poll the job until ``until(job)`` holds."""
    deadline = time.monotonic() + within
    while True:
        response = await api.client.get(f"{JOBS}/{job_id}", headers=api.auth("viewer"))
        assert response.status_code == 200, response.text  # readable as soon as accepted
        current = dict(response.json())
        if until(current):
            return current
        assert time.monotonic() < deadline, f"job never reached the state: {current}"
        await asyncio.sleep(0.1)


def ended(j: dict[str, Any]) -> bool:
    return j["status"] in ("completed", "early_stopped", "stopped", "failed")


async def curve(api: Api, job_id: str) -> list[dict[str, Any]]:
    response = await api.client.get(f"{JOBS}/{job_id}/metrics", headers=api.auth("viewer"))
    assert response.status_code == 200, response.text
    return list(response.json()["points"])


class Worker:
    """A training worker and the registrar, in threads, on the test's database."""

    def __init__(self, url: str, lease_seconds: float = 3.0, max_attempts: int = 3) -> None:
        self.env = eventsourcing_env(url)
        self.training = TrainingApplication(self.env, postgres_ports())
        self.queue = job_queue(self.training, lease_seconds)
        self.worker = TrainingWorker(
            self.training, self.queue, jax_trainer, max_attempts=max_attempts,
            heartbeat_seconds=0.2, poll_seconds=0.1,
        )  # fmt: skip
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self.worker.run, args=(self.stopping,), daemon=True),
            threading.Thread(target=run_registrar, args=(self.env, self.stopping), daemon=True),
        ]

    def __enter__(self) -> Worker:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)
        self.training.close()


@pytest.fixture
def worker(api: Api) -> Iterator[Worker]:
    with Worker(api.url) as running:
        yield running


@pytest.fixture
async def dataset(api: Api) -> AsyncIterator[dict[str, Any]]:
    await import_bars(api)
    yield await create_dataset(api)


# -- datasets ---------------------------------------------------------------------------


async def test_a_dataset_needs_only_name_tickers_and_dates(api: Api) -> None:
    await import_bars(api)
    created = await create_dataset(api)
    assert created["feature_columns"] == [
        *(f"log_return_lag_{k}" for k in range(1, 6)),
        "rolling_volatility_20",
        "range_volatility_20",
        "volume_change",
    ]
    assert created["target"] == "direction"
    # 420 bars: the first 20 lack a full window, the last has no next day
    assert created["row_count"] == 420 - 20 - 1
    assert created["train_rows"] + created["validation_rows"] == created["row_count"]
    assert created["validation_rows"] == round(created["row_count"] * 0.2)
    assert created["content_hash"].startswith("sha256:")
    assert created["sources"]["ACME"]["version"] == 2  # created, then one import
    # the same rows under another name hash the same; another window does not
    again = await create_dataset(api, "acme-again")
    assert again["content_hash"] == created["content_hash"]
    other = await create_dataset(api, "acme-window-10", window=10)
    assert other["content_hash"] != created["content_hash"]
    # the artifact holds exactly the hashed rows
    response = await api.client.get(
        f"/api/v1/ml/artifacts/{created['content_hash']}", headers=api.auth("viewer")
    )
    assert response.status_code == 200
    assert "sha256:" + hashlib.sha256(response.content).hexdigest() == created["content_hash"]
    listed = await api.client.get(
        DATASETS, params={"limit": 2, "wait_for": other["position"]}, headers=api.auth("viewer")
    )
    page = listed.json()
    assert [d["name"] for d in page["items"]] == ["acme-daily", "acme-again"]
    rest = await api.client.get(
        DATASETS, params={"cursor": page["next_cursor"]}, headers=api.auth("viewer")
    )
    assert [d["name"] for d in rest.json()["items"]] == ["acme-window-10"]
    detail = await api.client.get(f"{DATASETS}/{created['id']}", headers=api.auth("viewer"))
    assert detail.json()["spec"]["lags"] == 5
    # the command answers the dataset as the read model serves it, field for field
    assert detail.json() == {k: v for k, v in created.items() if k != "position"}
    assert detail.json()["registered_by"] == "test-operator"


async def test_bad_datasets_are_refused_and_record_nothing(api: Api) -> None:
    await import_bars(api)
    base = {"name": "d", "tickers": ["ACME"], "start": "2020-01-01", "end": "2021-12-31"}
    bad = {**base, "lags": 0, "window": 1000, "features": ["log_returns", "nope"]}
    problem = is_problem(
        await api.client.post(DATASETS, json=bad, headers=api.auth("operator")), 400
    )
    fields = {e["field"] for e in problem["errors"]}  # type: ignore[union-attr]
    assert {"lags", "window", "features[1]"} <= fields
    unknown = {**base, "tickers": ["NOPE"]}
    is_problem(await api.client.post(DATASETS, json=unknown, headers=api.auth("operator")), 422)
    too_short = {**base, "end": "2020-02-15"}
    is_problem(await api.client.post(DATASETS, json=too_short, headers=api.auth("operator")), 422)
    is_problem(await api.client.post(DATASETS, json=base, headers=api.auth("viewer")), 403)
    assert await training_events(api) == []
    await create_dataset(api, "d")
    is_problem(await api.client.post(DATASETS, json=base, headers=api.auth("operator")), 409)
    assert await training_events(api) == ["Dataset.Registered", "UniqueClaim.Claimed"]
    is_problem(
        await api.client.get(f"{DATASETS}/00000000-0000-0000-0000-000000000000",
                             headers=api.auth("viewer")), 404,
    )  # fmt: skip


# -- training requests --------------------------------------------------------------------


async def test_out_of_bounds_settings_are_400_naming_each_field(
    api: Api, dataset: dict[str, Any]
) -> None:
    before = await training_events(api)
    body = {
        "dataset_id": dataset["id"],
        "hyperparameters": {"learning_rate": 5.0, "epochs": 0, "batch_size": 10_000},
        "early_stopping": {"monitor": "sharpe", "patience": -1},
    }
    problem = is_problem(
        await api.client.post("/api/v1/ml/train", json=body, headers=api.auth("operator")), 400
    )
    fields = {e["field"] for e in problem["errors"]}  # type: ignore[union-attr]
    # every bad field of both parts in the one 400
    assert fields == {
        "hyperparameters.learning_rate",
        "hyperparameters.epochs",
        "hyperparameters.batch_size",
        "early_stopping.monitor",
        "early_stopping.patience",
    }
    body["hyperparameters"] = {}
    problem = is_problem(
        await api.client.post("/api/v1/ml/train", json=body, headers=api.auth("operator")), 400
    )
    fields = {e["field"] for e in problem["errors"]}  # type: ignore[union-attr]
    assert fields == {"early_stopping.monitor", "early_stopping.patience"}
    wrong_type = {"dataset_id": dataset["id"], "hyperparameters": {"epochs": "many"}}
    is_problem(
        await api.client.post("/api/v1/ml/train", json=wrong_type, headers=api.auth("operator")),
        400,
    )
    unknown = {"dataset_id": "00000000-0000-0000-0000-000000000000"}
    is_problem(
        await api.client.post("/api/v1/ml/train", json=unknown, headers=api.auth("operator")), 404
    )
    regression = await create_dataset(api, "acme-returns", target="log_return")
    mismatch = {"dataset_id": regression["id"], "model_type": "mlp_classifier"}
    is_problem(
        await api.client.post("/api/v1/ml/train", json=mismatch, headers=api.auth("operator")),
        422,
    )
    viewer = {"dataset_id": dataset["id"]}
    is_problem(
        await api.client.post("/api/v1/ml/train", json=viewer, headers=api.auth("viewer")), 403
    )
    assert await training_events(api) == [*before, "Dataset.Registered", "UniqueClaim.Claimed"]


async def test_a_queued_job_stops_at_once_and_an_ended_job_refuses_a_stop(
    api: Api, dataset: dict[str, Any]
) -> None:
    queued = await train(api, dataset["id"])  # no worker runs in this test
    assert queued["status"] == "queued"
    response = await api.client.post(
        f"{JOBS}/{queued['id']}/stop", json={"reason": "wrong dataset"},
        headers=api.auth("operator"),
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "stopped"
    stopped = await wait_job(api, queued["id"], ended)
    assert stopped["status"] == "stopped"
    assert stopped["reason"] == "wrong dataset"
    assert stopped["stop_requested_by"] == "test-operator"
    assert stopped["artifact_hash"] is None
    is_problem(await api.client.post(f"{JOBS}/{queued['id']}/stop", headers=api.auth("operator")),
               409)  # fmt: skip
    is_problem(
        await api.client.post(f"{JOBS}/00000000-0000-0000-0000-000000000000/stop",
                              headers=api.auth("operator")), 404,
    )  # fmt: skip


# -- training runs --------------------------------------------------------------------------


async def test_a_run_trains_records_each_epoch_and_registers_a_model_version(
    api: Api, dataset: dict[str, Any], worker: Worker
) -> None:
    accepted = await train(api, dataset["id"], model_name="acme-direction")
    done = await wait_job(api, accepted["id"], lambda j: j["registered_model_version"])
    assert done["status"] == "completed"
    assert done["attempt"] == 1
    assert done["epochs_run"] == 5
    assert done["reason"] == "trained all 5 epochs"
    assert done["dataset_hash"] == dataset["content_hash"]
    assert set(done["best_metrics"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    points = await curve(api, accepted["id"])
    assert [p["epoch"] for p in points] == [1, 2, 3, 4, 5]
    assert all(p["end_of_epoch"] for p in points)
    assert points[-1]["loss"] < points[0]["loss"]
    assert min(points, key=lambda p: p["val_loss"])["epoch"] == done["best_epoch"]
    assert done["final_metrics"]["val_loss"] == points[-1]["val_loss"]
    # the artifact is the trained model, stored under its hash
    artifact = await api.client.get(
        f"/api/v1/ml/artifacts/{done['artifact_hash']}", headers=api.auth("viewer")
    )
    assert "sha256:" + hashlib.sha256(artifact.content).hexdigest() == done["artifact_hash"]
    # ... and the registry has a version pointing at it, the dataset and the run
    registered = done["registered_model_version"]
    assert registered["model_name"] == "acme-direction"
    model = await api.client.get(
        f"/api/v1/ai/models/{registered['model_id']}", headers=api.auth("viewer")
    )
    assert model.status_code == 200, model.text
    assert model.json()["kind"] == "ml"
    [body] = [v for v in model.json()["versions"] if v["version"] == registered["version"]]
    assert body["created_by"] == "process:model-registrar"
    assert body["artifact"] == done["artifact_hash"]
    assert body["lineage"]["dataset"] == {"id": dataset["id"], "hash": dataset["content_hash"]}
    assert body["lineage"]["training_run"] == accepted["id"]
    assert body["metrics"] == done["final_metrics"]
    rows = await api.fetch(
        "SELECT state FROM registry_events WHERE topic LIKE '%VersionRegistered'",
    )
    assert len(rows) == 1
    assert b"process:model-registrar" in bytes(rows[0]["state"])


async def test_identical_runs_give_identical_metrics(
    api: Api, dataset: dict[str, Any], worker: Worker
) -> None:
    settings = {"epochs": 4, "batch_size": 16, "hidden_units": 8, "seed": 3}
    first = await train(api, dataset["id"], hyperparameters=settings)
    second = await train(api, dataset["id"], hyperparameters=settings)
    other = await train(api, dataset["id"], hyperparameters={**settings, "seed": 4})
    for job_id in (first["id"], second["id"], other["id"]):
        await wait_job(api, job_id, ended)
    keys = ("epoch", "step", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")

    async def values(job_id: str) -> list[tuple[Any, ...]]:
        return [tuple(p[k] for k in keys) for p in await curve(api, job_id)]

    assert await values(first["id"]) == await values(second["id"])
    assert await values(first["id"]) != await values(other["id"])
    a, b = await job(api, first["id"]), await job(api, second["id"])
    assert a["artifact_hash"] == b["artifact_hash"]


async def test_early_stopping_ends_with_the_rule_and_the_values_it_compared(
    api: Api, dataset: dict[str, Any], worker: Worker
) -> None:
    accepted = await train(
        api,
        dataset["id"],
        hyperparameters={"epochs": 30, "batch_size": 32, "hidden_units": 8},
        # nothing beats the first epoch by 10: the second epoch stops the run
        early_stopping={"monitor": "val_loss", "patience": 1, "min_delta": 10.0},
    )
    done = await wait_job(api, accepted["id"], ended)
    assert done["status"] == "early_stopped"
    assert done["epochs_run"] == 2
    assert done["best_epoch"] == 1
    assert done["artifact_epoch"] == 1  # restore_best_weights defaults to true
    decision = done["early_stopping_decision"]
    assert decision["rule"]["monitor"] == "val_loss"
    assert decision["rule"]["direction"] == "min"
    assert decision["rule"]["patience"] == 1
    assert decision["best_epoch"] == 1
    assert [c["epoch"] for c in decision["compared"]] == [1, 2]
    assert decision["compared"][1]["improved"] is False
    points = await curve(api, accepted["id"])
    assert [p["early_stopping"]["wait"] for p in points] == [0, 1]
    assert decision["compared"][0]["value"] == points[0]["val_loss"]
    assert "did not improve" in done["reason"]
    # keep the last weights instead: the artifact is the second epoch's
    last = await train(
        api,
        dataset["id"],
        hyperparameters={"epochs": 30, "batch_size": 32, "hidden_units": 8},
        early_stopping={"patience": 1, "min_delta": 10.0, "restore_best_weights": False},
    )
    done_last = await wait_job(api, last["id"], ended)
    assert done_last["artifact_epoch"] == 2
    assert done_last["artifact_hash"] != done["artifact_hash"]


async def test_stop_ends_a_running_job_within_seconds(
    api: Api, dataset: dict[str, Any], worker: Worker
) -> None:
    accepted = await train(
        api,
        dataset["id"],
        hyperparameters={"epochs": 1000, "batch_size": 8, "hidden_units": 32},
        record_every_steps=10,
    )
    await wait_job(api, accepted["id"], lambda j: j["last_point"] is not None)
    response = await api.client.post(
        f"{JOBS}/{accepted['id']}/stop", json={"reason": "enough"}, headers=api.auth("operator")
    )
    assert response.status_code == 202, response.text
    # the behaviour, not the time: the worker ends the run it was training, long before
    # its 1000 epochs, keeping the points up to the stop
    done = await wait_job(api, accepted["id"], ended)
    assert done["status"] == "stopped"
    assert done["reason"] == "enough"
    assert done["epochs_run"] < 1000
    assert done["registered_model_version"] is None
    topics = await training_events(api)
    assert topics.count("TrainingRun.StopRequested") == 1
    assert topics[-1] == "TrainingRun.Stopped"
    # points every 10 steps, plus the end of each epoch
    points = await curve(api, accepted["id"])
    assert any(not p["end_of_epoch"] for p in points)
    assert [p["step"] for p in points] == sorted(p["step"] for p in points)


async def test_jobs_are_listed_filtered_and_compared(
    api: Api, dataset: dict[str, Any], worker: Worker
) -> None:
    slow = await train(api, dataset["id"], hyperparameters={"epochs": 4, "learning_rate": 0.0001})
    fast = await train(api, dataset["id"], hyperparameters={"epochs": 3, "learning_rate": 0.01})
    for job_id in (slow["id"], fast["id"]):
        await wait_job(api, job_id, ended)
    listed = await api.client.get(
        JOBS, params={"status": "completed", "dataset_id": dataset["id"]},
        headers=api.auth("viewer"),
    )  # fmt: skip
    assert [j["id"] for j in listed.json()["items"]] == [slow["id"], fast["id"]]
    # newest first, a page at a time, the cursor going on in that order
    newest = await api.client.get(
        JOBS, params={"order": "newest", "limit": 1}, headers=api.auth("viewer")
    )
    assert [j["id"] for j in newest.json()["items"]] == [fast["id"]]
    older = await api.client.get(
        JOBS, params={"order": "newest", "limit": 1, "cursor": newest.json()["next_cursor"]},
        headers=api.auth("viewer"),
    )  # fmt: skip
    assert [j["id"] for j in older.json()["items"]] == [slow["id"]]
    assert older.json()["next_cursor"] is None
    is_problem(await api.client.get(JOBS, params={"order": "up"}, headers=api.auth("viewer")), 400)
    none = await api.client.get(
        JOBS, params={"model_type": "mlp_regressor"}, headers=api.auth("viewer")
    )
    assert none.json()["items"] == []
    is_problem(await api.client.get(JOBS, params={"status": "done"}, headers=api.auth("viewer")),
               400)  # fmt: skip
    compared = await api.client.get(
        f"{JOBS}/compare", params={"ids": f"{slow['id']},{fast['id']}", "metric": "val_loss"},
        headers=api.auth("viewer"),
    )  # fmt: skip
    assert compared.status_code == 200, compared.text
    body = compared.json()
    assert set(body["differences"]) == {"hyperparameters.learning_rate", "hyperparameters.epochs"}
    assert body["differences"]["hyperparameters.learning_rate"] == {
        slow["id"]: 0.0001, fast["id"]: 0.01,
    }  # fmt: skip
    assert [c["epoch"] for c in body["curves"]] == [1, 2, 3, 4]
    assert set(body["curves"][0]) == {"epoch", slow["id"], fast["id"]}
    assert set(body["curves"][3]) == {"epoch", slow["id"]}
    values = [
        (c[j]["val_loss"], j) for c in body["curves"] for j in (slow["id"], fast["id"]) if j in c
    ]
    assert body["best"]["job_id"] == min(values)[1]
    assert body["best"]["value"] == min(values)[0]
    compare = f"{JOBS}/compare"
    for ids in (slow["id"], "x,y", f"{slow['id']}, {fast['id']}", ",".join([slow["id"]] * 11)):
        is_problem(
            await api.client.get(compare, params={"ids": ids}, headers=api.auth("viewer")), 400
        )
    # a repeated id is compared once
    once = await api.client.get(
        compare, params={"ids": f"{slow['id']},{slow['id']}"}, headers=api.auth("viewer")
    )
    assert once.status_code == 200, once.text
    assert [j["id"] for j in once.json()["jobs"]] == [slow["id"]]
    missing = f"{slow['id']},00000000-0000-0000-0000-000000000000"
    is_problem(await api.client.get(compare, params={"ids": missing}, headers=api.auth("viewer")),
               404)  # fmt: skip


# -- workers that die -------------------------------------------------------------------------


async def test_a_job_whose_worker_vanished_is_failed_after_max_attempts(
    api: Api, dataset: dict[str, Any]
) -> None:
    accepted = await train(api, dataset["id"])
    # a worker claims the job, starts it, and is never heard of again
    training = TrainingApplication(eventsourcing_env(api.url))
    try:
        queue = job_queue(training, lease_seconds=1.0)
        await wait_job(api, accepted["id"], lambda j: True)  # the read model has the job
        assert queue.sync() == 1
        lease = queue.claim("ghost")
        assert lease is not None
        with acting_as("worker:ghost", "test"):
            run = training.get_run(lease.run_id)
            run.start("ghost", 1, "first attempt")
            training.save(run)
    finally:
        training.close()
    with Worker(api.url, lease_seconds=1.0, max_attempts=1):
        done = await wait_job(api, accepted["id"], ended, within=30)
    assert done["status"] == "failed"
    assert "ghost" in done["reason"]
    assert "gave up after 1 attempt" in done["reason"]


async def test_a_killed_worker_process_job_is_taken_over_by_another_worker(
    api: Api, dataset: dict[str, Any]
) -> None:
    accepted = await train(
        api, dataset["id"], hyperparameters={"epochs": 400, "batch_size": 8, "hidden_units": 32}
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMM_")}
    env.update(AIMM_DATABASE_URL=api.url, AIMM_WORKER_LEASE_SECONDS="2")
    process = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited
        [sys.executable, "-m", "api.cli", "worker", "--no-registrar"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        running = await wait_job(api, accepted["id"], lambda j: j["last_point"] is not None)
        assert running["status"] == "running"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    first_worker = running["worker"]
    # nothing renews the lease now; a new worker takes the job over once it expires
    with Worker(api.url, lease_seconds=2.0):
        taken = await wait_job(
            api, accepted["id"], lambda j: j["attempt"] == 2 and j["last_point"], within=30
        )
        assert taken["worker"] != first_worker
        assert first_worker in taken["start_reason"]
        stop = await api.client.post(f"{JOBS}/{accepted['id']}/stop", headers=api.auth("operator"))
        assert stop.status_code in (200, 202), stop.text
        done = await wait_job(api, accepted["id"], ended, within=30)
    assert done["status"] == "stopped"
    topics = await training_events(api)
    assert topics.count("TrainingRun.Started") == 2
    # the curve shows the current attempt; the first attempt's points stay in the log
    points = await curve(api, accepted["id"])
    assert {p["attempt"] for p in points} == {2}


# -- live metrics over real HTTP ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def served(url: str) -> AsyncIterator[str]:
    """The app behind a real HTTP server (uvicorn) on a free port: streams are streamed."""
    settings = Settings.from_env({"AIMM_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY})
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, url), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "the server did not start"
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def read_events(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], on_point: Any = None
) -> list[dict[str, Any]]:
    """Read an SSE stream to its end: [{"event", "id", "data"}], calling on_point(n)."""
    received: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if not line:
                if current:
                    received.append(current)
                    if current["event"] == "point" and on_point is not None:
                        await on_point(len(received))
                    current = {}
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            current[name] = json.loads(value) if name == "data" else value
    return received


async def test_the_metrics_stream_delivers_points_while_the_job_runs(
    api: Api, dataset: dict[str, Any], worker: Worker
) -> None:
    accepted = await train(
        api, dataset["id"], hyperparameters={"epochs": 1000, "batch_size": 8, "hidden_units": 32}
    )
    statuses: list[str] = []

    async def on_point(count: int) -> None:
        statuses.append((await job(api, accepted["id"]))["status"])
        if count == 5:  # five points streamed while it trains: now stop it
            stop = await api.client.post(
                f"{JOBS}/{accepted['id']}/stop", json={"reason": "seen enough"},
                headers=api.auth("operator"),
            )  # fmt: skip
            assert stop.status_code == 202, stop.text

    headers = {**api.auth("viewer"), "Accept": "text/event-stream"}
    path = f"{JOBS}/{accepted['id']}/metrics"
    async with served(api.url) as base, httpx.AsyncClient(base_url=base, timeout=60) as client:
        await wait_job(api, accepted["id"], lambda j: True)
        received = await read_events(client, path, headers, on_point)
        # the points arrived while the job was still training
        assert statuses[:5] == ["running"] * 5
        points = [e for e in received if e["event"] == "point"]
        epochs = [p["data"]["epoch"] for p in points]
        assert epochs == list(range(1, len(points) + 1))
        assert 5 <= len(points) < 1000
        assert [int(p["id"]) for p in points] == sorted(int(p["id"]) for p in points)
        assert received[-1]["event"] == "status"
        assert received[-1]["data"]["status"] == "stopped"
        assert received[-1]["data"]["reason"] == "seen enough"
        assert received[-1]["data"]["final_metrics"]["val_loss"] == points[-1]["data"]["val_loss"]
        # Last-Event-ID resumes after the points already seen
        resumed = await read_events(client, path, {**headers, "Last-Event-ID": points[2]["id"]})
        assert [e["data"].get("epoch") for e in resumed] == [*epochs[3:], None]
        # without the header: the whole curve as JSON
        whole = await client.get(path, headers=api.auth("viewer"))
        assert [p["epoch"] for p in whole.json()["points"]] == epochs


class WatchedRegistrar(ModelRegistrar):
    """The registrar, noting each run whose ending it processed (registered, or was
    refused because another registrar's tracking record came first)."""

    def __init__(self, env: Any = None) -> None:
        super().__init__(env)
        self.processed: list[str] = []
        # built now rather than at the first event, when the worker's registrar builds
        # its own: two at once may collide creating the schema (it would retry, as
        # run_registrar does, but this one would stop before reaching the event)
        assert self.training is not None

    def process_event(self, domain_event: Any, tracking: Any) -> None:
        try:
            super().process_event(domain_event, tracking)
        finally:
            self.processed.append(str(domain_event.originator_id))


@contextlib.contextmanager
def registrar_following(env: dict[str, str]) -> Iterator[WatchedRegistrar]:
    """A registrar following the training log from its tracked position, taken now."""
    for attempt in range(5):
        try:  # the worker's registrar may be creating the same schema just now
            runner = EventSourcedProjectionRunner(
                application_class=TrainingApplication, projection_class=WatchedRegistrar, env=env
            )
            break
        except InternalError:
            if attempt == 4:
                raise
    # a refused tracking record stops the runner; leaving re-raises it: that is expected
    with contextlib.suppress(IntegrityError), runner:
        yield runner.projection


async def until(check: Any, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_two_registrars_and_a_restart_register_a_run_exactly_once(
    api: Api, dataset: dict[str, Any], worker: Worker
) -> None:
    # a second registrar, besides the worker's, follows the log from before the run
    with registrar_following(worker.env) as second:
        first = await train(api, dataset["id"], hyperparameters={"epochs": 2})
        await wait_job(api, first["id"], lambda j: j["registered_model_version"])
        # both have processed the run's ending: one registered it, the other was refused
        await until(lambda: first["id"] in second.processed)
    # a registrar starting afresh resumes after that run: the next ending is the first
    # it processes, and the first run is not registered again
    with registrar_following(worker.env) as third:
        later = await train(api, dataset["id"], hyperparameters={"epochs": 2, "seed": 3})
        await wait_job(api, later["id"], lambda j: j["registered_model_version"])
        await until(lambda: later["id"] in third.processed)
        assert third.processed == [later["id"]]
    versions = await api.fetch(
        "SELECT topic, notification_id FROM registry_events WHERE topic LIKE '%Version%'"
    )
    assert len(versions) == 2  # one version per run
    endings = await api.fetch(
        "SELECT max(notification_id) AS n FROM training_events "
        "WHERE topic LIKE '%Completed' OR topic LIKE '%EarlyStopped'"
    )
    tracking = await api.fetch(
        "SELECT notification_id FROM registry_tracking WHERE application_name = 'training'"
    )
    # the registrars' one position in the training log: the last ending
    assert [r["notification_id"] for r in tracking] == [endings[0]["n"]]
