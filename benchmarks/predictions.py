"""Predictions, each figure against a baseline measured in the same run.

Run: ``.venv/bin/python -m benchmarks.predictions`` (``--help`` for the knobs; about
half an hour with the defaults on two cores). PostgreSQL comes from
``AIMM_DATABASE_URL`` when set, else the embedded server is started; the benchmark works
in a fresh database (and a fresh data directory, so no compilation cache) that it drops.

(a) GARCH fits on rolling windows: ``benchmarks.garch`` (one vmapped JAX call against
    the ``arch`` package fitting the same windows one by one, log-likelihoods side by
    side); ``--skip-garch`` leaves it out.
(b) A backtest through the system: the sample bars imported, ``aimm projector``,
    ``aimm serve`` and ``aimm worker`` as processes (as ``aimm dev`` runs them), one
    ``POST /api/v1/predictions/backtest`` per ticker with every built-in forecaster.
    Forecasts per second of the job (the worker's time from start to end: reading the
    bars, the forecasts, every ``Prediction.Made`` event) against the forecast engine
    alone making the same forecasts in this process (no events); both start cold (no
    compilation cache). Then, once the scorer has scored every step whose target bar
    exists, the coverage of each model's bands from ``GET /api/v1/predictions/accuracy``:
    the figures the README reports.
(c) ``GET /api/v1/predictions/{ticker}`` (the dashboard: actuals, each model's
    prediction with bands and volatility, realised volatility) against a bare Litestar
    endpoint serving the same bytes from memory, one client, the same concurrency; the
    same URL again and again (answered from the read cache after the first), then every
    request with a new ``start`` (each built afresh from the read models).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from application.ports import ForecastRequest
from application.prediction_worker import price_series
from benchmarks.common import aimm_services, fresh_database, postgres_server, service_env
from benchmarks.registry import hammer, start_bare
from domain.predictions.forecasters import BUILTINS, DEFAULT_LEVELS
from infrastructure import keys
from infrastructure.postgres import eventsourcing_env
from infrastructure.schema import migrate
from infrastructure.wiring import build_contexts, forecast_engine

GOAL_DASHBOARD = 0.5


def load_samples(url: str) -> None:
    from api.cli.dev import load_sample_market_data

    load_sample_market_data(url)


def engine_alone(url: str, ticker: str, models: list[str], start: str, end: str, h: int) -> float:
    """Seconds the engine takes for the job's forecasts, in this process, no events."""
    contexts = build_contexts(eventsourcing_env(url, pool_size=1))
    try:
        market = contexts.predictions.market(ticker)
        bars = [b for b in contexts.predictions.bars_as_of(ticker, market.version) if b[0] <= end]
    finally:
        contexts.close()
    series = price_series(bars)
    origins = tuple(i for i, bar in enumerate(bars) if start <= bar[0] <= end)
    engine = forecast_engine()
    started = time.perf_counter()
    for model in models:
        engine.forecast(ForecastRequest(model, series, origins, h, DEFAULT_LEVELS))
    return time.perf_counter() - started


async def wait_job(client: httpx.AsyncClient, location: str) -> dict[str, Any]:
    while True:
        job = (await client.get(location)).json()
        if job["status"] in ("completed", "failed"):
            if job["status"] == "failed":
                raise RuntimeError(f"the backtest failed: {job['reason']}")
            return dict(job)
        await asyncio.sleep(1.0)


async def wait_scored(url: str, job_id: str, expected: int) -> None:
    conn = await asyncpg.connect(url)
    sql = "SELECT count(*) FROM rm_prediction_scores WHERE job_id = $1::uuid"
    try:
        while True:
            if await conn.fetchval(sql, job_id) >= expected:
                return
            await asyncio.sleep(1.0)
    finally:
        await conn.close()


async def scorable_steps(url: str, ticker: str, cutoffs: tuple[str, str], h: int) -> int:
    """Steps of one model's forecasts whose target bar exists (the rest wait for bars)."""
    conn = await asyncpg.connect(url)
    try:
        dates = [
            r["date"]
            for r in await conn.fetch(
                "SELECT date FROM rm_market_bars WHERE ticker = $1 ORDER BY date", ticker
            )
        ]
    finally:
        await conn.close()
    first, last = (date.fromisoformat(c) for c in cutoffs)
    indices = [i for i, d in enumerate(dates) if first <= d <= last]
    return sum(min(h, len(dates) - 1 - i) for i in indices)


def coverage_table(ticker: str, groups: list[dict[str, Any]]) -> None:
    print(f"\ncoverage of the bands, {ticker} (n origins; 50/80/95 calibrated bands):")
    print(f"  {'model':<18} {'step':>4} {'n':>5} {'50%':>7} {'80%':>7} {'95%':>7} {'MASE':>6}")
    for g in sorted(groups, key=lambda g: (g["step"], g["model"])):
        levels = g["levels"]
        cells = [f"{100 * levels[k]['coverage']:6.1f}%" for k in ("50", "80", "95")]
        mase = f"{g['mase']:.3f}" if g["mase"] is not None else "-"
        print(f"  {g['model']:<18} {g['step']:>4} {g['n']:>5} {' '.join(cells)} {mase:>6}")


