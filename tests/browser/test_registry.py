"""The model registry page: the list and its filters, a model's card (versions, comparison,
metrics history, lineage), deploy and rollback with one confirmed click, the deployment
history with who, when and why, "as of", and a stale version refused with a reload."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from playwright.async_api import Page, expect

from tests.browser.conftest import (
    ApiClient,
    Console,
    page_is_sound,
    screenshot,
    unique,
)

MODELS = "/api/v1/ai/models"


def arrange_model(
    api: ApiClient,
    *,
    name: str | None = None,
    kind: str = "ml",
    tags: tuple[str, ...] = ("daily",),
    versions: int = 2,
    deploy: tuple[tuple[int, str, str], ...] = (),
    prompts: tuple[str, ...] = (),
) -> tuple[str, str]:
    """A model with ``versions`` versions (val_loss falling, accuracy rising, lineage to a
    dataset and a run each, v2+ derived from the one before) and the given deploys."""
    name = name or unique("reg")
    body = {
        "name": name,
        "kind": kind,
        "task": "price forecast",
        "description": "daily close forecaster",
        "tags": list(tags),
    }
    response = api.post(MODELS, body)
    model_id = response.json()["id"]
    for n in range(1, versions + 1):
        lineage: dict[str, Any] = {
            "dataset": {"id": f"ds-{name}", "hash": f"sha256:{n:064x}"},
            "training_run": f"run-{name}-{n}",
            "prompt_versions": list(prompts),
        }
        if n > 1:
            lineage["parent_version"] = n - 1
        response = api.post(
            f"{MODELS}/{model_id}/versions",
            {
                "artifact": f"s3://models/{name}/v{n}.pt",
                "framework": "pytorch",
                "parameters": {"lr": 0.01, "layers": 2 + n},
                "metrics": {"val_loss": round(0.5 / n, 4), "accuracy": round(0.6 + 0.1 * n, 4)},
                "lineage": lineage,
            },
        )
    for version, environment, reason in deploy:
        response = api.post(
            f"{MODELS}/{model_id}/deploy",
            {"version": version, "environment": environment, "reason": reason},
        )
    settled(api, response)
    return model_id, name


def settled(api: ApiClient, response: Any) -> None:
    """Until the read models have seen a command the test made (the page's own commands
    are waited for by the console; the test's are not)."""
    api.get(MODELS, limit=1, wait_for=response.headers["aimm-position"])


def shown(at: str) -> str:
    """A timestamp as the page shows it."""
    return datetime.fromisoformat(at).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


async def open_card(console: Console, model_id: str, name: str) -> Page:
    page = await console.open(f"/registry/{model_id}")
    await expect(page.get_by_role("heading", level=2, name=name)).to_be_visible()
    return page


async def settle(page: Page, name: str) -> None:
    """The page in its main state, with the list narrowed to the model (the shared
    service holds every test's models; the keyboard check walks every control)."""
    await page.get_by_role("searchbox", name="Search").fill(name)
    await expect(page.get_by_test_id("model-count")).to_have_text("1 model")
    await page_is_sound(page)
    await page.evaluate("window.scrollTo(0, 0)")


async def test_deploy_with_one_click_adds_the_history_row_and_changes_the_environment(
    console: Console, api: ApiClient
) -> None:
    model_id, name = arrange_model(api, deploy=((1, "production", "first release"),))
    page = await open_card(console, model_id, name)
    history = page.get_by_test_id("deployment-history").locator("tbody tr")
    production = page.get_by_test_id("active-production")
    await expect(history).to_have_count(1)
    await expect(production).to_have_text("v1")

    await page.get_by_role("button", name="Deploy v2 to production", exact=True).click()
    dialog = page.get_by_role("dialog", name="Deploy v2 to production?")
    await expect(dialog).to_contain_text(f"{name} v2 becomes the active version in production")
    await expect(dialog).to_contain_text("replacing v1")
    await dialog.get_by_role("textbox", name="Reason").fill("lower validation loss")
    await dialog.get_by_role("button", name="Deploy", exact=True).click()

    # the history gains the row with who, when and why; the environment shows v2
    await expect(history).to_have_count(2)
    stored = api.get(f"{MODELS}/{model_id}/deployments")["items"]
    assert [(d["version"], d["previous_version"], d["reason"]) for d in stored] == [
        (1, None, "first release"),
        (2, 1, "lower validation loss"),
    ]
    newest = history.first
    for text in (
        "deploy",
        "production",
        "v1 → v2",
        stored[-1]["deployed_by"],
        shown(stored[-1]["deployed_at"]),
        "lower validation loss",
    ):
        await expect(newest).to_contain_text(text)
    await expect(production).to_have_text("v2")
    await expect(page.get_by_role("status").filter(has_text="deployed")).to_have_text(
        "v2 deployed to production."
    )
    versions = page.get_by_test_id("versions")
    await expect(versions.locator("tr[data-version='2']")).to_contain_text("active")
    await expect(versions.locator("tr[data-version='1']")).to_contain_text("archived")
    await expect(page.get_by_role("button", name="v2 is active in production")).to_be_disabled()
    # the list's row follows without reloading the list
    row = page.get_by_test_id("model-table").locator("tr", has_text=name)
    await expect(row).to_contain_text("v2")
    assert api.get(f"{MODELS}/{model_id}")["active"] == {"production": 2}

    await settle(page, name)
    await screenshot(page, "registry")


async def test_rollback_is_confirmed_recorded_and_the_past_is_shown_as_of(
    console: Console, api: ApiClient
) -> None:
    model_id, name = arrange_model(
        api, deploy=((1, "production", "first release"), (2, "production", "better loss"))
    )
    page = await open_card(console, model_id, name)
    history = page.get_by_test_id("deployment-history").locator("tbody tr")
    production = page.get_by_test_id("active-production")
    await expect(production).to_have_text("v2")
    # nothing was ever active in staging: no rollback there
    await expect(page.get_by_role("button", name="Roll back staging")).to_be_disabled()

    await page.get_by_role("button", name="Roll back to v1 in production").click()
    dialog = page.get_by_role("dialog", name="Roll back production?")
    await expect(dialog).to_contain_text("goes back from v2 to v1")
    await dialog.get_by_role("textbox", name="Reason").fill("v2 drifts on live data")
    await dialog.get_by_role("button", name="Roll back", exact=True).click()

    await expect(history).to_have_count(3)
    await expect(history.first).to_contain_text("rollback")
    await expect(history.first).to_contain_text("v2 → v1")
    await expect(history.first).to_contain_text("v2 drifts on live data")
    await expect(production).to_have_text("v1")
    stored = api.get(f"{MODELS}/{model_id}")
    assert stored["active"] == {"production": 1}
    assert stored["deployments"][-1]["action"] == "rollback"
    assert stored["deployments"][-1]["reason"] == "v2 drifts on live data"

    # as of the first deploy: the model replayed then (v1 in production, one entry)
    await history.last.get_by_role("button").click()
    await expect(page.get_by_role("status").filter(has_text="Showing the model")).to_contain_text(
        shown(stored["deployments"][0]["deployed_at"])
    )
    await expect(history).to_have_count(1)
    await expect(production).to_have_text("v1")
    await expect(page.get_by_test_id("versions").locator("tr[data-version='2']")).to_contain_text(
        "staging"
    )
    await expect(
        page.get_by_role("button", name="Deploy v2 to production", exact=True)
    ).to_be_disabled()
    # before the model existed: the API's 404, said as such
    await page.get_by_label("As of (UTC)").fill("2020-01-02T03:04:05")
    await page.get_by_role("button", name="Show as of then").click()
    await expect(page.get_by_role("alert")).to_contain_text("404")
    await expect(page.get_by_test_id("as-of-missing")).to_contain_text(
        "did not exist yet at 2020-01-02 03:04:05 UTC"
    )
    await page.get_by_role("button", name="Back to now").click()
    await expect(page.get_by_role("alert")).to_have_count(0)
    await expect(history).to_have_count(3)
    await expect(
        page.get_by_role("button", name="Deploy v2 to production", exact=True)
    ).to_be_enabled()

    await settle(page, name)
    await screenshot(page, "registry-rollback")


async def test_the_card_compares_versions_charts_metrics_and_draws_the_lineage(
    console: Console, api: ApiClient
) -> None:
    model_id, name = arrange_model(
        api,
        kind="llm",
        versions=3,
        deploy=((2, "production", "go live"),),
        prompts=("support-bot@3",),
    )
    recorded = api.post(
        f"{MODELS}/{model_id}/versions/3/metrics",
        {"metrics": {"val_loss": 0.2}, "source": "backtest"},
        expect=201,
    )
    settled(api, recorded)
    page = await open_card(console, model_id, name)

    # the comparison (the two latest by default), the best version per metric marked
    metrics = page.get_by_test_id("compare-metrics")
    await expect(metrics.locator("thead th")).to_have_text(["Name", "v2", "v3"])
    val_loss = metrics.locator("tr", has=page.get_by_role("rowheader", name="val_loss"))
    await expect(val_loss.locator("td[data-best]")).to_have_text("0.2000best")
    await page.get_by_role("checkbox", name="v1").check()
    await expect(metrics.locator("thead th")).to_have_text(["Name", "v1", "v2", "v3"])
    layers = page.get_by_test_id("compare-parameters").locator("tr.differs")
    await expect(layers).to_contain_text("layers")

    # the metrics history: every recorded value of the metric, charted and tabled
    history = [h for v in api.get(f"{MODELS}/{model_id}")["versions"] for h in v["metrics_history"]]
    assert len(history) == 4  # one at each registration, and the backtest of v3
    await expect(page.get_by_test_id("metrics-history").locator("tbody tr")).to_have_count(3)
    await page.get_by_role("combobox", name="Metric").select_option("val_loss")
    await expect(page.get_by_test_id("metrics-history").locator("tbody tr")).to_have_count(4)
    await expect(page.get_by_test_id("metrics-history").locator("tbody tr").first).to_contain_text(
        "backtest"
    )
    await expect(page.get_by_test_id("metrics-chart")).not_to_have_attribute("data-points", "0")

    # the lineage: drawn, and the same nodes as buttons that select like a tap
    graph = api.get(f"{MODELS}/{model_id}/lineage")
    types = {n["type"] for n in graph["nodes"]}
    assert {"dataset", "training_run", "version", "deployment", "prompt_version"} <= types
    drawn = page.get_by_test_id("lineage-graph")
    await expect(drawn).to_have_attribute("data-nodes", str(len(graph["nodes"])))
    await expect(drawn).to_have_attribute("data-edges", str(len(graph["edges"])))
    assert len(graph["nodes"]) > 0
    nodes = page.get_by_role("navigation", name="Lineage nodes").get_by_role("button")
    await expect(nodes).to_have_count(len(graph["nodes"]))
    await nodes.filter(has_text=f"ds-{name}").click()
    detail = page.get_by_test_id("lineage-detail")
    await expect(detail).to_contain_text("sha256:")
    await expect(detail).to_contain_text("trained_on")
    await nodes.filter(has_text="deploy v2 to production").click()
    await expect(detail).to_contain_text("Deployment: deploy v2 to production")

    await settle(page, name)
    await screenshot(page, "registry-lineage")


async def test_a_deploy_on_a_model_changed_meanwhile_is_refused_and_offers_a_reload(
    console: Console, api: ApiClient
) -> None:
    model_id, name = arrange_model(api)
    page = await open_card(console, model_id, name)
    await expect(page.get_by_test_id("model-etag")).to_have_text("3")
    # someone else changes the model after the page read it
    changed = api.call(
        "PATCH", f"{MODELS}/{model_id}", 200, json={"description": "retrained on 2024 data"}
    )
    settled(api, changed)

    await page.get_by_role("button", name="Deploy v2 to staging", exact=True).click()
    dialog = page.get_by_role("dialog", name="Deploy v2 to staging?")
    await dialog.get_by_role("button", name="Deploy", exact=True).click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("Someone else changed this in the meantime.")
    await expect(alert).to_contain_text("409")
    assert api.get(f"{MODELS}/{model_id}/deployments")["items"] == []
    await expect(page.get_by_test_id("active-staging")).to_have_text("nothing deployed")

    await alert.get_by_role("button", name="Reload the latest version").click()
    await expect(alert).to_have_count(0)
    await expect(page.get_by_test_id("model-description")).to_have_text("retrained on 2024 data")
    await expect(page.get_by_test_id("model-etag")).to_have_text("4")
    await page.get_by_role("button", name="Deploy v2 to staging", exact=True).click()
    await dialog.get_by_role("button", name="Deploy", exact=True).click()
    await expect(page.get_by_test_id("active-staging")).to_have_text("v2")
    assert api.get(f"{MODELS}/{model_id}")["active"] == {"staging": 2}

    await settle(page, name)
    await screenshot(page, "registry-conflict")


async def test_filters_narrow_the_list_and_a_refused_filter_is_shown(
    console: Console, api: ApiClient
) -> None:
    prefix = unique("flt")
    tag = unique("tag")
    alpha, _ = arrange_model(
        api, name=f"{prefix}-alpha", tags=(tag,), versions=1, deploy=((1, "production", "go"),)
    )
    arrange_model(api, name=f"{prefix}-beta", kind="llm", tags=(tag,), versions=1)
    arrange_model(api, name=f"{prefix}-gamma", tags=("other",), versions=0)
    page = await console.open("/registry")
    count = page.get_by_test_id("model-count")
    rows = page.get_by_test_id("model-table").locator("tbody tr")
    await expect(count).to_have_attribute("data-loading", "false")
    total = len(api.get(MODELS, limit=500)["items"])
    assert total >= 3
    if total < 500:
        await expect(rows).to_have_count(total)

    await page.get_by_role("searchbox", name="Search").fill(prefix)
    await expect(count).to_have_text("3 models")
    await expect(rows.get_by_role("link")).to_have_text(
        [f"{prefix}-alpha", f"{prefix}-beta", f"{prefix}-gamma"]
    )
    await page.get_by_role("combobox", name="Kind").select_option("llm")
    await expect(rows.get_by_role("link")).to_have_text([f"{prefix}-beta"])
    await expect(count).to_have_text("1 model")
    await page.get_by_role("combobox", name="Kind").select_option("")
    await page.get_by_role("combobox", name="Has a version").select_option("active")
    await expect(rows.get_by_role("link")).to_have_text([f"{prefix}-alpha"])
    await expect(rows.first).to_contain_text("v1")
    await page.get_by_role("combobox", name="Has a version").select_option("")
    await page.get_by_role("textbox", name="Tag").fill(tag)
    await expect(rows.get_by_role("link")).to_have_text([f"{prefix}-alpha", f"{prefix}-beta"])
    assert len(api.get(MODELS, q=prefix, tag=tag)["items"]) == 2

    # a filter the API refuses (over 200 characters) is shown, not silently dropped
    await page.get_by_role("searchbox", name="Search").fill("x" * 201)
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("400")
    await expect(alert).to_contain_text("q")
    await page.get_by_role("button", name="Clear filters").click()
    await expect(alert).to_have_count(0)

    # a name opens its card (a link: #/registry/<id>)
    await page.get_by_role("searchbox", name="Search").fill(prefix)
    await expect(count).to_have_text("3 models")
    await page.get_by_role("link", name=f"{prefix}-alpha").click()
    await expect(page).to_have_url(f"{console.base}/#/registry/{alpha}")
    await expect(page.get_by_role("heading", level=2, name=f"{prefix}-alpha")).to_be_visible()
    await expect(page.get_by_test_id("active-production")).to_have_text("v1")
    await settle(page, f"{prefix}-alpha")
    await screenshot(page, "registry-filters")
