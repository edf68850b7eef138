"""Predictions through HTTP, with a real worker forecasting with JAX and a real scorer.

The worker (the training worker's claim loop with the prediction handler, as ``aimm
worker`` runs it), the model registrar and the scorer run in threads of this process
against the test's database; the app runs its projector in-process. Bars are the
sample S&P 500 closes (``data/sample``), imported over HTTP as CSV.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import pytest

from application.prediction_worker import PredictionJobs
from application.predictions import PredictionsApplication
from application.registrar import run_registrar
from application.scorer import run_scorer
from application.training import TrainingApplication
from application.worker import TrainingWorker
from domain.predictions.prediction import prediction_id
from infrastructure.postgres import eventsourcing_env
from infrastructure.wiring import (
    forecast_engine,
    jax_trainer,
    job_queue,
    pending_scores,
    postgres_ports,
)
from tests.e2e.test_models_api import is_problem
from tests.helpers import Api

PREDICTIONS = "/api/v1/predictions"
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "SP500.csv.gz"


def sample_rows() -> list[dict[str, str]]:
    with gzip.open(SAMPLE, "rt", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


ROWS = sample_rows()


def as_csv(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


async def import_rows(
    api: Api, rows: list[dict[str, str]], *, ticker: str = "SP500", replace: bool = False
) -> dict[str, Any]:
    response = await api.client.post(
        f"/api/v1/market-data/{ticker}/bars",
        content=as_csv(rows),
        params={"replace": "true"} if replace else None,
        headers={**api.auth("operator"), "Content-Type": "text/csv"},
    )
    assert response.status_code in (200, 201), response.text
    return {**response.json(), "position": int(response.headers["Aimm-Position"].split(":")[1])}


def rows_between(first: str | None = None, last: str | None = None) -> list[dict[str, str]]:
    return [
        r
        for r in ROWS
        if (first is None or r["date"] >= first) and (last is None or r["date"] <= last)
    ]


class Forecasting:
    """A worker (training and prediction jobs), the registrar and scorers, in threads."""

    def __init__(self, url: str) -> None:
        self.env = eventsourcing_env(url)
        self.ports = postgres_ports()
        self.training = TrainingApplication(self.env, self.ports)
        self.predictions = PredictionsApplication(self.env, self.ports)
        self.queue = job_queue(self.training, lease_seconds=10)
        handler = PredictionJobs(
            self.predictions, self.training, self.queue, forecast_engine(), name="test-worker",
            heartbeat_seconds=0.5,
        )  # fmt: skip
        self.worker = TrainingWorker(
            self.training, self.queue, jax_trainer, name="test-worker", heartbeat_seconds=0.2,
            poll_seconds=0.1, handlers={"prediction": handler},
        )  # fmt: skip
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self.worker.run, args=(self.stopping,), daemon=True),
            threading.Thread(target=run_registrar, args=(self.env, self.stopping), daemon=True),
        ]
        self.scorers: list[tuple[threading.Event, threading.Thread]] = []

    def add_scorer(self) -> None:
        stop = threading.Event()
        thread = threading.Thread(
            target=run_scorer, args=(self.env, self.ports, pending_scores, stop), daemon=True
        )
        thread.start()
        self.scorers.append((stop, thread))

    def stop_scorers(self) -> None:
        for stop, thread in self.scorers:
            stop.set()
            thread.join(timeout=60)
        self.scorers.clear()

    def __enter__(self) -> Forecasting:
        for thread in self.threads:
            thread.start()
        self.add_scorer()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.stop_scorers()
        for thread in self.threads:
            thread.join(timeout=120)
        self.training.close()
        self.predictions.close()


@pytest.fixture
def forecasting(api: Api) -> Iterator[Forecasting]:
    with Forecasting(api.url) as running:
        yield running


@pytest.fixture
async def sp500(api: Api) -> AsyncIterator[None]:
    await import_rows(api, ROWS)
    yield


async def post(api: Api, path: str, body: dict[str, Any], role: str = "operator") -> Any:
    return await api.client.post(f"{PREDICTIONS}/{path}", json=body, headers=api.auth(role))


async def accepted(api: Api, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await post(api, path, body)
    assert response.status_code == 202, response.text
    location = response.headers["Location"]
    assert location == f"{PREDICTIONS}/jobs/{response.json()['id']}"
    at_once = await api.client.get(location, headers=api.auth("viewer"))
    assert at_once.status_code == 200, at_once.text  # readable at once, no wait_for
    return dict(response.json())


async def wait_until(
    check: Callable[[], Any], what: str, within: float = 240.0, every: float = 0.2
) -> Any:
    """Poll ``check`` (an async callable) until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(every)


