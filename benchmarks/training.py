"""Training and market-data import throughput, each against a baseline of the same run.

Run: ``.venv/bin/python -m benchmarks.training`` (``--help`` for the knobs). PostgreSQL
comes from ``AIMM_DATABASE_URL`` when set, else the embedded server is started; the
benchmark works in a fresh database that it drops at the end.

(a) Steps per second of a training run as the worker runs it — claimed from the queue
    under a lease with its heartbeat, a ``MetricsRecorded`` event saved to PostgreSQL
    per epoch with validation metrics, the ending event and the artifact — against the
    bare JAX loop (``benchmarks.bare_jax``) on the same synthetic data, model,
    optimizer and batching. Both are compared after compilation (the worker's first
    epoch, which compiles, is left out of its steady state; the bare loop compiles
    before its clock starts); the whole run including compilation is printed too.
(b) Market-data import rows per second: ``import_bars`` (validation, content hash,
    payload, event) plus the projector writing the bars, against asyncpg ``COPY`` of the
    same rows into a plain table of the same shape.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import time
from datetime import date, timedelta
from typing import Any

import asyncpg

from application.worker import TrainingWorker, tune_process
from benchmarks.bare_jax import bare_loop, synthetic_data
from benchmarks.common import fresh_database, postgres_server
from domain.metadata import acting_as
from domain.ml.hyperparameters import Hyperparameters
from domain.ml.runs import TrainingRun
from infrastructure.jax_trainer import Trainer, TrainingData
from infrastructure.postgres import create_pool, eventsourcing_env
from infrastructure.schema import migrate
from infrastructure.wiring import build_contexts, datastore_of, jax_trainer, job_queue
from projections.catalog import by_name
from projections.projector import Projector

GOAL_TRAINING = 0.9


class _SyntheticWorker(TrainingWorker):
    """The real worker, fed the benchmark's arrays instead of a dataset artifact."""

    data: TrainingData

    def _data(self, run: TrainingRun) -> TrainingData:
        return self.data


def recorded_run(url: str, hp: Hyperparameters, data: TrainingData) -> dict[str, float]:
    contexts = build_contexts(eventsourcing_env(url))
    try:
        queue = job_queue(contexts.training, lease_seconds=15)
        with acting_as("benchmark", "training-benchmark"):
            run = TrainingRun.request(
                dataset_id="synthetic", dataset_name="synthetic", dataset_hash="sha256:none",
                feature_columns=[f"x{i}" for i in range(data.x_train.shape[1])],
                target="direction", model_type="mlp_classifier", model_name="benchmark",
                hyperparameters=hp.as_dict(), early_stopping=None, record_every_steps=None,
            )  # fmt: skip
            contexts.training.save(run)
        # queued directly: no projector runs here to fill the queue from the read model
        with datastore_of(contexts.training.recorder).transaction(commit=True) as curs:
            curs.execute(
                "INSERT INTO aimm_job_queue (run_id, enqueued_at) VALUES (%s, now())", (run.id,)
            )
        worker = _SyntheticWorker(contexts.training, queue, jax_trainer)
        worker.data = data
        started = time.perf_counter()
        assert worker.run_once()
        total = time.perf_counter() - started
        events = list(contexts.training.events.get(run.id))
        points = [e for e in events if isinstance(e, TrainingRun.MetricsRecorded)]
        ended = events[-1]
        assert isinstance(ended, TrainingRun.Completed), ended
        steps = points[-1].point["step"]
        first_epoch_steps = points[0].point["step"]
        # steady state: from the first epoch's event (compiled by then) to the last one's
        steady = (points[-1].timestamp - points[0].timestamp).total_seconds()
        return {
            "steps": steps,
            "total_seconds": total,
            "steady_steps_per_s": (steps - first_epoch_steps) / steady,
            "total_steps_per_s": steps / total,
            "events": len(events),
        }
    finally:
        contexts.close()


def trainer_alone(hp: Hyperparameters, data: TrainingData) -> float:
    """Steady-state steps/s of the Trainer with no worker around it (no events)."""
    trainer = Trainer("mlp_classifier", hp, data)
    for _ in trainer.run_epoch(1):  # compiles
        pass
    started = time.perf_counter()
    for epoch in range(2, hp.epochs + 1):
        for _ in trainer.run_epoch(epoch):
            pass
    return (hp.epochs - 1) * trainer.steps_per_epoch / (time.perf_counter() - started)


