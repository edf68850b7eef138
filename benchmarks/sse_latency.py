"""Latency of the training metrics stream: from a ``MetricsRecorded`` event being saved
to the SSE client receiving the point, with LISTEN against the polling baseline.

Run: ``.venv/bin/python -m benchmarks.sse_latency`` (``--help`` for the knobs).
PostgreSQL comes from ``AIMM_DATABASE_URL`` when set, else the embedded server is
started; either way the benchmark works in a fresh database that it drops at the end.

Over real HTTP: two uvicorn servers on loopback, each serving the real app
(``create_app``), and the projector as its own process (``aimm projector``), as
``aimm dev`` runs them. One server keeps the app's watcher (``ProjectionWatcher``:
LISTEN, 1 s timer as fallback); in the other it is swapped, once started, for
``ProjectionWatcher(listen=False, fallback_seconds=0.25)``, which is what the stream
did before LISTEN (poll every 0.25 s). Each server streams the points of its own
running job to one SSE client (httpx). The samples alternate between the two jobs
(interleaved, so both see the same noise): after a random pause (so the polling phase
is random), one point is recorded and saved through ``TrainingApplication``, and the
clock runs from just before the save to the moment its client parsed the point's
event. Each sample waits for its point before the next. Printed: p50 and p95 of each,
and the ratio polling / LISTEN.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import asyncpg
import httpx
import uvicorn

from api.app import create_app
from application.training import TrainingApplication
from benchmarks.common import free_port, fresh_database, postgres_server
from domain.metadata import acting_as
from domain.ml.runs import TrainingRun
from infrastructure.postgres import eventsourcing_env
from infrastructure.schema import migrate
from infrastructure.settings import Settings
from projections.events import head_position
from projections.positions import ProjectionWatcher, wait_for_position

ADMIN_KEY = "benchmark-admin-key-0123456789"
MODES = ("listen", "polling")


class Served:
    """The real app behind uvicorn, in a thread with its own event loop."""

    def __init__(self, url: str, *, polling: bool) -> None:
        settings = Settings.from_env({"AIMM_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY})
        self.app = create_app(settings, url)
        self.url, self.polling, self.port = url, polling, free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._serve(),))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self) -> None:
        await self.server.serve()

    async def _swap_watcher(self) -> None:
        state = self.app.state
        await state.watcher.stop()
        state.watcher = ProjectionWatcher(state.pool, self.url, listen=False, fallback_seconds=0.25)
        await state.watcher.start()

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        if self.polling:
            asyncio.run_coroutine_threadsafe(self._swap_watcher(), self.loop).result(timeout=30)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def running_job(training: TrainingApplication, name: str) -> TrainingRun:
    run = TrainingRun.request(
        dataset_id=str(uuid.uuid4()), dataset_name="synthetic", dataset_hash="sha256:none",
        feature_columns=["x0"], target="direction", model_type="mlp_classifier",
        model_name=name, hyperparameters={"epochs": 1_000_000}, early_stopping=None,
        record_every_steps=None,
    )  # fmt: skip
    run.start("benchmark", 1, "first attempt")
    training.save(run)
    return run


def point(epoch: int) -> dict[str, Any]:
    return {
        "epoch": epoch, "step": epoch, "end_of_epoch": True, "loss": 0.5, "accuracy": 0.5,
        "val_loss": 0.5, "val_accuracy": 0.5, "learning_rate": 0.001, "duration_ms": 1.0,
    }  # fmt: skip


class Receipts:
    """When each (job, version) point reached its client; wakes the writer."""

    def __init__(self) -> None:
        self.at: dict[tuple[str, int], float] = {}
        self.cond = threading.Condition()

    def got(self, job: str, version: int) -> None:
        with self.cond:
            self.at[(job, version)] = time.perf_counter()
            self.cond.notify_all()

    def wait(self, job: str, version: int, timeout: float) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: (job, version) in self.at, timeout=timeout):
                raise TimeoutError(f"point {version} of {job} never arrived")
            return self.at[(job, version)]


async def follow(base: str, job: str, receipts: Receipts, connected: asyncio.Event) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}", "Accept": "text/event-stream"}
    async with (
        httpx.AsyncClient(base_url=base, timeout=None) as client,
        client.stream("GET", f"/api/v1/ml/jobs/{job}/metrics", headers=headers) as response,
    ):
        assert response.status_code == 200, response.status_code
        connected.set()
        event, ident = "", ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("id:"):
                ident = line.partition(":")[2].strip()
            elif line.startswith("data:") and event == "point":
                json.loads(line.partition(":")[2])  # the client has the point
                receipts.got(job, int(ident))


def write_points(
    training: TrainingApplication,
    runs: dict[str, TrainingRun],
    samples: int,
    receipts: Receipts,
    seed: int,
) -> dict[str, list[float]]:
    rng = random.Random(seed)
    latencies: dict[str, list[float]] = {mode: [] for mode in MODES}
    for i in range(2 * samples):
        mode = MODES[i % 2]
        run = runs[mode]
        time.sleep(rng.uniform(0.05, 0.4))  # pacing: a random phase against the poll timer
        run.record(1, point(run.version))
        version = run.version
        started = time.perf_counter()
        training.save(run)
        arrived = receipts.wait(str(run.id), version, timeout=30)
        latencies[mode].append((arrived - started) * 1000)
    return latencies


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def measure(url: str, samples: int, seed: int) -> dict[str, list[float]]:
    training = await asyncio.to_thread(TrainingApplication, eventsourcing_env(url))
    try:
        with (
            Served(url, polling=False) as listening,
            Served(url, polling=True) as polling,
            acting_as("benchmark", "sse-latency"),
        ):
            runs = {mode: running_job(training, f"sse-{mode}") for mode in MODES}
            conn = await asyncpg.connect(url)
            try:  # both jobs in the read model before their streams open
                head = await head_position(conn, "training")
                assert await wait_for_position(conn, "training", head, timeout=60)
            finally:
                await conn.close()
            receipts = Receipts()
            tasks = []
            for mode, served in (("listen", listening), ("polling", polling)):
                connected = asyncio.Event()
                job = str(runs[mode].id)
                tasks.append(asyncio.create_task(follow(served.base, job, receipts, connected)))
                await asyncio.wait_for(connected.wait(), timeout=60)
            try:
                return await asyncio.to_thread(
                    write_points, training, runs, samples, receipts, seed
                )
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await asyncio.to_thread(training.close)


def projector_process(url: str) -> subprocess.Popen[bytes]:
    """``aimm projector`` on ``url``, as ``aimm dev`` runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMM_")}
    env.update({"AIMM_DATABASE_URL": url, "AIMM_LOG_LEVEL": "WARNING"})
    return subprocess.Popen([sys.executable, "-m", "api.cli", "projector"], env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=150, help="points per side")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    with postgres_server() as server, fresh_database(server) as url:
        asyncio.run(migrate(url))
        projector = projector_process(url)
        try:
            latencies = asyncio.run(measure(url, args.samples, args.seed))
        finally:
            projector.terminate()
            projector.wait(timeout=30)
    listen, poll = latencies["listen"], latencies["polling"]
    print(
        f"SSE latency, MetricsRecorded saved -> point received over HTTP "
        f"({args.samples} points per side, interleaved)"
    )
    for name, values in (("LISTEN (default)", listen), ("polling every 0.25 s", poll)):
        print(
            f"  {name:22} p50 {statistics.median(values):7.1f} ms   "
            f"p95 {percentile(values, 95):7.1f} ms"
        )
    print(
        f"  ratio polling / LISTEN: p50 {statistics.median(poll) / statistics.median(listen):.1f}x"
        f"   p95 {percentile(poll, 95) / percentile(listen, 95):.1f}x"
    )


if __name__ == "__main__":
    main()
