"""A fixed mixed workload across every context for minutes, against a baseline.

Run: ``.venv/bin/python -m benchmarks.load`` (``--help`` for the knobs; the default is
3 minutes of load after 30 s of warm-up). PostgreSQL comes from ``AIMM_DATABASE_URL``
when set, else the embedded server is started; the benchmark works in a fresh database
that it drops at the end. ``aimm seed`` and ``aimm market-data import`` (the sample
SP500 bars) prepare it, then ``aimm projector`` and ``aimm serve`` run as processes of
their own (as ``aimm dev`` runs them) and this process is the client, over loopback.

The workload: ``--concurrency`` client tasks, each going round its own fixed, seeded
shuffle of the operations below (weights in :data:`MIX`) until the time is up —
registry create / version / deploy / list / get; market-data import of a new ticker
(30 bars) and reads; the predictions dashboard and the forecaster list; memory record
and search; the assistant's config and ``resolve``; the training jobs and datasets
lists; audit event reads. One key (an admin's) makes every call, under the default rate
limit (which it stays far below). Printed per operation kind: requests, throughput,
p50 and p99 latency and errors (any answer that is not 2xx; the goal is none); and the
resident memory (RSS, from ``/proc``) of the API and projector processes at the start
of the measured window, its largest sample (every 5 s) and at the end (goal: flat).

The baseline, in the same run: the same client at the same concurrency for
``--baseline-seconds`` just before the load and again just after it (this machine is
shared: one measurement alone may land in a busy minute) against a bare Litestar
endpoint under uvicorn serving a page of the model list from memory
(``benchmarks.registry.start_bare``): the most an HTTP round trip of this client on this
machine gives. Printed: aimm's overall throughput and p50 as ratios of the baseline's
(the mean of its two measurements).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from benchmarks.common import aimm_services, free_port, fresh_database, postgres_server, service_env
from benchmarks.registry import start_bare
from infrastructure import keys
from infrastructure.schema import migrate

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample" / "SP500.csv.gz"
ROLE = "risk-analyst"
WORDS = (
    "momentum breakout support resistance volatility earnings guidance hedge spread "
    "liquidity drawdown rally selloff yield curve inflation payrolls futures options "
    "gamma squeeze rotation sector tech energy banks dividend buyback"
).split()

# operation kind -> weight in each task's cycle
MIX: dict[str, int] = {
    "registry.create": 1,
    "registry.version": 1,
    "registry.deploy": 1,
    "registry.list": 3,
    "registry.get": 3,
    "market.import": 1,
    "market.list": 1,
    "market.bars": 2,
    "predictions.dashboard": 2,
    "predictions.forecasters": 1,
    "memory.record": 2,
    "memory.search": 2,
    "assistant.config": 1,
    "assistant.resolve": 2,
    "training.jobs": 1,
    "training.datasets": 1,
    "audit.events": 1,
}


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    samples: list[str] = field(default_factory=list)
    recording: bool = False

    def record(self, kind: str, began: float, response: httpx.Response) -> None:
        if not self.recording:
            return
        self.latencies[kind].append((time.perf_counter() - began) * 1000)
        if response.status_code >= 300:
            self.errors[kind] += 1
            if len(self.samples) < 10:
                self.samples.append(
                    f"{kind}: {response.request.method} {response.request.url.path} "
                    f"{response.status_code} {response.text[:200]}"
                )


@dataclass
class Task:
    """One client: its own models (id, latest version, deployed version) and counters."""

    number: int
    client: httpx.AsyncClient
    stats: Stats
    models: list[list[Any]] = field(default_factory=list)
    counter: int = 0

    def next_name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.number}n{self.counter}"

    async def call(self, kind: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        began = time.perf_counter()
        response = await self.client.request(method, url, **kwargs)
        self.stats.record(kind, began, response)
        return response

    async def create(self) -> None:
        response = await self.call(
            "registry.create",
            "POST",
            "/api/v1/ai/models",
            json={"name": self.next_name("load-model-t"), "kind": "ml", "task": "forecast"},
        )
        if response.status_code == 201:
            self.models.append([response.json()["id"], 0, 0])

    async def version(self) -> None:
        if not self.models:
            return await self.create()
        model = random.Random(self.counter).choice(self.models)
        response = await self.call(
            "registry.version",
            "POST",
            f"/api/v1/ai/models/{model[0]}/versions",
            json={"artifact": f"sha256:{self.next_name('a')}", "framework": "jax",
                  "metrics": {"accuracy": 0.5}},
        )  # fmt: skip
        if response.status_code == 201:
            model[1] += 1
        return None

    async def deploy(self) -> None:
        ready = [m for m in self.models if m[1] > m[2]]
        if not ready:
            return await self.version()
        model = ready[0]
        response = await self.call(
            "registry.deploy",
            "POST",
            f"/api/v1/ai/models/{model[0]}/deploy",
            json={"version": model[1], "reason": "load"},
        )
        if response.status_code < 300:
            model[2] = model[1]
        return None

    async def get_model(self) -> None:
        if not self.models:
            return await self.create()
        model = self.models[self.counter % len(self.models)]
        self.counter += 1
        await self.call("registry.get", "GET", f"/api/v1/ai/models/{model[0]}")
        return None

    async def import_bars(self) -> None:
        ticker = self.next_name("LOADT").upper()
        first = dt.date(2024, 1, 1)
        rows = [
            {"date": (first + dt.timedelta(days=i)).isoformat(), "open": 100.0 + i,
             "high": 101.0 + i, "low": 99.0 + i, "close": 100.5 + i, "volume": 1000 + i}
            for i in range(30)
        ]  # fmt: skip
        await self.call(
            "market.import", "POST", f"/api/v1/market-data/{ticker}/bars", json={"rows": rows}
        )

    async def record_memory(self) -> None:
        rng = random.Random(self.counter)
        self.counter += 1
        content = " ".join(rng.choices(WORDS, k=20))
        await self.call(
            "memory.record",
            "POST",
            "/api/v1/memory",
            json={"agent_id": f"load-agent-{self.number}", "content": content},
        )

    async def search(self) -> None:
        word = WORDS[self.counter % len(WORDS)]
        self.counter += 1
        await self.call("memory.search", "GET", "/api/v1/memory/search", params={"q": word})

    async def resolve(self) -> None:
        self.counter += 1
        await self.call(
            "assistant.resolve",
            "GET",
            "/api/v1/ai-assistant/resolve",
            params={"role": ROLE, "unit": f"unit-{self.counter % 200}"},
        )

    def operations(self) -> dict[str, Callable[[], Awaitable[Any]]]:
        def get(kind: str, url: str, **params: Any) -> Callable[[], Awaitable[Any]]:
            return lambda: self.call(kind, "GET", url, params=params or None)

        return {
            "registry.create": self.create,
            "registry.version": self.version,
            "registry.deploy": self.deploy,
            "registry.list": get("registry.list", "/api/v1/ai/models", limit=50),
            "registry.get": self.get_model,
            "market.import": self.import_bars,
            "market.list": get("market.list", "/api/v1/market-data"),
            "market.bars": get("market.bars", "/api/v1/market-data/SP500", limit=250),
            "predictions.dashboard": get("predictions.dashboard", "/api/v1/predictions/SP500"),
            "predictions.forecasters": get(
                "predictions.forecasters", "/api/v1/predictions/forecasters"
            ),
            "memory.record": self.record_memory,
            "memory.search": self.search,
            "assistant.config": get("assistant.config", "/api/v1/ai-assistant/config"),
            "assistant.resolve": self.resolve,
            "training.jobs": get("training.jobs", "/api/v1/ml/jobs"),
            "training.datasets": get("training.datasets", "/api/v1/ml/datasets"),
            "audit.events": get("audit.events", "/api/v1/audit/events", limit=20),
        }

    async def run(self, deadline: float) -> None:
        cycle = [kind for kind, weight in MIX.items() for _ in range(weight)]
        random.Random(self.number).shuffle(cycle)
        operations = self.operations()
        i = 0
        while time.monotonic() < deadline:
            await operations[cycle[i % len(cycle)]]()
            i += 1


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def quantile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100)[q - 1]


async def bare_baseline(port: int, seconds: float, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits
    ) as client:
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < deadline:
                began = time.perf_counter()
                response = await client.get("/api/v1/ai/models")
                latencies.append((time.perf_counter() - began) * 1000)
                response.raise_for_status()

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(latencies) / (time.perf_counter() - began), latencies


def aimm(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "api.cli", *args], env=env, check=True, cwd=ROOT)


async def main(url: str, seconds: float, warmup: float, concurrency: int, baseline: float) -> None:
    env = service_env(url)
    await migrate(url)
    conn = await asyncpg.connect(url)
    key, _ = await keys.create_key(conn, roles=["admin"], name="load")
    await conn.close()
    began = time.perf_counter()
    aimm("seed", env=env)
    aimm("market-data", "import", str(SAMPLE), "--ticker", "SP500", env=env)
    print(f"seeded (assistant roles, SP500 bars) in {time.perf_counter() - began:.1f}s")

    bare_port = free_port()
    with aimm_services(env) as services:
        api, projector, port = services.serve, services.background["projector"], services.port
        headers = {"Authorization": f"Bearer {key}"}
        stats = Stats()
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60, limits=limits
        ) as client:
            # the projector has the seed once the SP500 bars can be read
            for _ in range(240):
                if (await client.get("/api/v1/market-data/SP500", params={"limit": 1})).is_success:
                    break
                await asyncio.sleep(0.5)
            else:
                raise RuntimeError("the projector did not project the seed within 120 s")
            page = (await client.get("/api/v1/ai/models", params={"limit": 50})).content
            bare_proc, _ = start_bare("/api/v1/ai/models", "", page, env, bare_port)
            services.procs.append(bare_proc)
            before_rate, before_latencies = await bare_baseline(bare_port, baseline, concurrency)
            tasks = [Task(n, client, stats) for n in range(concurrency)]
            end = time.monotonic() + warmup + seconds
            runs = [asyncio.ensure_future(t.run(end)) for t in tasks]
            await asyncio.sleep(warmup)  # the same workload, not measured
            stats.recording = True
            window = time.perf_counter()
            rss: dict[str, list[float]] = {"api": [], "projector": []}
            while not all(r.done() for r in runs):
                rss["api"].append(rss_mib(api.pid))
                rss["projector"].append(rss_mib(projector.pid))
                await asyncio.wait(runs, timeout=5)
            elapsed = time.perf_counter() - window
            for run in runs:
                run.result()
            rss["api"].append(rss_mib(api.pid))
            rss["projector"].append(rss_mib(projector.pid))

            # the baseline's second half, right after the load (the first was before it)
            after_rate, after_latencies = await bare_baseline(bare_port, baseline, concurrency)
        bare = [(before_rate, before_latencies), (after_rate, after_latencies)]
    report(stats, elapsed, concurrency, rss, bare)


def report(
    stats: Stats,
    elapsed: float,
    concurrency: int,
    rss: dict[str, list[float]],
    bare: list[tuple[float, list[float]]],
) -> None:
    print(f"\n{elapsed:.0f} s of load at concurrency {concurrency}, one client process")
    print(f"{'kind':<26}{'requests':>10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    everything: list[float] = []
    errors = 0
    for kind in MIX:
        values = stats.latencies.get(kind, [])
        everything += values
        errors += stats.errors.get(kind, 0)
        print(
            f"{kind:<26}{len(values):>10,}{len(values) / elapsed:>9.1f}"
            f"{quantile(values, 50):>9.1f}{quantile(values, 99):>9.1f}"
            f"{stats.errors.get(kind, 0):>8}"
        )
    rate = len(everything) / elapsed
    print(
        f"{'all':<26}{len(everything):>10,}{rate:>9.1f}{quantile(everything, 50):>9.1f}"
        f"{quantile(everything, 99):>9.1f}{errors:>8}   (goal: 0 errors)"
    )
    for line in stats.samples:
        print("  error:", line)
    for when, (bare_rate, bare_latencies) in zip(("before", "after"), bare, strict=True):
        label = f"bare Litestar, {when}"
        print(
            f"{label:<26}{len(bare_latencies):>10,}{bare_rate:>9.1f}"
            f"{quantile(bare_latencies, 50):>9.1f}{quantile(bare_latencies, 99):>9.1f}"
        )
    bare_rate = statistics.mean(r for r, _ in bare)
    bare_p50 = quantile([v for _, values in bare for v in values], 50)
    print(
        f"aimm / bare (the mean of before and after): throughput {rate / bare_rate:.2f}, "
        f"p50 {quantile(everything, 50) / bare_p50:.1f}x the bare p50"
    )
    for name, values in rss.items():
        print(
            f"RSS {name}: start {values[0]:.0f} MiB, largest {max(values):.0f} MiB, "
            f"end {values[-1]:.0f} MiB ({values[-1] - values[0]:+.0f} MiB; goal: flat); "
            f"every 30 s: {' '.join(f'{v:.0f}' for v in values[::6])}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=180, help="measured load (s)")
    parser.add_argument(
        "--warmup", type=float, default=30, help="unmeasured load first (s): fills the caches"
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--baseline-seconds", type=float, default=15)
    options = parser.parse_args()
    with postgres_server() as server, fresh_database(server) as database_url:
        asyncio.run(
            main(
                database_url,
                options.seconds,
                options.warmup,
                options.concurrency,
                options.baseline_seconds,
            )
        )