async def backtests(
    client: httpx.AsyncClient,
    base: str,
    url: str,
    tickers: list[str],
    models: list[str],
    start: str,
    end: str,
    h: int,
) -> None:
    for ticker in tickers:
        body = {"ticker": ticker, "models": models, "horizon": h, "start": start, "end": end}
        response = await client.post(f"{base}/api/v1/predictions/backtest", json=body)
        response.raise_for_status()
        accepted = response.json()
        job = await wait_job(client, base + response.headers["Location"])
        made, seconds = job["made"], job["seconds"]
        alone = await asyncio.to_thread(
            engine_alone, url, ticker, models, accepted["first_cutoff"], accepted["last_cutoff"], h
        )
        print(
            f"backtest {ticker}: {made:,} forecasts ({len(models)} models x {job['cutoffs']} "
            f"cutoffs, horizon {h}) in {seconds:.1f}s = {made / seconds:,.0f} forecasts/s "
            f"through the worker with events; the engine alone {made / alone:,.0f} "
            f"forecasts/s ({alone:.1f}s); ratio {alone / seconds:.2f}"
        )
        steps = await scorable_steps(url, ticker, (job["first_cutoff"], job["last_cutoff"]), h)
        scoring = time.perf_counter()
        await wait_scored(url, job["id"], steps * len(models))
        print(
            f"  scored {steps * len(models):,} steps ({time.perf_counter() - scoring:.1f}s after)"
        )
        for step in sorted({1, h}):
            accuracy = await client.get(
                f"{base}/api/v1/predictions/accuracy",
                params={"ticker": ticker, "horizon": step},
            )
            accuracy.raise_for_status()
            coverage_table(ticker, accuracy.json()["groups"])


async def dashboard(
    client: httpx.AsyncClient, base: str, env: dict[str, str], requests: int, concurrency: int
) -> subprocess.Popen[bytes]:
    path = "/api/v1/predictions/SP500"
    page = await client.get(base + path)
    page.raise_for_status()
    bare_proc, bare_port = start_bare("/api/v1/predictions/{ticker:str}", "ticker: str",
                                      page.content, env)  # fmt: skip
    headers = dict(client.headers)
    bare = await hammer(
        client, [("GET", f"http://127.0.0.1:{bare_port}{path}", None)] * requests,
        concurrency, headers,
    )  # fmt: skip
    ours = await hammer(client, [("GET", base + path, None)] * requests, concurrency, headers)
    # every request a new `start` date: each one misses the read cache and is built afresh
    first = date.fromisoformat(page.json()["actuals"][0]["date"])
    distinct = [
        ("GET", f"{base}{path}?start={date.fromordinal(first.toordinal() - i)}", None)
        for i in range(1, requests + 1)
    ]
    cold = await hammer(client, distinct, concurrency, headers)
    print(
        f"\nGET {path} ({len(page.content):,} bytes): aimm {ours:,.0f} req/s, bare Litestar "
        f"from memory {bare:,.0f} req/s, ratio {ours / bare:.2f} (goal >= {GOAL_DASHBOARD}); "
        f"every answer built afresh (a new `start` each, no read-cache hit) {cold:,.0f} req/s, "
        f"ratio {cold / bare:.2f}"
    )
    return bare_proc


async def main(url: str, options: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="aimm-bench-data-"))
    try:
        await migrate(url)
        await asyncio.to_thread(load_samples, url)
        conn = await asyncpg.connect(url)
        key, _ = await keys.create_key(conn, roles=["operator"], name="bench")
        await conn.close()
        env = service_env(url, AIMM_DATA_DIR=str(data_dir))
        with aimm_services(env, background=("projector", "worker")) as aimm:
            async with httpx.AsyncClient(
                timeout=120, headers={"Authorization": f"Bearer {key}"}
            ) as client:
                await backtests(
                    client, aimm.base, url, options.tickers, options.models, options.start,
                    options.end, options.horizon,
                )  # fmt: skip
                aimm.procs.append(
                    await dashboard(client, aimm.base, env, options.requests, options.concurrency)
                )
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickers", nargs="+", default=["SP500", "NASDAQ"])
    parser.add_argument("--models", nargs="+", default=list(BUILTINS))
    parser.add_argument("--start", default="2001-01-02", help="first cutoff (default 2001)")
    parser.add_argument("--end", default="2018-12-31", help="last cutoff")
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--skip-garch", action="store_true", help="leave out (a)")
    options = parser.parse_args()
    if not options.skip_garch:
        subprocess.run([sys.executable, "-m", "benchmarks.garch"], check=True)
    with postgres_server() as server, fresh_database(server) as database_url:
        asyncio.run(main(database_url, options))
