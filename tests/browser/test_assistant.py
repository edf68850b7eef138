"""The assistant page: roles and their settings, the prompt editor, diff, tests, experiments.

Each test arranges what it needs through the public API (its own role or prompt, under a
``unique()`` name), drives the page as a person would, and checks the result both on the
page and through the API.
"""

from __future__ import annotations

import re

from playwright.async_api import expect

from tests.browser.conftest import (
    ApiClient,
    Console,
    page_is_sound,
    screenshot,
    unique,
)

BASE = "/api/v1/ai-assistant"
MODEL = "embedded:smollm2-135m-instruct"


def new_role(api: ApiClient, **settings: object) -> str:
    """A role of its own (roles are never removed; the session's database is fresh)."""
    key = unique("t")
    api.post(f"{BASE}/roles", {"role": key, "model": MODEL, "settings": settings})
    return key


def new_prompt(api: ApiClient, role: str, *versions: tuple[str, str]) -> str:
    prompt = api.post(f"{BASE}/prompts", {"role": role, "name": unique("p")}).json()
    for n, (system, user) in enumerate(versions, start=1):
        variables = sorted(set(re.findall(r"\{\{\s*(\w+)\s*\}\}", system + user)))
        api.put(
            f"{BASE}/prompts/{prompt['id']}",
            {
                "system_template": system,
                "user_template": user,
                "variables": variables,
                "message": f"version {n}",
            },
        )
    return prompt["id"]


async def test_edit_a_prompt_see_the_diff_and_run_a_test(console: Console, api: ApiClient) -> None:
    role = new_role(api, temperature=0.2, max_tokens=256, seed=7)
    prompt = new_prompt(api, role, ("You are terse.\nAnswer briefly.", "Greet {{name}}."))
    page = await console.open(f"/assistant?role={role}&view=prompts&prompt={prompt}")

    # the editor holds version 1, with its variables shown
    system = page.get_by_role("textbox", name="System template")
    await expect(system).to_contain_text("Answer briefly.")
    await expect(page.get_by_test_id("variables")).to_contain_text("{{name}}")

    # edit the system template in CodeMirror and commit: a new version
    await system.click()
    await page.keyboard.press("Control+End")
    await page.keyboard.type("\nAlways name the person.")
    await page.get_by_label("Commit message").fill("name the person")
    await page.get_by_role("button", name="Save as new version").click()
    await expect(page.get_by_role("status").filter(has_text="Committed version 2")).to_be_visible()
    await expect(page.get_by_test_id("versions").locator("tbody tr")).to_have_count(2)
    versions = api.get(f"{BASE}/prompts/{prompt}/versions")["items"]
    assert [v["version"] for v in versions] == [1, 2]
    v2 = api.get(f"{BASE}/prompts/{prompt}/versions/2")
    assert v2["system_template"] == "You are terse.\nAnswer briefly.\nAlways name the person."
    assert v2["message"] == "name the person"

    # the diff between the two versions shows the added line (and only it as added)
    await page.get_by_label("From version", exact=True).select_option("1")
    await page.get_by_label("To version", exact=True).select_option("2")
    await page.get_by_role("button", name="Show diff").click()
    result = page.get_by_test_id("diff-result")
    await expect(result).to_have_attribute("data-to", "2")
    added = result.get_by_test_id("system-diff").locator(".diff-line.add")
    await expect(added.filter(has_text="Always name the person.")).to_have_text(
        "+Always name the person."
    )
    await expect(result.locator(".diff-line.del").filter(has_text="Always")).to_have_count(0)
    await expect(result.get_by_test_id("user-diff")).to_have_count(0)
    await page.get_by_role("button", name="Side by side").click()
    right = page.get_by_role("textbox", name="System template, version 2 (read-only)")
    await expect(right).to_contain_text("Always name the person.")
    await expect(page.locator(".cm-mergeView .cm-changedLine").first).to_be_visible()
    await screenshot(page, "assistant-diff")
    await page.get_by_role("button", name="Unified").click()

    # labels: staging to v1, then v2, then rolled back (confirmed) to v1
    labels = page.get_by_test_id("labels")
    await page.get_by_label("Move to version").select_option("1")
    await page.get_by_role("button", name="Move label").click()
    await expect(labels).to_contain_text("v1")
    await page.get_by_label("Move to version").select_option("2")
    await page.get_by_role("button", name="Move label").click()
    await expect(labels.locator("tbody tr")).to_contain_text("v2")
    await labels.get_by_role("button", name="Rollback staging").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("moves from v2 back to v1")
    await dialog.get_by_role("button", name="Roll back").click()
    await expect(labels.locator("tbody tr")).to_contain_text("v1")
    assert api.get(f"{BASE}/prompts/{prompt}")["labels"] == {"staging": 1}
    moves = api.get(f"{BASE}/prompts/{prompt}/label-history")["items"]
    assert [(m["action"], m["version"]) for m in moves] == [
        ("move", 1),
        ("move", 2),
        ("rollback", 1),
    ]

    # run version 2 against one sample input with one assertion: output and verdicts
    await page.get_by_label("name", exact=True).fill("Ada")
    await page.get_by_label("Max tokens", exact=True).fill("12")
    await page.get_by_label("Value", exact=True).fill("5000")
    await page.get_by_role("button", name="Run test (1 case)").click()
    case = page.get_by_test_id("case")
    await expect(case).to_have_count(1, timeout=60_000)
    # the page lists the run once the read model has it (its reads wait for its command)
    await expect(page.get_by_test_id("test-runs").locator("tbody tr")).to_have_count(1)
    run = api.get(f"{BASE}/prompts/{prompt}/tests")["items"][0]
    assert (run["total"], run["passed"], run["subjects"][0]["version"]) == (1, 1, 2)
    detail = api.get(f"{BASE}/prompts/{prompt}/tests/{run['id']}")
    output = detail["cases"][0]["output"]
    assert output and detail["cases"][0]["rendered_user"] == "Greet Ada."
    await expect(case.get_by_test_id("output")).to_contain_text(output.strip()[:40])
    verdict = case.get_by_test_id("assertion-results").locator("li")
    await expect(verdict).to_have_count(1)
    await expect(verdict).to_have_attribute("data-passed", "true")
    await expect(verdict).to_contain_text("pass max_chars 5000")
    await expect(case.get_by_test_id("verdict")).to_have_text("passed")

    await page_is_sound(page, "assistant")