async def finished(api: Api, job_id: str, within: float = 240.0) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        response = await api.client.get(f"{PREDICTIONS}/jobs/{job_id}", headers=api.auth("viewer"))
        assert response.status_code == 200, response.text
        body = dict(response.json())
        return body if body["status"] in ("completed", "failed") else None

    job: dict[str, Any] = await wait_until(check, f"job {job_id} ends", within)
    return job


async def predictions_of(api: Api, job_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500}
        if cursor:
            params["cursor"] = cursor
        response = await api.client.get(
            f"{PREDICTIONS}/jobs/{job_id}/predictions", params=params, headers=api.auth("viewer")
        )
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def count(api: Api, sql: str, *args: Any) -> int:
    [row] = await api.fetch(sql, *args)
    return int(row[0])


async def fully_scored(api: Api, job_id: str, expected: int) -> None:
    """Wait until the job's predictions have ``expected`` scored steps in the read model."""

    async def check() -> bool:
        n = await count(api, "SELECT count(*) FROM rm_prediction_scores WHERE job_id = $1",
                        UUID(job_id))  # fmt: skip
        assert n <= expected
        return n == expected

    await wait_until(check, f"{expected} scores of job {job_id}")


def assert_nested_and_widening(prediction: dict[str, Any]) -> None:
    levels = sorted(prediction["levels"])
    previous: dict[str, float] = {}
    for step in prediction["steps"]:
        bands = step["bands"]
        for inner, outer in itertools.pairwise(levels):
            a, b = bands[f"{inner:g}"], bands[f"{outer:g}"]
            assert b["lower"] <= a["lower"] <= step["median"] <= a["upper"] <= b["upper"], step
        for level in levels:
            band = bands[f"{level:g}"]
            width = band["upper"] - band["lower"]
            assert width >= previous.get(f"{level:g}", 0.0) - 1e-9, (level, step["step"])
            previous[f"{level:g}"] = width


# -- runs ---------------------------------------------------------------------------------


async def test_a_run_forecasts_at_the_cutoff_with_calibrated_nested_widening_bands(
    api: Api, sp500: None, forecasting: Forecasting
) -> None:
    job = await accepted(
        api, "run", {"ticker": "sp500", "model": "garch", "horizon": 10, "as_of": "2018-06-03"}
    )
    assert job["ticker"] == "SP500" and job["kind"] == "run"
    assert job["first_cutoff"] == "2018-06-01"  # the last bar on or before as_of (a Sunday)
    done = await finished(api, job["id"])
    assert done["status"] == "completed", done["reason"]
    assert (done["made"], done["total"]) == (1, 1)
    [prediction] = await predictions_of(api, job["id"])
    assert prediction["cutoff"] == "2018-06-01" and prediction["model"] == "garch"
    assert prediction["last_close"] == pytest.approx(2734.62, abs=0.01)
    assert len(prediction["steps"]) == 10 and prediction["levels"] == [50.0, 80.0, 95.0]
    assert prediction["method"]["distribution"] == "normal"
    assert prediction["method"]["calibration"] in ("weighted_conformal", "partial")
    assert {"mu", "omega", "alpha", "beta", "loglikelihood"} <= set(prediction["params"])
    assert 0 < prediction["params"]["alpha"] + prediction["params"]["beta"] < 1
    assert_nested_and_widening(prediction)
    # the targets exist already: each of the ten steps is scored once, at once
    await fully_scored(api, job["id"], 10)
    [scored] = await predictions_of(api, job["id"])
    assert [s["step"] for s in scored["scores"]] == list(range(1, 11))
    first = scored["scores"][0]
    assert first["target_date"] == "2018-06-04" and first["actual"] == pytest.approx(2746.87)


