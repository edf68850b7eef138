"""The web console in headless Chromium against the real service.

One ``aimm dev`` (API, projector, training and prediction worker; sample market data and
the assistant's seed roles) runs for these tests, on a fresh database of the test server,
serving the built console at ``/``; it stops before the next package's tests start.
Playwright drives the system's Chromium by its path (a test tool's own browser download
does not work offline). Each test gets a new browser context signed in with the admin
key; the ``console`` fixture fails the test on any uncaught error in the page and on any
request that leaves aimm's own origin.

Helpers every page's test uses: ``axe_violations`` (axe-core from the console's own
``node_modules``; serious and critical ones fail), ``screenshot`` (saved to
``build/screenshots/``, or where ``AIMM_SCREENSHOTS`` says: ``make screenshots`` writes
the README's) and ``ApiClient`` (the public API, for arranging what a test needs and
checking what the page did).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    async_playwright,
    expect,
)

from infrastructure.postgres import with_database
from tests.conftest import free_port, server_home
from tests.helpers import ADMIN_KEY

ROOT = Path(__file__).resolve().parents[2]
# the built console (AIMM_CONSOLE_DIR names another build, e.g. one made elsewhere)
DIST = Path(os.environ.get("AIMM_CONSOLE_DIR") or ROOT / "console" / "dist").resolve()
AXE = ROOT / "console" / "node_modules" / "axe-core" / "axe.min.js"
# build/ is ignored by git: a test run leaves the tree clean; `make screenshots` writes the
# README's pictures (docs/screenshots) instead
SCREENSHOTS = Path(os.environ.get("AIMM_SCREENSHOTS") or ROOT / "build" / "screenshots")
CHROMIUM = os.environ.get("AIMM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# the flags a closed network needs (no background fetches, no first-run work)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@dataclass
class Service:
    """The running ``aimm dev``: its base URL and an admin key."""

    base: str
    key: str
    database_url: str
    log: Path


@dataclass
class ApiClient:
    """The public API with a key, for arranging a test and checking what the page did."""

    base: str
    key: str
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.key}"}, timeout=60
        )

    def call(self, method: str, path: str, expect: int | tuple[int, ...], **kw: Any) -> Any:
        headers = dict(kw.pop("headers", {}) or {})
        if method != "GET":
            headers.setdefault("Idempotency-Key", uuid.uuid4().hex)
        response = self.client.request(method, path, headers=headers, **kw)
        wanted = (expect,) if isinstance(expect, int) else expect
        assert response.status_code in wanted, (
            f"{method} {path}: {response.status_code} {response.text}"
        )
        return response

    def get(self, path: str, expect: int = 200, **params: Any) -> Any:
        return self.call("GET", path, expect, params=params).json()

    def post(
        self, path: str, body: Any, expect: int | tuple[int, ...] = (200, 201, 202), **kw: Any
    ) -> Any:
        return self.call("POST", path, expect, json=body, **kw)

    def put(
        self, path: str, body: Any, expect: int | tuple[int, ...] = (200, 201), **kw: Any
    ) -> Any:
        return self.call("PUT", path, expect, json=body, **kw)


async def _admin(server_url: str, statement: str) -> None:
    admin = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@pytest.fixture(scope="package")
async def service(server_url: str) -> AsyncIterator[Service]:
    if not (DIST / "index.html").is_file():
        pytest.fail("the console is not built: `make console` (Node.js 20+ and npm) builds it")
    name = f"aimm_b_{uuid.uuid4().hex[:12]}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    port = free_port()
    with server_home() as home:
        log = home / "aimm-dev.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIMM_")}
        env.update(
            {
                "AIMM_DATABASE_URL": url,
                "AIMM_DATA_DIR": str(home / "data"),
                "AIMM_PORT": str(port),
                "AIMM_LOG_LEVEL": "WARNING",
                "AIMM_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
                "AIMM_CONSOLE_DIR": str(DIST),
                # the browser tests click fast; the rate limit is not what they test
                "AIMM_RATE_LIMIT": "off",
            }
        )
        proc = _start_dev(env, log)
        try:
            base = f"http://127.0.0.1:{port}"
            await _wait_ready(base, proc, log)
            yield Service(base, ADMIN_KEY, url, log)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.to_thread(proc.wait, 60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _start_dev(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "api.cli", "dev"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _output(log: Path) -> str:
    return log.read_text(errors="replace")


async def _wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the seed roles are readable (``aimm dev`` seeds them after it starts serving)."""
    deadline = time.monotonic() + 120
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"aimm dev exited with {proc.returncode}:\n{_output(log)}")
            try:
                response = await client.get("/api/v1/ai-assistant/config")
                if response.status_code == 200 and len(response.json().get("roles", [])) >= 4:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)  # polling a condition, bounded by the deadline
    raise AssertionError(f"aimm dev never became ready:\n{_output(log)}")


@pytest.fixture(scope="package")
def api(service: Service) -> Iterator[ApiClient]:
    client = ApiClient(service.base, service.key)
    yield client
    client.client.close()