async def test_role_settings_refused_field_and_conflict_reload(
    console: Console, api: ApiClient
) -> None:
    role = new_role(api, temperature=0.4, max_tokens=200)
    page = await console.open(f"/assistant?role={role}")
    temperature = page.get_by_label("Temperature", exact=True)
    await expect(temperature).to_have_value("0.4")

    # out of range: the API's 400 is shown beside the field, nothing is saved
    await temperature.fill("5")
    await page.get_by_label("Reason for the change").fill("hotter")
    await page.get_by_role("button", name="Save settings").click()
    error = page.locator("#s-temperature-error")
    await expect(error).to_have_text("must be a number between 0 and 2")
    await expect(temperature).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_role("alert")).to_contain_text("(400)")
    assert api.get(f"{BASE}/roles/{role}")["settings"]["temperature"] == 0.4

    # someone changes the configuration meanwhile: the save is a 409 with a reload
    current = api.call("GET", f"{BASE}/config", 200)
    api.put(
        f"{BASE}/config",
        {"roles": [{"role": role, "settings": {"max_tokens": 300}}], "reason": "elsewhere"},
        headers={"If-Match": current.headers["etag"]},
    )
    await temperature.fill("0.9")
    await page.get_by_role("button", name="Save settings").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("Someone else changed this in the meantime.")
    await expect(alert).to_have_attribute("data-status", "409")
    assert api.get(f"{BASE}/roles/{role}")["settings"]["temperature"] == 0.4
    await alert.get_by_role("button", name="Reload the latest version").click()
    await expect(page.get_by_label("Max tokens", exact=True)).to_have_value("300")
    await expect(temperature).to_have_value("0.4")
    await expect(page.get_by_role("alert")).to_have_count(0)

    # on the latest version the same change is saved, and the history shows it
    await temperature.fill("0.9")
    await page.get_by_label("Reason for the change").fill("a little warmer")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.get_by_role("status").filter(has_text="Saved")).to_be_visible()
    history = page.get_by_test_id("role-history").locator("tbody tr")
    await expect(history.first).to_contain_text("temperature 0.4 → 0.9")
    await expect(history.first).to_contain_text("a little warmer")
    assert api.get(f"{BASE}/roles/{role}")["settings"] == {
        "temperature": 0.9,
        "max_tokens": 300,
        "top_p": None,
        "stop": [],
        "seed": None,
    }
    row = page.get_by_test_id("roles").locator(f'tr[data-role="{role}"]')
    await expect(row.locator("td.num").first).to_have_text("0.90")

    await page_is_sound(page, "assistant-settings")