async def test_cached_dashboard_and_accuracy_follow_each_new_prediction_and_score(
    api: Api, sp500: None, forecasting: Forecasting
) -> None:
    """The dashboard and accuracy answers are kept by read-model position (api.read_cache):
    asked again they must still show what arrived since."""

    async def get(path: str, **params: Any) -> dict[str, Any]:
        response = await api.client.get(
            f"{PREDICTIONS}/{path}", params=params, headers=api.auth("viewer")
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def imported() -> bool:
        response = await api.client.get(f"{PREDICTIONS}/SP500", headers=api.auth("viewer"))
        assert response.status_code in (200, 404), response.text
        return response.status_code == 200

    await wait_until(imported, "the dashboard knows the imported bars")
    assert (await get("SP500"))["models"] == []
    assert (await get("accuracy", ticker="SP500"))["groups"] == []
    assert (await get("SP500"))["models"] == []  # now an answer from the cache
    body = {"ticker": "SP500", "model": "ewma", "horizon": 5, "as_of": "2017-06-30"}
    job = await accepted(api, "run", body)
    assert (await finished(api, job["id"]))["status"] == "completed"
    await fully_scored(api, job["id"], 5)

    async def drawn() -> list[str]:
        return [m["model"] for m in (await get("SP500"))["models"]]

    assert await wait_until(drawn, "the dashboard shows the new prediction") == ["ewma"]

    async def accuracy() -> list[Any]:
        groups: list[Any] = (await get("accuracy", ticker="SP500"))["groups"]
        return groups if sum(g["n"] for g in groups) == 5 else []

    groups = await wait_until(accuracy, "accuracy counts the five scored steps")
    assert {g["model"] for g in groups} == {"ewma"}
    cache = api.client.app.state.read_cache
    assert cache.hits >= 1 and cache.misses >= 3


async def test_bad_requests_are_4xx_problems_and_append_nothing(api: Api, sp500: None) -> None:
    before = await count(api, "SELECT count(*) FROM predictions_events")
    run = {"ticker": "SP500", "model": "ewma", "horizon": 5}
    is_problem(await post(api, "run", {**run, "ticker": "NOPE"}), 404)
    is_problem(await post(api, "run", {**run, "model": "no-such-model"}), 404)
    is_problem(await post(api, "run", {**run, "model": "no-such-model@2"}), 404)
    for bad in (
        {"horizon": 0},
        {"horizon": 31},
        {"levels": [100]},
        {"levels": []},
        {"levels": [50, 50]},
        {"model": "Not A Model"},
        {"as_of": "yesterday"},
        {"surprise": 1},
    ):
        problem = is_problem(await post(api, "run", {**run, **bad}), 400)
        assert problem["errors"], problem
    short = is_problem(
        await post(api, "run", {**run, "model": "garch", "as_of": "1999-06-30"}), 422
    )
    assert short["needed"] == 251 and short["available"] < 251
    assert short["first_possible_cutoff"] > "1999-06-30"
    none_before = is_problem(await post(api, "run", {**run, "as_of": "1980-01-01"}), 422)
    assert none_before["available"] == 0
    backtest = {"ticker": "SP500", "models": ["ewma"], "start": "2018-01-01", "end": "2017-01-01"}
    is_problem(await post(api, "backtest", backtest), 422)
    is_problem(await post(api, "backtest", {**backtest, "end": "2018-02-01", "step": 0}), 400)
    is_problem(
        await post(api, "backtest", {**backtest, "end": "2018-02-01", "models": ["ewma", "ewma"]}),
        400,
    )
    is_problem(await post(api, "run", run, role="viewer"), 403)
    assert await count(api, "SELECT count(*) FROM predictions_events") == before
    is_problem(
        await api.client.get(f"{PREDICTIONS}/jobs/{UUID(int=1)}", headers=api.auth("viewer")), 404
    )
    is_problem(await api.client.get(f"{PREDICTIONS}/NOPE", headers=api.auth("viewer")), 404)


async def test_bars_after_a_cutoff_change_nothing_of_its_prediction(
    api: Api, sp500: None, forecasting: Forecasting
) -> None:
    body = {"ticker": "SP500", "model": "ewma", "horizon": 5, "as_of": "2017-06-30"}
    first = await accepted(api, "run", body)
    assert (await finished(api, first["id"]))["status"] == "completed"
    # every bar after the cutoff corrected (closes 10% higher), and the run made again
    later = [
        {**r, "high": str(float(r["high"]) * 1.1), "close": str(float(r["close"]) * 1.1)}
        for r in rows_between("2017-07-01")
    ]
    await import_rows(api, later, replace=True)
    again = await accepted(api, "run", body)
    assert again["market_data_version"] > first["market_data_version"]
    assert (await finished(api, again["id"]))["status"] == "completed"
    [before], [after] = (
        await predictions_of(api, first["id"]),
        await predictions_of(api, again["id"]),
    )
    for field in ("cutoff", "last_close", "steps", "params"):
        assert before[field] == after[field], field
    # ...while a bar before the cutoff does change it (the comparison can fail)
    earlier = [
        {**r, "close": str(float(r["close"]) * 0.999)}
        for r in rows_between("2017-06-29", "2017-06-29")
    ]
    await import_rows(api, earlier, replace=True)
    third = await accepted(api, "run", body)
    assert (await finished(api, third["id"]))["status"] == "completed"
    [changed] = await predictions_of(api, third["id"])
    assert changed["steps"] != before["steps"]


# -- scoring ------------------------------------------------------------------------------


async def test_steps_are_scored_once_when_bars_arrive_with_two_scorers_and_a_restart(
    api: Api, forecasting: Forecasting
) -> None:
    await import_rows(api, rows_between(None, "2018-06-29"))
    job = await accepted(api, "run", {"ticker": "SP500", "model": "random_walk", "horizon": 5})
    assert job["first_cutoff"] == "2018-06-29"  # the last bar: no target has a close yet
    assert (await finished(api, job["id"]))["status"] == "completed"
    forecasting.add_scorer()  # two scorers follow the log from now on
    await import_rows(api, rows_between("2018-07-02", "2018-07-05"))  # three bars
    await fully_scored(api, job["id"], 3)
    await import_rows(api, rows_between("2018-07-06", "2018-07-31"))
    await fully_scored(api, job["id"], 5)
    # with no scorer running, a new forecast at the last bar and the bars after it...
    forecasting.stop_scorers()
    later = await accepted(api, "run", {"ticker": "SP500", "model": "random_walk", "horizon": 2})
    assert later["first_cutoff"] == "2018-07-31"
    assert (await finished(api, later["id"]))["status"] == "completed"
    imported = await import_rows(api, rows_between("2018-08-01", "2018-08-03"))
    # ...are scored by a restarted scorer, from its tracked position
    forecasting.add_scorer()
    await fully_scored(api, later["id"], 2)

    async def past_the_import() -> bool:
        tracked = await count(
            api, "SELECT coalesce(max(notification_id), 0) FROM predictions_tracking"
        )
        return tracked >= imported["position"]

    await wait_until(past_the_import, "the restarted scorer processes the last import")
    rows = await api.fetch(
        "SELECT originator_id, state FROM predictions_events "
        "WHERE topic LIKE '%Prediction.Scored' ORDER BY notification_id"
    )
    steps: dict[UUID, list[int]] = {}
    for row in rows:
        for score in msgspec.json.decode(row["state"])["scores"]:
            steps.setdefault(row["originator_id"], []).append(score["step"])
    assert steps == {
        prediction_id(job["id"], "random_walk", "2018-06-29"): [1, 2, 3, 4, 5],
        prediction_id(later["id"], "random_walk", "2018-07-31"): [1, 2],
    }
    assert len(rows) == 3  # two imports scored the first forecast, one the second


# -- backtests, accuracy, comparison, the dashboard ----------------------------------------


async def test_a_backtest_is_scored_at_once_and_feeds_accuracy_comparison_and_the_dashboard(
    api: Api, sp500: None, forecasting: Forecasting
) -> None:
    body = {
        "ticker": "SP500",
        "models": ["random_walk", "ewma", "garch"],
        "horizon": 5,
        "start": "2016-01-01",
        "end": "2017-12-31",
        "step": 5,
    }
    job = await accepted(api, "backtest", body)
    cutoffs = job["cutoffs"]
    assert cutoffs == 101 and job["total"] if "total" in job else True
    done = await finished(api, job["id"], within=600)
    assert done["status"] == "completed", done["reason"]
    assert done["made"] == 3 * cutoffs
    assert done["made_by_model"] == {"random_walk": cutoffs, "ewma": cutoffs, "garch": cutoffs}
    await fully_scored(api, job["id"], 3 * cutoffs * 5)
    for prediction in (await predictions_of(api, job["id"]))[::50]:
        assert_nested_and_widening(prediction)

    accuracy = await api.client.get(
        f"{PREDICTIONS}/accuracy",
        params={"ticker": "SP500", "horizon": 5, "window": 20},
        headers=api.auth("viewer"),
    )
    assert accuracy.status_code == 200, accuracy.text
    groups = {g["model"]: g for g in accuracy.json()["groups"]}
    assert set(groups) == {"random_walk", "ewma", "garch"}
    for g in groups.values():
        assert g["n"] == cutoffs and g["step"] == 5
        assert 0 <= g["levels"]["50"]["coverage"] <= g["levels"]["95"]["coverage"] <= 1
        assert g["levels"]["50"]["mean_width"] < g["levels"]["95"]["mean_width"]
    assert groups["random_walk"]["mase"] == pytest.approx(1.0)  # it is the no-change forecast
    rolling = accuracy.json()["rolling"]
    assert rolling and all(r["n"] <= 20 for r in rolling)

    compare = await api.client.get(
        f"{PREDICTIONS}/compare",
        params={"ticker": "SP500", "models": "ewma,garch", "horizon": 5, "loss": "pinball"},
        headers=api.auth("viewer"),
    )
    assert compare.status_code == 200, compare.text
    result = compare.json()
    assert result["origins"] == cutoffs and result["baseline"] == "random_walk"
    assert {r["model"] for r in result["ranking"]} == {"random_walk", "ewma", "garch"}
    assert sum(r["best"] for r in result["ranking"]) >= 1
    assert result["ranking"][0]["best"] and result["ranking"][0]["rank"] == 1
    for r in result["ranking"]:
        test = r["versus_baseline"]
        assert (test is None) == (r["model"] == "random_walk")
        if test is not None:
            assert test["n"] == cutoffs and 0 <= test["p_value"] <= 1
    assert len(result["pairwise"]) == 3
    assert {g["model"] for g in result["accuracy"]} == {"random_walk", "ewma", "garch"}

    too_few = await api.client.get(
        f"{PREDICTIONS}/compare",
        params={"ticker": "SP500", "models": "ewma", "horizon": 5, "baseline": "garch_t"},
        headers=api.auth("viewer"),
    )
    problem = is_problem(too_few, 422)
    assert problem["origins"] == 0 and problem["needed"] >= 10
    unknown = await api.client.get(
        f"{PREDICTIONS}/compare",
        params={"ticker": "NOSUCH", "models": "ewma"},
        headers=api.auth("viewer"),
    )
    is_problem(unknown, 404)

    dashboard = await api.client.get(
        f"{PREDICTIONS}/SP500",
        params={"models": "ewma,garch", "as_of": "2017-06-30", "start": "2017-01-01"},
        headers=api.auth("viewer"),
    )
    assert dashboard.status_code == 200, dashboard.text
    chart = dashboard.json()
    assert chart["actuals"][0]["date"] >= "2017-01-01"
    assert [m["model"] for m in chart["models"]] == ["ewma", "garch"]
    for model in chart["models"]:
        prediction = model["prediction"]
        assert prediction["cutoff"] <= "2017-06-30"
        assert len(model["volatility"]) == 5 and all(
            v["volatility"] > 0 for v in model["volatility"]
        )
        assert prediction["scores"]  # it was scored: the chart can show how it went
    realised = {r["date"]: r for r in chart["realised_volatility"]}
    assert all(r["close_to_close"] is None or r["close_to_close"] > 0 for r in realised.values())


# -- registry models ------------------------------------------------------------------------


async def trained_version(api: Api, dataset_id: str, model_type: str, name: str, seed: int) -> int:
    """Train a small model to its end; the registrar registers it: its version number."""
    response = await api.client.post(
        "/api/v1/ml/train",
        json={
            "dataset_id": dataset_id,
            "model_type": model_type,
            "model_name": name,
            "hyperparameters": {"epochs": 3, "hidden_units": 8, "batch_size": 64, "seed": seed},
        },
        headers=api.auth("operator"),
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]

    async def registered() -> int | None:
        body = (
            await api.client.get(f"/api/v1/ml/jobs/{job_id}", headers=api.auth("viewer"))
        ).json()
        assert body["status"] not in ("failed", "stopped"), body
        version = body["registered_model_version"]
        return None if version is None else int(version["version"])

    version: int = await wait_until(registered, f"training job {job_id} is registered")
    return version


async def dataset(api: Api, name: str, target: str) -> dict[str, Any]:
    response = await api.client.post(
        "/api/v1/ml/datasets",
        json={
            "name": name,
            "tickers": ["SP500"],
            "start": "2012-01-01",
            "end": "2016-12-30",
            "target": target,
        },
        headers=api.auth("operator"),
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def deploy(api: Api, model_id: str, version: int) -> None:
    response = await api.client.post(
        f"/api/v1/ai/models/{model_id}/deploy",
        json={"version": version, "environment": "production", "reason": "test"},
        headers=api.auth("operator"),
    )
    assert response.status_code == 200, response.text


async def model_of_run(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    job = await accepted(api, "run", body)
    done = await finished(api, job["id"])
    assert done["status"] == "completed", done["reason"]
    [prediction] = await predictions_of(api, job["id"])
    return {"job": job["models"][0], "prediction": prediction}


async def test_a_registry_model_in_production_is_the_one_a_run_uses(
    api: Api, sp500: None, forecasting: Forecasting
) -> None:
    returns = await dataset(api, "spx-returns", "log_return")
    first = await trained_version(api, returns["id"], "mlp_regressor", "spx-mlp", seed=1)
    second = await trained_version(api, returns["id"], "mlp_regressor", "spx-mlp", seed=2)
    assert (first, second) == (1, 2)
    models = (await api.client.get("/api/v1/ai/models", headers=api.auth("viewer"))).json()
    [model] = [m for m in models["items"] if m["name"] == "spx-mlp"]
    run = {"ticker": "SP500", "model": "spx-mlp", "horizon": 3, "as_of": "2016-12-30"}
    # no version in production yet: nothing to resolve the name to
    is_problem(await post(api, "run", run), 422)
    listed = (await api.client.get(f"{PREDICTIONS}/forecasters", headers=api.auth("viewer"))).json()
    assert [(r["name"], r["versions"]) for r in listed["registry"]] == [("spx-mlp", [1, 2])]

    await deploy(api, model["id"], 1)
    used = await model_of_run(api, run)
    assert used["job"]["model_version"] == 1 and used["job"]["model_id"] == model["id"]
    assert used["prediction"]["model"] == "spx-mlp@1"
    assert used["prediction"]["forecaster"] == "mlp_regressor"
    assert_nested_and_widening(used["prediction"])
    await deploy(api, model["id"], 2)  # a redeploy changes what the next run uses
    assert (await model_of_run(api, run))["prediction"]["model"] == "spx-mlp@2"
    assert (await model_of_run(api, {**run, "model": "spx-mlp@1"}))["prediction"]["model"] == (
        "spx-mlp@1"
    )
    # a cutoff inside the rows the weights were fitted on would see its own future
    inside = is_problem(await post(api, "run", {**run, "as_of": "2014-06-30"}), 422)
    assert returns["validation_start"] in str(inside["detail"])
    # a classifier cannot forecast prices
    directions = await dataset(api, "spx-directions", "direction")
    await trained_version(api, directions["id"], "mlp_classifier", "spx-direction", seed=1)
    is_problem(await post(api, "run", {**run, "model": "spx-direction@1"}), 422)


async def test_jobs_are_listed_oldest_or_newest_first_a_page_at_a_time(
    api: Api, sp500: None
) -> None:
    body = {"ticker": "SP500", "model": "random_walk", "horizon": 3}
    first = await accepted(api, "run", {**body, "as_of": "2017-06-30"})
    second = await accepted(api, "run", {**body, "as_of": "2017-07-31"})

    async def page(**params: Any) -> dict[str, Any]:
        response = await api.client.get(
            f"{PREDICTIONS}/jobs", params={"limit": 1, **params}, headers=api.auth("viewer")
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    oldest = await page()
    assert [j["id"] for j in oldest["items"]] == [first["id"]]
    newest = await page(order="newest")
    assert [j["id"] for j in newest["items"]] == [second["id"]]
    older = await page(order="newest", cursor=newest["next_cursor"])
    assert [j["id"] for j in older["items"]] == [first["id"]]
    assert older["next_cursor"] is None
