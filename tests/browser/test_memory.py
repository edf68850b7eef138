"""The memory page: search, delete (invalidate) and restore, the knowledge graph with its
accessible node list, the timeline, erasure, and the API's refusals shown."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import (
    ApiClient,
    Console,
    page_is_sound,
    unique,
)

MEMORY = "/api/v1/memory"


def word() -> str:
    """A word no other memory of the session holds (letters only: one search token)."""
    return "zq" + "".join("bcdfghjklmnprstvw"[int(c, 16)] for c in uuid.uuid4().hex[:10])


@dataclass
class Arranged:
    agent: str
    word: str
    ids: list[str]  # in the order recorded
    contents: list[str]


def record(api: ApiClient, memories: list[dict]) -> list[str]:
    body = api.post(f"{MEMORY}/batch", {"memories": memories}, expect=201).json()
    return [item["id"] for item in body["items"]]


@pytest.fixture(scope="module")
def arranged(api: ApiClient) -> Arranged:
    """One agent's memories: recorded out of time order, with entities and relations,
    and one whose text is markup (it must be shown as text)."""
    agent, w = unique("trader"), word()
    contents = [
        f"Plan: trim $AAPL before earnings, {w} signal fading",
        f"Fact: Apple supplies chips to the desk model; {w} confirmed by the CFO",
        f"Observation: <img src=x onerror=alert(1)> appeared in a {w} feed",
        "Reflection: volatility forecasts were too wide last week",
    ]
    memories = [
        {
            "agent_id": agent,
            "content": contents[0],
            "kind": "plan",
            "importance": 0.9,
            "occurred_at": "2026-03-04T09:00:00Z",
            "entities": [{"name": "Apple", "type": "company"}],
            "relations": [{"subject": "Apple", "predicate": "reports", "object": "earnings"}],
        },
        {
            "agent_id": agent,
            "content": contents[1],
            "kind": "fact",
            "importance": 0.6,
            "occurred_at": "2026-03-01T09:00:00Z",
            "entities": [{"name": "Apple", "type": "company"}, {"name": "CFO", "type": "role"}],
            "tags": ["earnings"],
        },
        {
            "agent_id": agent,
            "content": contents[2],
            "kind": "observation",
            "importance": 0.3,
            "occurred_at": "2026-03-03T09:00:00Z",
        },
        {
            "agent_id": agent,
            "content": contents[3],
            "kind": "reflection",
            "importance": 0.5,
            "occurred_at": "2026-03-02T09:00:00Z",
        },
    ]
    return Arranged(agent, w, record(api, memories), contents)


async def search(page: Page, query: str) -> None:
    await page.get_by_role("searchbox", name="Query").fill(query)
    await page.get_by_role("search", name="Memories").get_by_role("button", name="Search").click()


async def show_agent(page: Page, agent: str) -> None:
    await page.get_by_role("combobox", name="Agent id").fill(agent)
    await page.get_by_role("button", name="Show agent").click()


async def test_search_then_delete_leaves_the_results_and_restore_brings_it_back(
    console: Console, api: ApiClient, arranged: Arranged
) -> None:
    page = await console.open("/memory")
    await search(page, arranged.word)
    hits = page.get_by_test_id("mem-hits").locator("tbody tr")
    await expect(hits).to_have_count(3)
    # highlighted snippets, and markup in a memory is shown as its text, never run
    await expect(hits.locator("mark").first).to_have_text(arranged.word)
    table = page.get_by_test_id("mem-hits")
    markup = table.locator(f'tr[data-memory="{arranged.ids[2]}"]')
    await expect(markup).to_contain_text("<img src=x onerror=alert(1)>")
    assert await page.get_by_test_id("mem-hits").locator("img").count() == 0
    # the score's parts are shown
    header = page.get_by_test_id("mem-hits").locator("thead")
    for part in ("Score", "Relevance", "Text rank", "Trigram", "Strength"):
        await expect(header).to_contain_text(part)

    gone = arranged.ids[1]
    await page.get_by_role("button", name=f"Open memory {gone[:8]}").click()
    panel = page.get_by_test_id("mem-node")
    await expect(panel).to_have_attribute("data-status", "active")
    await page.get_by_role("button", name=f"Delete memory {gone[:8]}").click()
    dialog = page.get_by_role("dialog", name="Delete (invalidate) this memory?")
    await expect(dialog).to_contain_text(arranged.contents[1])  # names the memory
    await expect(dialog).to_contain_text(gone)
    await dialog.get_by_role("button", name="Invalidate memory").click()
    await expect(dialog).to_be_hidden()
    await expect(hits).to_have_count(2)
    await expect(table.locator(f'tr[data-memory="{gone}"]')).to_have_count(0)
    assert api.get(f"{MEMORY}/{gone}")["status"] == "invalidated"
    await expect(panel).to_have_attribute("data-status", "invalidated")
    # gone from the graph's node list too
    await expect(page.locator(f'[data-node="memory:{gone}"]')).to_have_count(0)

    await panel.get_by_role("button", name="Restore").click()
    dialog = page.get_by_role("dialog", name="Restore this memory?")
    await expect(dialog).to_contain_text(arranged.contents[1])
    await dialog.get_by_role("button", name="Restore memory").click()
    await expect(hits).to_have_count(3)
    await expect(table.locator(f'tr[data-memory="{gone}"]')).to_have_count(1)
    await expect(panel).to_have_attribute("data-status", "active")
    assert api.get(f"{MEMORY}/{gone}")["status"] == "active"
    await expect(page.get_by_role("status").filter(has_text="restored")).to_be_visible()
    await page_is_sound(page, "memory-search")


async def test_the_graph_draws_the_agent_and_the_node_list_selects(
    console: Console, api: ApiClient, arranged: Arranged
) -> None:
    graph = api.get(f"{MEMORY}/agents/{arranged.agent}")
    page = await console.open("/memory")
    await show_agent(page, arranged.agent)
    drawn = page.get_by_test_id("memory-graph")
    await expect(drawn).to_have_attribute("data-nodes", str(len(graph["nodes"])))
    await expect(drawn).to_have_attribute("data-edges", str(len(graph["edges"])))
    assert len([n for n in graph["nodes"] if n["type"] == "memory"]) == 4
    await expect(page.get_by_role("list", name="Legend")).to_contain_text("reflection")

    # a memory from the accessible list: its content, entities, strength and history
    plan = arranged.ids[0]
    button = page.locator(f'[data-node="memory:{plan}"]')
    await button.click()
    await expect(button).to_have_attribute("aria-pressed", "true")
    panel = page.get_by_test_id("mem-node")
    await expect(panel).to_have_attribute("data-memory", plan)
    await expect(panel.locator("blockquote")).to_have_text(arranged.contents[0])
    await expect(panel.get_by_role("list", name="Entities")).to_contain_text("Apple")
    components = panel.locator("table.mem-components")
    for name in ("Retention", "Importance", "Stability", "Accesses"):
        await expect(components).to_contain_text(name)
    await expect(panel.locator("table.mem-history tbody tr")).to_have_count(1)
    await expect(panel.locator("table.mem-history")).to_contain_text("recorded")
    # an entity from the list: what mentions it
    await page.locator('[data-node="entity:company:apple"]').click()
    await expect(panel).to_have_attribute("data-entity", "entity:company:apple")
    await expect(panel).to_contain_text("Mentioned by 2 memories")
    await expect(panel.locator(".mem-relations")).to_contain_text("reports")
    # the URL keeps the selection
    assert "node=entity" in page.url and arranged.agent in page.url
    await page.locator(f'[data-node="memory:{plan}"]').click()
    await expect(panel).to_have_attribute("data-memory", plan)
    await page_is_sound(page, "memory")


async def test_the_timeline_lists_the_memories_in_time_order(
    console: Console, arranged: Arranged
) -> None:
    page = await console.open(f"/memory?agent={arranged.agent}")
    rows = page.get_by_test_id("mem-timeline").locator("tbody tr")
    await expect(rows).to_have_count(4)
    # recorded as plan, fact, observation, reflection; occurred fact, reflection,
    # observation, plan
    order = [arranged.ids[i] for i in (1, 3, 2, 0)]
    assert [await row.get_attribute("data-memory") for row in await rows.all()] == order
    await expect(rows.first).to_contain_text("2026-03-01 09:00:00 UTC")
    await expect(rows.first).to_contain_text("created")
    await expect(page.locator(".mem-counts tbody tr")).not_to_have_count(0)
    await rows.nth(1).get_by_role("button").click()
    await expect(page.get_by_test_id("mem-node")).to_have_attribute("data-memory", order[1])
    await page_is_sound(page)


async def test_a_refused_search_and_a_stale_delete_are_shown(
    console: Console, api: ApiClient
) -> None:
    agent, w = unique("analyst"), word()
    [mid] = record(api, [{"agent_id": agent, "content": f"Stale {w} memory", "kind": "fact"}])
    page = await console.open(f"/memory?agent={agent}&node=memory:{mid}")
    # a blank query is refused by the API (400), shown where the search is
    await search(page, "   ")
    problem = page.get_by_role("search", name="Memories").locator("xpath=..").get_by_role("alert")
    await expect(problem).to_have_attribute("data-status", "400")
    await expect(problem).to_contain_text("malformed")

    # a strength above 1 is refused by the API (400), shown above the graph
    filters = page.get_by_role("form", name="Graph filters")
    await filters.get_by_role("spinbutton", name="Min strength").fill("2")
    await filters.get_by_role("button", name="Apply").click()
    refused = page.locator("section", has=filters).get_by_role("alert")
    await expect(refused).to_have_attribute("data-status", "400")
    await expect(refused).to_contain_text("min_strength")
    await filters.get_by_role("spinbutton", name="Min strength").fill("")
    await filters.get_by_role("button", name="Apply").click()
    await expect(refused).to_have_count(0)
    await expect(page.get_by_test_id("memory-graph")).to_have_attribute("data-nodes", "1")

    panel = page.get_by_test_id("mem-node")
    await expect(panel).to_have_attribute("data-status", "active")
    await panel.get_by_role("button", name="Delete (invalidate)").click()
    dialog = page.get_by_role("dialog", name="Delete (invalidate) this memory?")
    await expect(dialog).to_contain_text("version 1")
    # someone else changes the memory while the dialog is open
    api.post(f"{MEMORY}/{mid}/reinforce", {"value": 0.5}, expect=200)
    await dialog.get_by_role("button", name="Invalidate memory").click()
    conflict = dialog.get_by_role("alert")
    await expect(conflict).to_have_attribute("data-status", "409")
    await expect(conflict).to_contain_text("Someone else changed this")
    assert api.get(f"{MEMORY}/{mid}")["status"] == "active"  # nothing happened
    await conflict.get_by_role("button", name="Reload the latest version").click()
    await expect(dialog).to_contain_text("version 2")
    await expect(dialog.get_by_role("alert")).to_have_count(0)
    await dialog.get_by_role("button", name="Invalidate memory").click()
    await expect(dialog).to_be_hidden()
    await expect(panel).to_have_attribute("data-status", "invalidated")
    assert api.get(f"{MEMORY}/{mid}")["status"] == "invalidated"
    await page_is_sound(page)


async def test_erase_destroys_the_text_and_keeps_the_history(
    console: Console, api: ApiClient
) -> None:
    agent, w = unique("erased"), word()
    content = f"Secret {w} that must go"
    [mid] = record(api, [{"agent_id": agent, "content": content}])
    page = await console.open(f"/memory?agent={agent}&node=memory:{mid}")
    panel = page.get_by_test_id("mem-node")
    await expect(panel.locator("blockquote")).to_have_text(content)
    await panel.get_by_role("button", name="Erase for good").click()
    dialog = page.get_by_role("dialog", name="Erase this memory for good?")
    await expect(dialog).to_contain_text(content)
    await expect(dialog).to_contain_text("cannot be undone")
    await dialog.get_by_role("button", name="Erase memory").click()
    await expect(panel).to_have_attribute("data-status", "erased")
    await expect(panel).to_contain_text("The text was erased")
    await expect(panel).not_to_contain_text(w)
    await expect(panel.locator("table.mem-history")).to_contain_text("erased")
    found = api.get(f"{MEMORY}/{mid}")
    assert found["status"] == "erased" and found["content"] is None
    await page_is_sound(page)


async def test_the_agents_are_listed_and_one_opens_its_graph(
    console: Console, api: ApiClient, arranged: Arranged
) -> None:
    page = await console.open("/memory")
    listed = {a["agent_id"]: a for a in api.get(f"{MEMORY}/agents", limit=500)["items"]}
    mine = listed[arranged.agent]
    row = page.get_by_test_id("agent-table").locator(
        "tr", has=page.get_by_role("button", name=arranged.agent)
    )
    counts = [str(mine[k]) for k in ("memories", "active", "invalidated", "erased")]
    await expect(row.locator("td.num")).to_have_text(counts)
    await expect(page.get_by_text(f"{len(listed)} agents have memories")).to_be_visible()
    await page_is_sound(page)
    await row.get_by_role("button", name=arranged.agent).click()
    await expect(
        page.get_by_role("heading", name=f"Knowledge graph of {arranged.agent}")
    ).to_be_visible()
    await expect(page.get_by_test_id("memory-graph")).not_to_have_attribute("data-nodes", "0")