async def test_experiment_results_table_and_conclusion(console: Console, api: ApiClient) -> None:
    role = new_role(api, max_tokens=64)
    prompt = new_prompt(api, role, ("Be brief.", "Q: {{q}}"), ("Be brief and kind.", "Q: {{q}}"))
    api.put(f"{BASE}/prompts/{prompt}/labels/production", {"version": 1})
    api.put(f"{BASE}/config", {"roles": [{"role": role, "prompt_id": prompt}], "reason": "run it"})
    started = api.post(
        f"{BASE}/experiments",
        {
            "role": role,
            "variants": [
                {"prompt_id": prompt, "prompt_version": 1},
                {"prompt_id": prompt, "prompt_version": 2},
            ],
            "metric": "rate",
            "min_sample": 2,
            "reason": "kinder?",
        },
    )
    experiment, position = started.json()["id"], started.headers["aimm-position"]
    counts = [0, 0]
    for i in range(8):
        unit = f"u{i}"
        # resolve reads the read models: wait for the experiment's start to be in them
        variant = api.get(f"{BASE}/resolve", role=role, unit=unit, wait_for=position)["variant"]
        counts[variant] += 1
        answer = api.post(
            f"{BASE}/experiments/{experiment}/outcomes", {"unit": unit, "value": variant}
        )
        position = answer.headers.get("aimm-position") or position
    results = api.get(f"{BASE}/experiments/{experiment}/results", wait_for=position)
    assert [v["n"] for v in results["variants"]] == counts

    page = await console.open(f"/assistant?role={role}&view=experiments&experiment={experiment}")
    table = page.get_by_test_id("results")
    await expect(table.locator("tbody tr")).to_have_count(2)
    for index, n in enumerate(counts):
        cell = table.locator(f'tr[data-variant="{index}"]').get_by_test_id("n")
        await expect(cell).to_contain_text(str(n))
    # variant 1's units all succeeded, variant 0's none: a rate of 100% against 0%
    if counts[1]:
        await expect(table.locator('tr[data-variant="1"]')).to_contain_text("100.0%")
    await screenshot(page, "assistant-experiment")

    # conclude with variant 1: it becomes production (after a confirmation naming it)
    await page.get_by_label("Winner").select_option("1")
    await page.get_by_label("Why", exact=True).fill("kinder wins")
    await page.get_by_role("button", name="Conclude…").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("moves to v2")
    await dialog.get_by_role("button", name="Conclude").click()
    await expect(page.get_by_test_id("conclusion")).to_contain_text("winner: variant 1")
    await expect(page.get_by_test_id("experiment")).to_have_attribute("data-status", "concluded")
    assert api.get(f"{BASE}/experiments/{experiment}")["status"] == "concluded"
    assert api.get(f"{BASE}/prompts/{prompt}")["labels"]["production"] == 2

    await page_is_sound(page, "assistant-experiment")


async def test_a_long_run_is_a_job_the_page_follows_and_stops(
    console: Console, api: ApiClient
) -> None:
    """More than 20 cases is a job (202): the page says so and lists it under Test jobs,
    read again while the worker runs it, until its run can be opened. A job is stopped
    from its row at once, the cases run so far kept."""
    role = new_role(api, temperature=0, max_tokens=8, seed=7)
    prompt = new_prompt(api, role, ("You are terse.", "Greet {{name}}."))
    long = api.post(
        f"{BASE}/prompts/{prompt}/test",
        {
            "versions": [1],
            "inputs": [{"values": {"name": f"Person {n}"}} for n in range(200)],
            "reason": "too long to wait for",
            "job": True,
        },
        expect=202,
    ).json()
    page = await console.open(f"/assistant?role={role}&view=prompts&prompt={prompt}")
    jobs = page.get_by_test_id("test-job")
    await expect(jobs).to_have_count(1)
    await jobs.get_by_role("button", name=re.compile("^Stop the test job")).click()
    await expect(jobs).to_have_attribute("data-status", "stopped")
    await expect(jobs).to_contain_text("stopped from the console")
    stopped = api.get(f"{BASE}/prompts/{prompt}/test-jobs/{long['id']}")
    assert (stopped["status"], stopped["run_id"]) == ("stopped", None)
    assert stopped["done"] < stopped["total"] == 200

    # 21 cases from the form: a job, followed on the page until its run opens
    for _ in range(20):
        await page.get_by_role("button", name="Add input").click()
    await page.get_by_role("button", name="Run test (21 cases)").click()
    await expect(page.get_by_text("21 cases: the run is a job")).to_be_visible()
    await expect(jobs).to_have_count(2)
    newest = jobs.first
    await expect(newest).to_have_attribute("data-status", "completed", timeout=120_000)
    await expect(newest).to_contain_text("21 of 21")
    await newest.get_by_role("button", name=re.compile("^Open run of the test job")).click()
    await expect(page.get_by_test_id("case")).to_have_count(21)
    await page_is_sound(page, "assistant-test-jobs")
