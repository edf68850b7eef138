"""The web console: its bundle's size and the time to a registry of 1,000 models.

Run: ``make console && .venv/bin/python -m benchmarks.console`` (``--help`` for the
knobs). PostgreSQL comes from ``AIMM_DATABASE_URL`` when set, else the embedded server is
started; the benchmark works in a fresh database that it drops at the end. The browser is
the system's Chromium (``AIMM_CHROMIUM`` names another), headless, driven by Playwright.

(a) The built bundle (``console/dist``): each file's size and its gzip size (level 6, as
    the API compresses it), the total, and what the registry page actually transfers on
    a first visit (the browser's count of encoded body bytes).
(b) ``--models`` models (1,000) are registered, then ``aimm serve`` and ``aimm projector``
    run as processes of their own (as ``aimm dev`` runs them). In a new browser context
    each time (nothing cached), the time from navigation to the registry page showing
    every model (its count reads 1,000 and the table has 1,000 rows), against the
    baseline in the same run: the API calls alone, the same list pages fetched by the
    same browser from a page of the same origin with the same key. Runs alternate;
    printed are the medians and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from playwright.async_api import Browser, Request, async_playwright

from application.registry import RegistryApplication
from benchmarks.common import aimm_services, fresh_database, postgres_server, service_env
from benchmarks.registry import seed
from infrastructure import keys
from infrastructure.postgres import eventsourcing_env
from infrastructure.schema import migrate

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "console" / "dist"
CHROMIUM = os.environ.get("AIMM_CHROMIUM") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

# the API calls the registry page's list needs, made by the browser itself
API_ALONE = """async ([key, limit, draw]) => {
  const started = performance.now();
  let cursor = null, count = 0;
  const all = [];
  do {
    const url = '/api/v1/ai/models?limit=' + limit + (cursor ? '&cursor=' + cursor : '');
    const page = await (await fetch(url, {headers: {Authorization: 'Bearer ' + key}})).json();
    count += page.items.length;
    all.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  const fetched = performance.now() - started;
  if (!draw) return [fetched, count, 0];
  // the same rows drawn by plain DOM code: what any page pays to show them
  const table = document.createElement('table');
  const body = table.createTBody();
  for (const m of all) {
    const row = body.insertRow();
    const name = row.insertCell();
    const link = document.createElement('a');
    link.href = '#/registry/' + m.id;
    link.textContent = m.name;
    name.append(link);
    const hint = document.createElement('div');
    hint.textContent = m.task + ' · ' + m.tags.join(', ');
    name.append(hint);
    for (const text of [m.kind, 'v' + m.latest_version, m.active?.production, m.active?.staging]) {
      const span = document.createElement('span');
      span.textContent = text ?? '—';
      row.insertCell().append(span);
    }
  }
  document.body.replaceChildren(table);
  document.body.offsetHeight;  // layout now
  await new Promise((done) => requestAnimationFrame(() => setTimeout(done)));
  return [fetched, count, performance.now() - started];
}"""
SHOWN = """(n) => {
  const count = document.querySelector('[data-testid=model-count]');
  const rows = document.querySelectorAll('[data-testid=model-row]').length;
  return count && count.dataset.loading === 'false'
    && Number(count.textContent.replace(/\\D/g, '')) === n && rows === n;
}"""


def bundle() -> None:
    files = sorted(p for p in DIST.rglob("*") if p.is_file())
    if not files:
        raise SystemExit("console/dist is empty: run `make console` first")
    total = total_gz = 0
    print("bundle (console/dist):")
    for path in files:
        raw = path.read_bytes()
        packed = len(gzip.compress(raw, compresslevel=6))
        total, total_gz = total + len(raw), total_gz + packed
        print(
            f"  {path.relative_to(DIST)!s:48} {len(raw) / 1024:8.1f} KiB"
            f"  gzip {packed / 1024:7.1f} KiB"
        )
    print(f"  {'total':48} {total / 1024:8.1f} KiB  gzip {total_gz / 1024:7.1f} KiB")


TIMELINE = """() => {
  const calls = performance.getEntriesByType('resource')
    .filter((e) => e.name.includes('/api/v1/ai/models'));
  return [calls[0].startTime, calls[calls.length - 1].responseEnd];
}"""


@dataclass
class Visit:
    shown: float  # ms from navigation to every model shown
    first_call: float  # ms from navigation to the list's first request
    last_answer: float  # ms from navigation to the list's last answer
    asset_bytes: int  # encoded bytes of the page's own files
    api_bytes: int  # bytes of the API's answers


async def first_visit(browser: Browser, base: str, key: str, models: int) -> Visit:
    """A first visit of the registry page in a new context, until every model is shown."""
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    await context.add_init_script(f"sessionStorage.setItem('aimm.apiKey', {key!r})")
    page = await context.new_page()
    sizes: list[asyncio.Future[tuple[str, int]]] = []

    async def sized(request: Request) -> tuple[str, int]:
        return request.url, int((await request.sizes())["responseBodySize"])

    page.on("requestfinished", lambda request: sizes.append(asyncio.ensure_future(sized(request))))
    await page.goto(f"{base}/#/registry")
    await page.wait_for_function(SHOWN, arg=models, polling="raf", timeout=120_000)
    shown = float(await page.evaluate("performance.now()"))
    first_call, last_answer = await page.evaluate(TIMELINE)
    fetched = await asyncio.gather(*sizes)
    await context.close()
    api = sum(n for url, n in fetched if "/api/" in url)
    assets = sum(n for url, n in fetched if "/api/" not in url)
    return Visit(shown, float(first_call), float(last_answer), assets, api)


async def api_alone(browser: Browser, base: str, key: str, limit: int) -> tuple[float, int, float]:
    """The list's API calls from a page of the same origin without the console (ms, models
    listed), and, in a new context, the same calls with the rows drawn by plain DOM code."""
    timings: list[float] = []
    for draw in (False, True):
        context = await browser.new_context(viewport={"width": 1400, "height": 900})
        page = await context.new_page()
        await page.goto(f"{base}/health/live")
        fetched, count, drawn = await page.evaluate(API_ALONE, [key, limit, draw])
        timings.append(float(drawn) if draw else float(fetched))
        await context.close()
    return timings[0], int(count), timings[1]


async def main(url: str, models: int, runs: int, limit: int) -> None:
    await migrate(url)
    app = RegistryApplication(env=eventsourcing_env(url))
    started = time.perf_counter()
    seed(app, models, 2)
    app.close()
    print(f"seeded {models} models x 2 versions in {time.perf_counter() - started:.1f}s")
    conn = await asyncpg.connect(url)
    key, _ = await keys.create_key(conn, roles=["viewer"], name="bench")
    await conn.close()
    env = service_env(url, AIMM_CONSOLE_DIR=str(DIST))
    with aimm_services(env) as aimm:
        base = aimm.base
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {key}"}
        ) as client:
            for _ in range(600):  # until the projector has every model
                listed = await client.get(
                    "/api/v1/ai/models", params={"limit": 1, "q": f"model-{models - 1:05d}"}
                )
                if listed.status_code == 200 and listed.json()["items"]:
                    break
                await asyncio.sleep(0.2)
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            # one of each first, not counted: the server's and the browser's first use
            await api_alone(browser, base, key, limit)
            await first_visit(browser, base, key, models)
            visits: list[Visit] = []
            alone: list[float] = []
            plain: list[float] = []
            for _ in range(runs):
                elapsed, count, drawn = await api_alone(browser, base, key, limit)
                assert count == models, f"the API listed {count} models, not {models}"
                alone.append(elapsed)
                plain.append(drawn)
                visits.append(await first_visit(browser, base, key, models))
            await browser.close()
        pages = [v.shown for v in visits]
        page_ms, api_ms = statistics.median(pages), statistics.median(alone)
        last = visits[-1]
        print(
            f"registry page, first visit: the console's files {last.asset_bytes / 1024:.1f} KiB "
            f"transferred (gzip), the API's answers {last.api_bytes / 1024:.1f} KiB"
        )
        print(
            f"navigation -> {models:,} models shown: median {page_ms:.0f} ms over {runs} runs "
            f"(min {min(pages):.0f}, max {max(pages):.0f})"
        )
        print(
            "  of which (medians): page loaded and started, to the list's first request "
            f"{statistics.median(v.first_call for v in visits):.0f} ms; the list's requests "
            f"{statistics.median(v.last_answer - v.first_call for v in visits):.0f} ms; "
            f"drawing the rows {statistics.median(v.shown - v.last_answer for v in visits):.0f} ms"
        )
        print(
            f"the API calls alone (pages of {limit}): median {api_ms:.0f} ms "
            f"(min {min(alone):.0f}, max {max(alone):.0f})"
        )
        plain_ms = statistics.median(plain)
        print(
            f"the same calls with the rows drawn by plain DOM code: median {plain_ms:.0f} ms "
            f"(min {min(plain):.0f}, max {max(plain):.0f})"
        )
        print(
            f"page / API alone: {page_ms / api_ms:.2f}; page / plain DOM: {page_ms / plain_ms:.2f}"
        )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--limit", type=int, default=500, help="page size (as the console asks)")
    args = parser.parse_args()
    bundle()
    with postgres_server() as server, fresh_database(server) as url:
        asyncio.run(main(url, args.models, args.runs, args.limit))


if __name__ == "__main__":
    cli()
