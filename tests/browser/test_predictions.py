"""The prediction dashboard: a forecast run drawn with its bands and numbers, a backtest's
accuracy by horizon and its Diebold–Mariano comparison, and a refused request shown with
the field it names.

Only fast forecasters (random walks, EWMA: a job of them takes about a second); each
test uses its own ticker/model pair so the prediction "in force" it checks is its own.
"""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Page, expect

from tests.browser.conftest import (
    ApiClient,
    Console,
    page_is_sound,
)

JOB_DONE_MS = 60_000


def money(value: float) -> str:
    return f"{value:,.2f}"


def fixed(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


async def open_dashboard(console: Console, ticker: str) -> Page:
    page = await console.open("/predictions")
    await expect(page.get_by_role("heading", name="Predictions", exact=True)).to_be_visible()
    await page.get_by_label("Ticker").select_option(ticker)
    await expect(page.get_by_role("heading", name=f"Forecast of {ticker}")).to_be_visible()
    await expect(page.get_by_test_id("ticker-summary")).to_contain_text(f"{ticker}: ")
    return page


async def wait_for_job(page: Page, kind: str) -> str:
    """Waits until the job the page watches is done; its id."""
    status = page.get_by_test_id("job-status")
    await expect(status).to_contain_text(kind)
    await expect(status).to_have_attribute("data-status", "completed", timeout=JOB_DONE_MS)
    # and its forecasts whose targets have closes are scored (the scorer follows the job)
    await expect(status).to_have_attribute("data-settled", "true", timeout=JOB_DONE_MS)
    job_id = await status.get_attribute("data-job")
    assert job_id
    return job_id


async def test_a_forecast_run_is_drawn_with_its_bands_and_numbers(
    console: Console, api: ApiClient
) -> None:
    page = await open_dashboard(console, "NASDAQ")
    await page.get_by_role("checkbox", name="random_walk_drift").check()
    await page.get_by_label("Model", exact=True).select_option("random_walk_drift")
    await page.get_by_label("Horizon (bars, 1–30)").fill("7")
    await page.get_by_role("button", name="Run forecast").click()

    # the page follows the 202 job until the worker is done, with its progress
    job_id = await wait_for_job(page, "Forecast")
    status = page.get_by_test_id("job-status")
    await expect(status).to_contain_text("1 of 1 predictions made")
    await expect(status.get_by_role("progressbar")).to_have_attribute("value", "1")
    job = api.get(f"/api/v1/predictions/jobs/{job_id}")
    assert (job["status"], job["ticker"], job["horizon"]) == ("completed", "NASDAQ", 7)
    assert [m["key"] for m in job["models"]] == ["random_walk_drift"]
    await expect(page.get_by_test_id("jobs").locator(f'tr[data-job="{job_id}"]')).to_contain_text(
        "completed"
    )

    # the chart draws the new forecast with its three bands, on the API's dates
    forecast = page.get_by_test_id("forecast")
    await expect(forecast).to_have_attribute("data-focus", "random_walk_drift")
    await expect(forecast).to_have_attribute("data-bands", "3")
    shown = (await forecast.get_attribute("data-models") or "").split(",")
    assert "random_walk_drift" in shown
    dashboard = api.get("/api/v1/predictions/NASDAQ", models=",".join(shown))
    mine = next(m for m in dashboard["models"] if m["model"] == "random_walk_drift")
    prediction = mine["prediction"]
    assert prediction["job_id"] == job_id
    dates = {a["date"] for a in dashboard["actuals"]}
    for m in dashboard["models"]:
        dates |= {m["prediction"]["cutoff"]} | {s["date"] for s in m["prediction"]["steps"]}
    # close, a median per model, a low and a high per level of the focused model
    await expect(forecast).to_have_attribute("data-series", str(1 + len(shown) + 2 * 3))
    await expect(page.get_by_test_id("forecast-chart")).to_have_attribute(
        "data-points", str(len(dates))
    )

    # the numbers beside the chart are the API's bounds, step by step
    table = page.get_by_test_id("forecast-numbers")
    await expect(table.locator("caption")).to_contain_text(
        f"random_walk_drift from cutoff {prediction['cutoff']}"
    )
    bounds = ["95% low", "80% low", "50% low", "Median", "50% high", "80% high", "95% high"]
    await expect(table.locator("thead th")).to_have_text(["Step", "Date", *bounds])
    rows = table.locator("tbody tr")
    await expect(rows).to_have_count(7)
    for i, step in enumerate(prediction["steps"]):
        b = step["bands"]
        await expect(rows.nth(i).locator("td")).to_have_text(
            [str(step["step"]), step["date"]]
            + [money(b[k]["lower"]) for k in ("95", "80", "50")]
            + [money(step["median"])]
            + [money(b[k]["upper"]) for k in ("50", "80", "95")]
        )
    # the volatility overlay: three realised measures and each model's forecast
    await expect(page.get_by_test_id("volatility")).to_have_attribute(
        "data-series", str(3 + len(shown))
    )
    vol = page.get_by_test_id("volatility-numbers")
    drift_column = 1 + shown.index("random_walk_drift")
    first = vol.locator("tbody tr").nth(1).locator("td").nth(drift_column - 1)
    await expect(first).to_have_text(f"{mine['volatility'][0]['volatility'] * 100:.1f}")

    # no backtest of NASDAQ: the comparison says what it lacks (the API's 422), as a state
    too_few = page.get_by_test_id("compare-too-few")
    await expect(too_few).to_have_attribute("data-status", "422")
    await expect(too_few).to_contain_text("0 common forecast origins at step 1")

    await page_is_sound(page, "predictions")


async def test_a_backtest_shows_accuracy_by_horizon_and_the_comparison(
    console: Console, api: ApiClient
) -> None:
    page = await open_dashboard(console, "SP500")
    await page.get_by_role("checkbox", name="random_walk_drift").check()
    models = ["random_walk", "random_walk_drift", "ewma"]
    form = page.locator("form", has=page.get_by_role("heading", name="Backtest"))
    await expect(form).to_contain_text("Models: " + ", ".join(models))
    await form.get_by_label("From").fill("2017-07-01")
    await form.get_by_label("To").fill("2018-11-30")
    await form.get_by_label("Every (bars)").fill("5")
    await form.get_by_label("Horizon (bars)").fill("3")
    await form.get_by_role("button", name="Run backtest").click()
    job_id = await wait_for_job(page, "Backtest")
    job = api.get(f"/api/v1/predictions/jobs/{job_id}")
    assert job["kind"] == "backtest" and job["made"] == job["total"] == 3 * job["cutoffs"]
    status = page.get_by_test_id("job-status")
    await expect(status).to_contain_text(f"{job['total']} of {job['total']} predictions made")
    # the backtest ends a month before the last bar: every step has a close and is scored
    await expect(status).to_contain_text(f"{3 * job['total']} of {3 * job['total']} steps")

    # the dashboard now shows the backtest's last forecast, its closes marked against the bands
    forecast = page.get_by_test_id("forecast")
    every = "".join(f"(?=(.*,)?{m}(,|$))" for m in models)
    await expect(forecast).to_have_attribute("data-models", re.compile(f"^{every}"))
    focus = await forecast.get_attribute("data-focus")
    dashboard = api.get("/api/v1/predictions/SP500", models=",".join(models))
    last = next(m["prediction"] for m in dashboard["models"] if m["model"] == focus)
    assert last["job_id"] == job_id and last["cutoff"] == job["last_cutoff"]
    numbers = page.get_by_test_id("forecast-numbers")
    await expect(numbers.locator("thead th").last).to_have_text("Actual")
    for score in last["scores"]:
        narrowest = next((lv for lv in ("50", "80", "95") if score["covered"][lv]), None)
        mark = f"{narrowest}%" if narrowest else "out"
        cell = numbers.locator("tbody tr").nth(score["step"] - 1).locator("td").last
        await expect(cell).to_have_text(f"{money(score['actual'])} {mark}")
    assert len(last["scores"]) == 3

    # accuracy by horizon: every model at steps 1-3, the API's figures
    accuracy = api.get("/api/v1/predictions/accuracy", ticker="SP500", model=",".join(models))
    table = page.get_by_test_id("accuracy-table")
    for group in accuracy["groups"]:
        row = table.locator(f'tr[data-model="{group["model"]}"][data-step="{group["step"]}"]')
        cells = row.locator("td")
        await expect(cells.nth(2)).to_have_text(str(group["n"]))
        await expect(cells.nth(3)).to_have_text(money(group["mae"]))
        await expect(cells.nth(6)).to_have_text(fixed(group["mase"]))
    steps = {(g["model"], g["step"]) for g in accuracy["groups"]}
    assert {(m, s) for m in models for s in (1, 2, 3)} <= steps
    await expect(table.locator("tbody tr")).to_have_count(len(accuracy["groups"]))
    await expect(page.get_by_test_id("rolling")).to_have_attribute("data-series", "3")

    # the comparison follows the backtest's horizon: DM of each model against random_walk
    await expect(page.get_by_label("Step").last).to_have_value("3")
    compare = api.get(
        "/api/v1/predictions/compare",
        ticker="SP500",
        models="random_walk_drift,ewma",
        horizon=3,
        baseline="random_walk",
    )
    comparison = page.get_by_test_id("comparison")
    await expect(comparison).to_contain_text(f"{compare['origins']} common origins")
    ranking = page.get_by_test_id("ranking").locator("tbody tr")
    await expect(ranking).to_have_count(3)
    for rank in compare["ranking"]:
        cells = ranking.and_(page.locator(f'[data-model="{rank["model"]}"]')).locator("td")
        await expect(cells.nth(0)).to_have_text(str(rank["rank"]))
        await expect(cells.nth(2)).to_have_text(fixed(rank["mean_loss"]))
        test: dict[str, Any] | None = rank["versus_baseline"]
        if test is not None:
            await expect(cells.nth(3)).to_have_text(fixed(test["statistic"]))
            await expect(cells.nth(4)).to_have_text(fixed(test["p_value"]))
    best = next(r["model"] for r in compare["ranking"] if r["best"])
    await expect(ranking.and_(page.locator(f'[data-model="{best}"]'))).to_contain_text("best")
    await expect(page.get_by_test_id("pairwise").locator("tbody tr")).to_have_count(3)

    # another loss is another question to the API
    await page.get_by_label("Loss").select_option("winkler")
    await expect(comparison).to_contain_text("winkler loss at 95%")

    await page_is_sound(page, "predictions-accuracy")


async def test_a_refused_forecast_is_shown_with_the_field_and_nothing_is_queued(
    console: Console, api: ApiClient
) -> None:
    page = await open_dashboard(console, "SP500")
    before = len(api.get("/api/v1/predictions/jobs", ticker="SP500", limit=500)["items"])
    form = page.locator("form", has=page.get_by_role("heading", name="Forecast at one cutoff"))
    await form.get_by_label("Model", exact=True).select_option("ewma")
    alert = form.get_by_role("alert")
    # too little history before the cutoff: 422 with what is needed and the first cutoff
    await form.get_by_label("Cutoff on or before").fill("1999-02-01")
    await form.get_by_role("button", name="Run forecast").click()
    await expect(alert).to_have_attribute("data-status", "422")
    await expect(alert).to_contain_text("the first cutoff with enough is 1999-03-31")

    # a horizon out of range: the API's 400 names the field
    await form.get_by_label("Cutoff on or before").fill("")
    await form.get_by_label("Horizon (bars, 1–30)").fill("31")
    await form.get_by_role("button", name="Run forecast").click()
    await expect(alert).to_have_attribute("data-status", "400")
    await expect(alert.locator("li code")).to_have_text("horizon")
    await expect(alert.locator("li")).to_contain_text("<= 30")
    await expect(page.get_by_test_id("job-status")).to_have_count(0)
    after = len(api.get("/api/v1/predictions/jobs", ticker="SP500", limit=500)["items"])
    assert after == before

    await page_is_sound(page, "predictions-refused")