def bars(rows: int, seed: int) -> list[list[Any]]:
    rng = random.Random(seed)
    day, close, out = date(1900, 1, 1), 100.0, []
    for _ in range(rows):
        open_ = close
        close = close * math.exp(rng.gauss(0, 0.01))
        high, low = max(open_, close) * 1.002, min(open_, close) * 0.998
        out.append([day.isoformat(), open_, high, low, close, float(rng.randint(1000, 9000))])
        day += timedelta(days=1)
    return out


def import_through_aimm(url: str, rows: list[list[Any]]) -> float:
    contexts = build_contexts(eventsourcing_env(url))
    try:
        started = time.perf_counter()
        with acting_as("benchmark", "import-benchmark"):
            contexts.predictions.import_bars(
                "BENCH", rows, respond=lambda market, outcome: (201, None)
            )

        async def project() -> None:
            pool = await create_pool(url, max_size=2)
            try:
                await Projector(pool, [by_name("market_data")]).catch_up()
            finally:
                await pool.close()

        asyncio.run(project())
        return time.perf_counter() - started
    finally:
        contexts.close()


def import_by_copy(url: str, rows: list[list[Any]]) -> float:
    async def copy() -> float:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS bench_bars (ticker text, date date, open float8, "
                "high float8, low float8, close float8, volume float8, "
                "PRIMARY KEY (ticker, date))"
            )
            await conn.execute("TRUNCATE bench_bars")
            records = [("BENCH", date.fromisoformat(r[0]), *r[1:]) for r in rows]
            started = time.perf_counter()
            await conn.copy_records_to_table("bench_bars", records=records)
            return time.perf_counter() - started
        finally:
            await conn.close()

    return asyncio.run(copy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000, help="training rows (features 20)")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--import-rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs per side; medians shown")
    args = parser.parse_args()
    tune_process()  # as ``aimm worker`` does
    hp = Hyperparameters(epochs=args.epochs, batch_size=64, hidden_units=64, layers=2)
    data = synthetic_data(args.rows, 20, seed=0)
    with postgres_server() as server:
        recorded, bare, alone = [], [], []
        for _ in range(args.repeat):  # interleaved, so all sides see the same noise
            steps, seconds = bare_loop("mlp_classifier", hp, data)
            bare.append(steps / seconds)
            alone.append(trainer_alone(hp, data))
            with fresh_database(server) as url:
                asyncio.run(migrate(url))
                recorded.append(recorded_run(url, hp, data))
        ours = statistics.median(r["steady_steps_per_s"] for r in recorded)
        whole = statistics.median(r["total_steps_per_s"] for r in recorded)
        base = statistics.median(bare)
        print(f"training: {args.rows} rows x 20 features, {args.epochs} epochs, batch 64, "
              f"MLP 2x64, {int(recorded[0]['steps'])} steps, "
              f"{int(recorded[0]['events'])} events per run")  # fmt: skip
        print(f"  bare JAX loop (compiled)            {base:10,.0f} steps/s")
        print(f"  Trainer alone (eval, no events)     {statistics.median(alone):10,.0f} steps/s")
        print(f"  worker with events, steady state    {ours:10,.0f} steps/s")
        print(f"  worker with events, whole run       {whole:10,.0f} steps/s (compile included)")
        verdict = "met" if ours / base >= GOAL_TRAINING else "missed"
        print(f"  ratio (goal >= {GOAL_TRAINING}): {ours / base:.2f} {verdict}")

        rows = bars(args.import_rows, seed=1)
        ours_import, copy_import = [], []
        for _ in range(args.repeat):
            with fresh_database(server) as url:
                asyncio.run(migrate(url))
                ours_import.append(len(rows) / import_through_aimm(url, rows))
                copy_import.append(len(rows) / import_by_copy(url, rows))
        ours_rate, copy_rate = statistics.median(ours_import), statistics.median(copy_import)
        print(f"market-data import: {len(rows):,} rows in one import")
        print(f"  asyncpg COPY into a plain table     {copy_rate:10,.0f} rows/s")
        print(f"  aimm import + projection of bars    {ours_rate:10,.0f} rows/s")
        print(f"  ratio: {ours_rate / copy_rate:.2f}")


if __name__ == "__main__":
    main()
