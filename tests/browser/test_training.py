"""The training page: launch a run and watch its live curve, stop it, compare runs, and
the API's refusals shown beside the fields they name."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, Route, expect

from tests.browser.conftest import (
    ApiClient,
    Console,
    page_is_sound,
    screenshot,
    unique,
)

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# a run that takes well over ten seconds on the sample bars (1,000 epochs of single-row
# steps), so the test sees it running for as long as it needs and then stops it
LONG_RUN = {"epochs": 1000, "batch_size": 1}


@pytest.fixture(scope="module")
def small_dataset(api: ApiClient) -> Iterator[dict[str, Any]]:
    """Three years of the sample SP500 bars: about 730 rows, a few hundred ms a run."""
    body = {
        "name": unique("spx-small"),
        "tickers": ["SP500"],
        "start": "2016-01-01",
        "end": "2018-12-31",
    }
    yield api.post("/api/v1/ml/datasets", body).json()


def start_run(
    api: ApiClient, dataset: dict[str, Any], hyperparameters: dict[str, Any], prefix: str
) -> dict[str, Any]:
    """A training run queued through the API (a unique model name with ``prefix``)."""
    body = {
        "dataset_id": dataset["id"],
        "hyperparameters": hyperparameters,
        "model_name": unique(prefix),
    }
    run: dict[str, Any] = api.post("/api/v1/ml/train", body).json()
    return run


def label(job: dict[str, Any]) -> str:
    return f"{job['model_name']} · {job['id'][:8]}"


async def points(page: Page, test_id: str) -> int:
    return int(await page.get_by_test_id(test_id).get_attribute("data-points") or 0)


async def test_a_launched_run_is_followed_live_and_stopped(
    console: Console, api: ApiClient
) -> None:
    page = await console.open("/training")
    # a dataset made on the page from the sample market data `aimm dev` loads
    name = unique("spx")
    await page.get_by_role("button", name="New dataset…").click()
    form = page.get_by_role("form", name="New dataset")
    await form.get_by_label("Name", exact=True).fill(name)
    await form.get_by_role("checkbox", name=re.compile(r"^NASDAQ")).uncheck()
    await form.get_by_role("checkbox", name=re.compile(r"^SP500")).check()
    await form.get_by_label("Start", exact=True).fill("2010-01-01")
    await form.get_by_label("End", exact=True).fill("2018-12-31")
    await form.get_by_role("button", name="Register dataset").click()
    await expect(
        page.get_by_role("status").filter(has_text=f"Dataset {name} registered")
    ).to_be_visible()
    dataset = page.get_by_role("combobox", name="Dataset")
    await expect(dataset.locator("option:checked")).to_contain_text(name)
    await expect(page.get_by_test_id("dataset-summary")).to_contain_text("SP500 2010-01-01")

    await page.get_by_label("Epochs", exact=True).fill(str(LONG_RUN["epochs"]))
    await page.get_by_label("Batch size", exact=True).fill(str(LONG_RUN["batch_size"]))
    await page.get_by_role("button", name="Launch training").click()
    await expect(page).to_have_url(re.compile(rf"#/training/{UUID}$"))
    job_id = page.url.rsplit("/", 1)[1]
    detail = page.get_by_test_id("job-detail")
    await expect(detail.get_by_test_id("job-status")).to_have_text("running")
    assert api.get(f"/api/v1/ml/jobs/{job_id}")["hyperparameters"]["batch_size"] == 1

    # the live chart gains points while the run goes on: two observations, each later
    # than the last, with the job still running at the second
    chart = page.get_by_test_id("loss-chart")
    # (the worker compiles the training step for a new shape first: seconds on a busy machine)
    await expect(chart).to_have_attribute(
        "data-points", re.compile(r"^([3-9]|\d{2,})$"), timeout=60_000
    )
    first = await points(page, "loss-chart")
    await expect(chart).not_to_have_attribute("data-points", str(first))
    second = await points(page, "loss-chart")
    assert second > first
    await expect(page.get_by_test_id("curve-state")).to_contain_text("live")
    assert api.get(f"/api/v1/ml/jobs/{job_id}")["status"] == "running"
    await expect(chart).not_to_have_attribute("data-points", str(second))
    assert await points(page, "loss-chart") > second
    await expect(page.get_by_test_id("accuracy-chart")).to_have_attribute(
        "data-points", re.compile(r"^\d{2,}$")
    )

    # stop it, after a confirmation that names the run
    await detail.get_by_role("button", name="Stop run").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text(
        f"Stop {label({'id': job_id, 'model_name': f'{name}-mlp-classifier'})}?"
    )
    await dialog.get_by_label("Reason").fill("enough for the test")
    await dialog.get_by_role("button", name="Stop run").click()
    await expect(dialog).to_be_hidden()
    await expect(page.get_by_role("status").filter(has_text="Stop requested")).to_be_visible()
    await expect(detail.get_by_test_id("job-status")).to_have_text("stopped")
    await expect(page.get_by_test_id("curve-state")).to_contain_text("stream ended: stopped")
    job = api.get(f"/api/v1/ml/jobs/{job_id}")
    assert job["status"] == "stopped" and job["stop_reason"] == "enough for the test"
    assert job["epochs_run"] < LONG_RUN["epochs"]
    # the chart holds exactly the curve the API keeps
    curve = api.get(f"/api/v1/ml/jobs/{job_id}/metrics")["points"]
    await expect(chart).to_have_attribute("data-points", str(len(curve)))
    row = page.locator(f'tr[data-job="{job_id}"]')
    await expect(row.get_by_test_id("job-status")).to_have_text("stopped")
    await expect(row.get_by_role("button", name=re.compile("^Stop"))).to_have_count(0)
    await page_is_sound(page, "training")


async def test_two_runs_are_compared_by_their_aligned_curves(
    console: Console, api: ApiClient, small_dataset: dict[str, Any]
) -> None:
    runs = [
        start_run(api, small_dataset, {"epochs": epochs, "learning_rate": rate}, "cmp")
        for epochs, rate in ((12, 0.001), (20, 0.01))
    ]
    page = await console.open("/training")
    for run in runs:
        row = page.locator(f'tr[data-job="{run["id"]}"]')
        # queued, then a worker compiles and trains it: seconds on a busy machine
        await expect(row.get_by_test_id("job-status")).to_have_text("completed", timeout=60_000)
        await row.get_by_role("checkbox", name=f"Compare {label(run)}").check()

    compare = page.get_by_test_id("compare")
    await expect(compare.get_by_role("heading")).to_have_text("Compare 2 runs")
    legend = compare.get_by_role("list", name="Runs compared")
    await expect(legend.get_by_role("listitem")).to_contain_text([label(r) for r in runs])
    chart = compare.get_by_test_id("compare-chart")
    # aligned by epoch: the union of both runs' epochs, one curve per run
    await expect(chart).to_have_attribute("data-points", "20")
    await expect(chart).to_have_attribute("aria-label", re.compile(re.escape(label(runs[1]))))
    table = compare.get_by_role("table", name=re.compile("Settings that differ"))
    rate_row = table.get_by_role("row", name=re.compile("hyperparameters.learning_rate"))
    await expect(rate_row.get_by_role("cell")).to_have_text(["0.001", "0.01"])
    epochs_row = table.get_by_role("row", name=re.compile("hyperparameters.epochs"))
    await expect(epochs_row.get_by_role("cell")).to_have_text(["12", "20"])
    compared = api.get("/api/v1/ml/jobs/compare", ids=",".join(r["id"] for r in runs))
    best = next(j for j in compared["jobs"] if j["id"] == compared["best"]["job_id"])
    await expect(compare).to_contain_text(f"Best by val_loss (min): {label(best)}")

    # the same curves as numbers: both runs at epoch 1, only the longer one at epoch 20
    await compare.get_by_text("The aligned curves as a table").click()
    curves = compare.get_by_test_id("compare-curves")
    await expect(curves.locator("tbody tr")).to_have_count(20)
    first = curves.locator("tbody tr").first.get_by_role("cell")
    await expect(first.nth(1)).to_have_text(re.compile(r"^\d+\.\d+$"))
    await expect(first.nth(2)).to_have_text(re.compile(r"^\d+\.\d+$"))
    last = curves.locator("tbody tr").last.get_by_role("cell")
    await expect(last).to_have_text(["20", "—", re.compile(r"^\d+\.\d+$")])
    await compare.get_by_role("combobox", name="Metric").select_option("val_accuracy")
    await expect(chart).to_have_attribute("aria-label", re.compile("^val_accuracy by epoch"))
    await page_is_sound(page, "training-compare")


async def test_a_refused_hyperparameter_is_shown_at_its_field(
    console: Console, api: ApiClient, small_dataset: dict[str, Any]
) -> None:
    before = len(api.get("/api/v1/ml/jobs", dataset_id=small_dataset["id"], limit=500)["items"])
    page = await console.open("/training")
    await page.get_by_role("combobox", name="Dataset").select_option(small_dataset["id"])
    rate = page.get_by_role("spinbutton", name="Learning rate")
    await rate.fill("5")
    await page.get_by_label("Epochs", exact=True).fill("3")
    await page.get_by_role("button", name="Launch training").click()
    alert = page.get_by_role("alert").filter(has_text="hyperparameters.learning_rate")
    await expect(alert).to_have_attribute("data-status", "400")
    await expect(rate).to_have_attribute("aria-invalid", "true")
    await expect(rate).to_have_accessible_description("must be between 1e-06 and 1")
    assert (
        len(api.get("/api/v1/ml/jobs", dataset_id=small_dataset["id"], limit=500)["items"])
        == before
    )
    await screenshot(page, "training-refused")

    # corrected, the same form launches the run
    await rate.fill("0.01")
    await page.get_by_role("button", name="Launch training").click()
    await expect(page).to_have_url(re.compile(rf"#/training/{UUID}$"))
    await expect(alert).to_have_count(0)
    await expect(rate).not_to_have_attribute("aria-invalid", "true")
    job = api.get(f"/api/v1/ml/jobs/{page.url.rsplit('/', 1)[1]}")
    assert job["hyperparameters"]["learning_rate"] == 0.01 and job["hyperparameters"]["epochs"] == 3
    await expect(page.get_by_test_id("job-detail").get_by_test_id("job-status")).to_have_text(
        "completed"
    )
    await page_is_sound(page, "training-launched")


async def test_stopping_a_run_that_ended_meanwhile_offers_a_reload(
    console: Console, api: ApiClient, small_dataset: dict[str, Any]
) -> None:
    run = start_run(api, small_dataset, LONG_RUN, "race")
    page = await console.open("/training")
    row = page.locator(f'tr[data-job="{run["id"]}"]')
    await expect(row.get_by_test_id("job-status")).to_have_text("running")
    await row.get_by_role("button", name=f"Stop {label(run)}").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("the worker ends it within seconds")
    # someone else stops it first, and it ends before this page's stop arrives
    api.post(f"/api/v1/ml/jobs/{run['id']}/stop", {"reason": "someone else"})
    # (the worker notices at its next chunk of steps, after compiling the step first)
    await expect(row.get_by_test_id("job-status")).to_have_text("stopped", timeout=60_000)
    await dialog.get_by_role("button", name="Stop run").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_have_attribute("data-status", "409")
    # not a stale version but a rule of the run's state: shown in the API's words
    await expect(alert).to_contain_text("Refused by the current state")
    await expect(alert).to_contain_text("has already ended (stopped)")
    await alert.get_by_role("button", name="Reload").click()
    await expect(alert).to_have_count(0)
    await expect(row.get_by_role("button", name=re.compile("^Stop"))).to_have_count(0)
    job = api.get(f"/api/v1/ml/jobs/{run['id']}")
    assert job["status"] == "stopped" and job["stop_reason"] == "someone else"
    await page_is_sound(page, "training-conflict")


async def test_a_cut_live_stream_resumes_after_its_last_point(
    console: Console, api: ApiClient, small_dataset: dict[str, Any]
) -> None:
    run = start_run(api, small_dataset, LONG_RUN, "sse")
    resumed: list[str] = []

    async def cut_the_first_stream(route: Route) -> None:
        """The page's first stream is the server's first three events, then the end,
        with no final status: a connection cut (a proxy, a restarted API)."""
        request = route.request
        if "text/event-stream" not in request.headers.get("accept", ""):
            await route.continue_()
            return
        if "last-event-id" in request.headers:
            resumed.append(request.headers["last-event-id"])
            await route.continue_()
            return
        blocks: list[str] = []
        async with (
            httpx.AsyncClient(
                base_url=console.base, headers={"Authorization": f"Bearer {api.key}"}
            ) as client,
            client.stream("GET", request.url, headers={"Accept": "text/event-stream"}) as response,
        ):
            text = ""
            async for chunk in response.aiter_text():
                text += chunk.replace("\r\n", "\n")
                while "\n\n" in text and len(blocks) < 3:
                    block, text = text.split("\n\n", 1)
                    if "event: point" in block:
                        blocks.append(block)
                if len(blocks) == 3:
                    break
        body = "".join(f"{b}\n\n" for b in blocks)
        await route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)

    await console.page.route("**/api/v1/ml/jobs/*/metrics", cut_the_first_stream)
    page = await console.open(f"/training/{run['id']}")
    chart = page.get_by_test_id("loss-chart")
    await expect(page.get_by_test_id("job-status").first).to_have_text("running", timeout=60_000)
    # resumed after the third point, and the curve goes on
    await expect(chart).to_have_attribute("data-points", re.compile(r"^\d{2,}$"), timeout=60_000)
    assert len(resumed) == 1 and int(resumed[0]) > 0
    api.post(f"/api/v1/ml/jobs/{run['id']}/stop", {"reason": "resumed"})
    await expect(page.get_by_test_id("curve-state")).to_contain_text("stream ended: stopped")
    # every point once: the resumed stream went on after the last one received
    curve = api.get(f"/api/v1/ml/jobs/{run['id']}/metrics")["points"]
    await expect(chart).to_have_attribute("data-points", str(len(curve)))
