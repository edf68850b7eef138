"""The console's frame: the key asked once, the five pages, errors a person can act on."""

from __future__ import annotations

import asyncio

import httpx
from playwright.async_api import Browser, Route, expect

from tests.browser.conftest import (
    ApiClient,
    Console,
    Service,
    axe_violations,
    page_is_sound,
    screenshot,
    signed_in,
    unique,
    unreachable_by_keyboard,
    with_axe,
)
from tests.browser.test_registry import arrange_model, open_card
from tests.helpers import new_key

PAGES = ["Model registry", "Predictions", "Memory graph", "Assistant", "Training"]


async def test_the_key_is_asked_once_and_a_wrong_one_is_refused(
    browser: Browser, service: Service
) -> None:
    context = await browser.new_context()
    await with_axe(context)
    page = await context.new_page()
    try:
        await page.goto(service.base + "/")
        await expect(page.get_by_role("heading", name="Sign in with an API key")).to_be_visible()
        assert await axe_violations(page) == []
        await page.get_by_role("textbox", name="API key").fill("not-a-key-of-anybody")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("alert")).to_contain_text("unknown or revoked")
        await screenshot(page, "sign-in")
        await page.get_by_role("textbox", name="API key").fill(service.key)
        await page.keyboard.press("Enter")
        nav = page.get_by_role("navigation", name="Pages")
        await expect(nav.get_by_role("link")).to_have_text(PAGES)
        # kept for the tab: a reload does not ask again
        await page.reload()
        await expect(nav).to_be_visible()
        assert await page.evaluate("sessionStorage.getItem('aimm.apiKey')") == service.key
        await page.get_by_role("button", name="Forget key").click()
        await expect(page.get_by_role("textbox", name="API key")).to_be_visible()
        assert await page.evaluate("sessionStorage.getItem('aimm.apiKey')") is None
    finally:
        await context.close()


async def test_every_page_is_reached_from_the_keyboard(console: Console) -> None:
    page = await console.open("/registry")
    await expect(page.get_by_role("navigation", name="Pages")).to_be_visible()
    for name in PAGES:
        # from the top of the page: the skip link is the first stop
        await page.get_by_role("link", name="Skip to content").focus()
        went = []
        for _ in range(12):
            await page.keyboard.press("Tab")
            went.append(await page.evaluate("document.activeElement.textContent.slice(0, 40)"))
            if went[-1] == name:
                break
        else:
            raise AssertionError(f"{name!r} is never focused by Tab; focus went: {went}")
        await page.keyboard.press("Enter")
        link = page.get_by_role("link", name=name)
        await expect(link).to_have_attribute("aria-current", "page")
        # the page is there (its chunk loaded) before the next round starts
        await expect(page.locator("main h1").first).to_be_visible()


async def test_the_page_is_served_with_a_policy_that_keeps_it_on_aimm(service: Service) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(service.base + "/")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    assert "http" not in response.text.split("<body>")[0], "the page names another host"


async def test_the_sign_in_page_is_reachable_by_keyboard(
    browser: Browser, service: Service
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    try:
        await page.goto(service.base + "/")
        await page.get_by_role("textbox", name="API key").fill("x")
        assert await unreachable_by_keyboard(page) == []
    finally:
        await context.close()


async def test_a_viewer_key_sees_the_commands_it_may_not_run_disabled_with_the_reason(
    browser: Browser, service: Service, api: ApiClient
) -> None:
    """``GET /api/v1/me`` tells the console what the key may do: a viewer reads every
    page, and each command it may not run is disabled, saying which key and roles."""
    viewer = await new_key(service.database_url, "viewer", name=unique("viewer"))
    model_id, name = arrange_model(api, deploy=((1, "production", "first release"),))
    async with signed_in(browser, service, viewer) as console:
        page = await open_card(console, model_id, name)
        header = page.get_by_role("banner")
        await expect(header).to_contain_text("· viewer")
        await expect(page.get_by_test_id("read-only")).to_contain_text(
            "may not deploy or roll back"
        )
        deploy = page.get_by_role("button", name="Deploy v2 to production", exact=True)
        await expect(deploy).to_be_disabled()
        await expect(page.get_by_role("button", name="Roll back production")).to_be_disabled()
        await page_is_sound(page)

        page = await console.open("/training")
        launch = page.get_by_role("region", name="New training run")
        await expect(launch).to_contain_text("may not build datasets or start training")
        await expect(launch.get_by_role("button", name="New dataset…")).to_be_disabled()
        await expect(launch.get_by_role("spinbutton", name="Epochs")).to_be_disabled()
        await screenshot(page, "read-only")

    # the admin's console has none of it: the same card, every command enabled
    async with signed_in(browser, service, service.key) as console:
        page = await open_card(console, model_id, name)
        await expect(page.get_by_role("banner")).to_contain_text("· admin")
        await expect(
            page.get_by_role("button", name="Deploy v2 to production", exact=True)
        ).to_be_enabled()
        await expect(page.get_by_test_id("read-only")).to_have_count(0)


async def test_after_a_reload_commands_wait_until_me_says_what_the_key_may_do(
    browser: Browser, service: Service, api: ApiClient
) -> None:
    """A page reloaded with a kept key shows its data before ``GET /api/v1/me`` has
    answered; until it has, the commands are disabled, without a reason to give yet, so
    a viewer's key never meets an enabled Deploy. ``/me`` is held back here (its real
    answer, late) to make that moment last."""
    model_id, name = arrange_model(api, deploy=((1, "production", "first release"),))
    answer = asyncio.Event()

    async def late(route: Route) -> None:
        await answer.wait()
        await route.continue_()

    async with signed_in(browser, service, service.key) as console:
        await console.page.route("**/api/v1/me", late)
        page = await open_card(console, model_id, name)
        deploy = page.get_by_role("button", name="Deploy v2 to production", exact=True)
        await expect(deploy).to_be_disabled()
        await expect(page.get_by_test_id("read-only")).to_have_count(0)
        answer.set()
        await expect(page.get_by_role("banner")).to_contain_text("· admin")
        await expect(deploy).to_be_enabled()