@pytest.fixture(scope="package")
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as p:
        yield p


@pytest.fixture(scope="package")
async def browser(playwright: Playwright) -> AsyncIterator[Browser]:
    browser = await playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    await browser.close()


@dataclass
class Console:
    """A signed-in page of the console, with what went wrong in it."""

    page: Page
    base: str
    errors: list[str]
    foreign: list[str]

    async def open(self, route: str) -> Page:
        """Navigate to a page of the console (``/registry``, ``/memory``…)."""
        await self.page.goto(f"{self.base}/#{route}")
        return self.page


@contextlib.asynccontextmanager
async def signed_in(browser: Browser, service: Service, key: str) -> AsyncIterator[Console]:
    """A page of the console signed in with ``key`` (as the key gate would leave it in
    session storage); fails on any error in the page or request to another host."""
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    await context.add_init_script(f"sessionStorage.setItem('aimm.apiKey', {key!r})")
    await with_axe(context)
    page = await context.new_page()
    errors: list[str] = []
    foreign: list[str] = []
    origin = service.base

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Failed to load resource" not in message.text:
            errors.append(message.text)

    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    page.on("console", on_console)
    page.on(
        "request",
        lambda req: (
            None
            if req.url.startswith(origin) or req.url.startswith("data:")
            else foreign.append(req.url)
        ),
    )
    try:
        yield Console(page, origin, errors, foreign)
    finally:
        await context.close()
    assert not foreign, f"the console asked another host: {foreign}"
    assert not errors, f"errors in the page: {errors}"


@pytest.fixture
async def console(browser: Browser, service: Service) -> AsyncIterator[Console]:
    """The console signed in as an admin."""
    async with signed_in(browser, service, service.key) as console:
        yield console


async def with_axe(context: BrowserContext) -> None:
    """axe-core in every page of ``context`` (an init script: the page's policy forbids
    injecting a script later, rightly)."""
    await context.add_init_script(path=str(AXE))


async def axe_violations(
    page: Page, *, impacts: tuple[str, ...] = ("serious", "critical")
) -> list[str]:
    """axe-core's violations of ``impacts`` on the page as it is now, one line each
    (the page's context must have had ``with_axe``)."""
    result = await page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — "
        + "; ".join(str(n["target"]) for n in v["nodes"][:5])
        for v in result["violations"]
        if v["impact"] in impacts
    ]


async def screenshot(page: Page, name: str) -> Path:
    """Saves the page as ``<name>.png`` under ``AIMM_SCREENSHOTS`` (default
    ``build/screenshots``; ``make screenshots`` refreshes the README's, docs/screenshots)."""
    path = SCREENSHOTS / f"{name}.png"  # Playwright makes the folder
    await page.screenshot(path=str(path), full_page=True)
    return path


FOCUSABLE = """() => {
  const selector = 'a[href], button:not([disabled]), input:not([disabled]):not([type=hidden]),'
    + ' select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"]),'
    + ' [contenteditable="true"]';
  const hidden = (e) => e.closest('[inert], dialog:not([open])')
    || (e.closest('details:not([open])') && !e.matches('details > summary'));
  const shown = [...document.querySelectorAll(selector)].filter(
    (e) => e.getClientRects().length > 0 && !hidden(e));
  shown.forEach((e, i) => { e.dataset.kbd = String(i); });
  return shown.map((e) => (e.getAttribute('aria-label') || e.textContent || e.id
    || e.getAttribute('name') || e.tagName).trim().slice(0, 60));
}"""


async def unreachable_by_keyboard(page: Page) -> list[str]:
    """The visible controls of the page that Tab never focuses (one pass from the top):
    the names of those a keyboard user could not reach; [] when all are reachable."""
    names: list[str] = await page.evaluate(FOCUSABLE)
    await page.evaluate("document.activeElement && document.activeElement.blur()")
    seen: set[str] = set()
    # a date or time input takes several stops (one per part)
    for _ in range(4 * len(names) + 15):
        await page.keyboard.press("Tab")
        mark = await page.evaluate("document.activeElement?.dataset?.kbd ?? null")
        if mark is not None:
            seen.add(mark)
        if len(seen) == len(names):
            break
    return [name for i, name in enumerate(names) if str(i) not in seen]


async def page_is_sound(page: Page, name: str | None = None) -> None:
    """What every page test ends with: no serious or critical axe-core violation, every
    control reached by Tab, no dialog left open; then the screenshot ``name`` if given."""
    await expect(page.locator("dialog[open]")).to_have_count(0)
    assert await axe_violations(page) == []
    assert await unreachable_by_keyboard(page) == []
    await page.evaluate("document.activeElement && document.activeElement.blur()")
    if name is not None:
        await screenshot(page, name)


def unique(prefix: str) -> str:
    """A name no other test of the session uses (they share one service)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def digits(text: str) -> int:
    return int(re.sub(r"\D", "", text) or 0)
