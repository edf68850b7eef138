"""Rebuild throughput of our projector against eventsourcing's ProjectionRunner and a raw read.

Run: ``.venv/bin/python -m benchmarks.projector_rebuild`` (``--help`` for the knobs).
PostgreSQL comes from ``AIMM_DATABASE_URL`` when set, else the embedded server is
started; either way the benchmark works in a fresh database that it drops at the end.

Three figures from one log, measured in the same run:

(a) ours: a full rebuild of every read model in the catalog (fresh tables, swap) in one
    pass over the log (``rebuild_many``), counted honestly as log events per second —
    and, for comparison, as events applied per second summed over the projections, and
    against rebuilding each projection on its own (``rebuild()``, one pass each);
(b) the library: eventsourcing's ``ProjectionRunner`` applying an equivalent projection
    (the same ``rm_models`` shape) into PostgreSQL through a ``PostgresTrackingRecorder``,
    one transaction per event as the library does, over the first ``--runner-events``;
(c) the floor: a raw asyncpg keyset read of the same rows in the same batches.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from typing import Any

import asyncpg
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection as LibraryProjection
from eventsourcing.projection import ProjectionRunner
from psycopg.sql import SQL, Identifier

from application.registry import MODEL_NAME_SCOPE, RegistryApplication
from benchmarks.common import fresh_database, postgres_server
from domain.claims import UniqueClaim
from domain.metadata import acting_as
from domain.registry.model import Model
from infrastructure.postgres import create_pool, eventsourcing_env
from infrastructure.schema import migrate
from projections.catalog import all_projections
from projections.events import SELECT_COLUMNS, events_table
from projections.rebuild import REBUILD_BATCH, rebuild, rebuild_many

CONTEXT = "registry"
GOAL_VS_RUNNER = 50.0
GOAL_VS_RAW = 0.25

# ---------------------------------------------------------------------------------------
# The log


def write_log(url: str, total: int, seed: int) -> int:
    """Append ``total`` registry events through RegistryApplication; returns the count.

    The log is written in rounds of 200 registrations (the model's event and its name
    claim's) followed by 600 detail updates of random earlier models, so that any prefix
    of the log — such as the runner's subset — has the same mix as the whole. Each round
    is a few ``save()`` calls of many aggregates: the per-command path (~300 commands/s
    here) would spend minutes writing what the benchmark only needs to read.
    """
    rng = random.Random(seed)
    app = RegistryApplication(env=eventsourcing_env(url))
    models: list[Model] = []
    written = 0
    tags = ["forecast", "risk", "nlp", "vision", "equities", "fx", "crypto", "rates"]
    try:
        with acting_as("benchmark", f"bench-{uuid.uuid4()}"):
            while written < total:
                pending: list[Any] = []
                for _ in range(min(200, (total - written) // 2)):
                    model = Model.register(
                        name=f"bench-model-{len(models):07d}",
                        kind=rng.choice(("llm", "ml")),
                        task=f"task {rng.randrange(1000)}",
                        description=f"a benchmark model, number {len(models)}",
                        owner=rng.choice(("quant", "risk", "research")),
                        tags=rng.sample(tags, rng.randrange(4)),
                    )
                    models.append(model)
                    claim = UniqueClaim.claim(MODEL_NAME_SCOPE, model.name, str(model.id))
                    pending += [model, claim]
                if pending:
                    app.save(*pending)
                    written += len(pending)
                updated: dict[uuid.UUID, Model] = {}
                for _ in range(min(600, total - written)):
                    model = rng.choice(models)
                    # A fresh description always changes something, so an event is recorded.
                    model.update_details(
                        description=f"revised {written + len(updated)} {rng.random()}",
                        tags=rng.sample(tags, rng.randrange(4)),
                    )
                    updated[model.id] = model
                    written += 1
                if updated:
                    app.save(*updated.values())
    finally:
        app.close()
    return written


# ---------------------------------------------------------------------------------------
# (a) ours


async def bench_ours(url: str, batch_size: int) -> tuple[int, list[tuple[str, int]], float]:
    """Rebuild every projection in one pass: (log events, [(name, events applied)], seconds)."""
    projections = all_projections()
    # What ``aimm projections rebuild`` uses: a connection per projection, one to read on.
    pool = await create_pool(url, max_size=len(projections) + 1)
    try:
        started = time.perf_counter()
        results = await rebuild_many(pool, projections, batch_size=batch_size)
        took = time.perf_counter() - started
        log_events = 0
        for context in {c for p in projections for c in p.contexts}:
            log_events += await pool.fetchval(f"SELECT count(*) FROM {events_table(context)}")
        return log_events, [(r.projection, r.events) for r in results], took
    finally:
        await pool.close()


async def bench_separately(url: str, batch_size: int) -> list[tuple[str, int, float]]:
    """Rebuild every projection on its own, in turn: (name, events applied, seconds) each."""
    pool = await create_pool(url, max_size=2)
    try:
        timings = []
        for projection in all_projections():
            started = time.perf_counter()
            result = await rebuild(pool, projection, batch_size=batch_size)
            timings.append((projection.name, result.events, time.perf_counter() - started))
        return timings
    finally:
        await pool.close()


# ---------------------------------------------------------------------------------------
# (b) eventsourcing's ProjectionRunner with an equivalent projection


class RunnerModelsView(PostgresTrackingRecorder):
    """``rm_models`` as a library materialised view: each change commits with its tracking."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.models_table = self.tracking_table_name.replace("_tracking", "_models")
        schema, table = Identifier(self.datastore.schema), Identifier(self.models_table)
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {0}.{1} ("
                "id uuid PRIMARY KEY, name text NOT NULL UNIQUE, kind text NOT NULL, "
                "task text NOT NULL, description text NOT NULL, owner text NOT NULL, "
                "tags text[] NOT NULL, version integer NOT NULL, position bigint NOT NULL, "
                "created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, "
                "created_by text NOT NULL)"
            ).format(schema, table)
        )
        self.sql_create_statements.append(
            SQL("CREATE INDEX IF NOT EXISTS {2} ON {0}.{1} (kind, name)").format(
                schema, table, Identifier(f"{self.models_table}_kind_name")
            )
        )
        self.sql_create_statements.append(
            SQL("CREATE INDEX IF NOT EXISTS {2} ON {0}.{1} USING gin (tags)").format(
                schema, table, Identifier(f"{self.models_table}_tags")
            )
        )
        self.insert_statement = SQL(
            "INSERT INTO {0}.{1} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(schema, table)
        self.update_statement = SQL(
            "UPDATE {0}.{1} SET task = %s, description = %s, owner = %s, tags = %s, "
            "version = %s, position = %s, updated_at = %s WHERE id = %s"
        ).format(schema, table)

    def register_model(self, row: tuple[Any, ...], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            self._insert_tracking(curs, tracking)
            curs.execute(self.insert_statement, row, prepare=True)

    def update_model(self, row: tuple[Any, ...], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            self._insert_tracking(curs, tracking)
            curs.execute(self.update_statement, row, prepare=True)


class RunnerModels(LibraryProjection[RunnerModelsView]):
    """The same handlers as ``projections.registry_models``, the library's way."""

    name = "bench_runner"

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        # Other events (name claims) move the tracking position only, like ours skip them.
        self.view.insert_tracking(tracking)

    @process_event.register(Model.Registered)
    def _registered(self, e: Model.Registered, tracking: Tracking) -> None:
        row = (
            e.originator_id, e.name, e.kind, e.task, e.description, e.owner, e.tags,
            e.originator_version, tracking.notification_id, e.timestamp, e.timestamp,
            e.meta.get("principal", "unknown"),
        )  # fmt: skip
        self.view.register_model(row, tracking)

    @process_event.register(Model.DetailsUpdated)
    def _updated(self, e: Model.DetailsUpdated, tracking: Tracking) -> None:
        row = (
            e.task, e.description, e.owner, e.tags, e.originator_version,
            tracking.notification_id, e.timestamp, e.originator_id,
        )  # fmt: skip
        self.view.update_model(row, tracking)


async def nth_position(url: str, n: int) -> int:
    conn = await asyncpg.connect(url)
    try:
        value = await conn.fetchval(
            f"SELECT notification_id FROM {events_table(CONTEXT)} "
            "ORDER BY notification_id OFFSET $1 LIMIT 1",
            n - 1,
        )
        return int(value)
    finally:
        await conn.close()


def bench_runner(url: str, events: int) -> tuple[int, float]:
    """Time the runner from its construction until it has tracked the ``events``-th event."""
    target = asyncio.run(nth_position(url, events))
    env = {**eventsourcing_env(url), "POSTGRES_POOL_SIZE": "2"}
    started = time.perf_counter()
    with ProjectionRunner(
        application_class=RegistryApplication,
        projection_class=RunnerModels,
        view_class=RunnerModelsView,
        env=env,
    ) as runner:
        runner.wait(target, timeout=3600)
        elapsed = time.perf_counter() - started
    return events, elapsed


# ---------------------------------------------------------------------------------------
# (c) raw read


async def bench_raw(url: str, batch_size: int) -> tuple[int, float]:
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        position, count = 0, 0
        while True:
            rows = await conn.fetch(
                f"SELECT {SELECT_COLUMNS} FROM {events_table(CONTEXT)} "
                "WHERE notification_id > $1 ORDER BY notification_id LIMIT $2",
                position,
                batch_size,
            )
            if not rows:
                return count, time.perf_counter() - started
            count += len(rows)
            position = rows[-1][0]
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------


def rate(events: int, seconds: float) -> float:
    return events / seconds if seconds > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events to write (100000)")
    parser.add_argument(
        "--runner-events", type=int, default=5_000, help="events the ProjectionRunner applies"
    )
    parser.add_argument(
        "--batch-size", type=int, default=REBUILD_BATCH, help="rebuild and raw-read batch size"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of (a) and (c); best kept")
    parser.add_argument("--seed", type=int, default=20261127)
    args = parser.parse_args()

    print(
        "Only the registry context has event types as of this issue, so the log is the "
        "registry's\n(model registrations with their name claims, and detail updates); "
        "the other four logs are empty."
    )
    where = "AIMM_DATABASE_URL's server" if os.environ.get("AIMM_DATABASE_URL") else "embedded"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"PostgreSQL: {where}; {os.cpu_count()} CPUs, load average {load} at start")
    with postgres_server() as server, fresh_database(server) as url:
        asyncio.run(migrate(url))
        started = time.perf_counter()
        written = write_log(url, args.events, args.seed)
        took = time.perf_counter() - started
        print(f"wrote {written:,} events in {took:.1f} s (seed {args.seed})")

        ours: list[float] = []  # log events per second
        summed: list[float] = []  # events applied per second, summed over projections
        raw: list[float] = []
        for run in range(1, args.repeat + 1):
            log_events, applied, seconds = asyncio.run(bench_ours(url, args.batch_size))
            total_applied = sum(n for _, n in applied)
            ours.append(rate(log_events, seconds))
            summed.append(rate(total_applied, seconds))
            print(f"(a) ours, one-pass rebuild of all {len(applied)} read models, run {run}: "
                  f"{log_events:,} log events in {seconds:.2f} s = {ours[-1]:,.0f} log events/s "
                  f"({total_applied:,} applied = {summed[-1]:,.0f} applied/s)")  # fmt: skip
            n, took = asyncio.run(bench_raw(url, args.batch_size))
            raw.append(rate(n, took))
            print(f"(c) raw asyncpg read, batches of {args.batch_size}, run {run}: {n:,} events "
                  f"in {took:.2f} s = {raw[-1]:,.0f} events/s")  # fmt: skip
        timings = asyncio.run(bench_separately(url, args.batch_size))
        separately = rate(sum(t[1] for t in timings), sum(t[2] for t in timings))
        print(f"(a') each projection rebuilt on its own, in turn: {separately:,.0f} events "
              "applied/s summed")  # fmt: skip
        for name, events, took in timings:
            print(f"      {name:<20} {events:>9,} events in {took:6.2f} s = "
                  f"{rate(events, took):>9,.0f} events/s")  # fmt: skip
        n, seconds = bench_runner(url, min(args.runner_events, written))
        runner = rate(n, seconds)
        print(f"(b) eventsourcing ProjectionRunner: {n:,} events in {seconds:.2f} s "
              f"= {runner:,.0f} events/s")  # fmt: skip

    best_ours, best_summed, best_raw = max(ours), max(summed), max(raw)
    print()
    print(f"ours, all read models (best of {len(ours)}): {best_ours:>10,.0f} log events/s "
          f"(median {statistics.median(ours):,.0f})")  # fmt: skip
    print(f"   events applied, summed over projections: {best_summed:>10,.0f} /s "
          f"(median {statistics.median(summed):,.0f})")  # fmt: skip
    print(f"   each projection on its own, in turn:     {separately:>10,.0f} applied/s summed")
    print(f"ProjectionRunner:  {runner:>12,.0f} events/s   ({n:,}-event subset)")
    print(f"raw read (best):   {best_raw:>12,.0f} events/s")

    def verdict(ratio: float, goal: float) -> str:
        return "met" if ratio >= goal else "MISSED"

    vs_runner, vs_raw = best_ours / runner, best_ours / best_raw
    print(f"ours / ProjectionRunner        = {vs_runner:8,.1f}x (log events; goal >= "
          f"{GOAL_VS_RUNNER:.0f}x: {verdict(vs_runner, GOAL_VS_RUNNER)})")  # fmt: skip
    print(f"ours / raw read                = {vs_raw:8.2f}  (log events; goal >= "
          f"{GOAL_VS_RAW}: {verdict(vs_raw, GOAL_VS_RAW)})")  # fmt: skip
    vs_raw_summed = best_summed / best_raw
    print(f"ours, applied summed / ProjectionRunner = {best_summed / runner:,.1f}x "
          "(the former measure)")  # fmt: skip
    print(f"ours, applied summed / raw read = {vs_raw_summed:7.2f}  (the former measure; goal >= "
          f"{GOAL_VS_RAW}: {verdict(vs_raw_summed, GOAL_VS_RAW)})")  # fmt: skip
    twin = [rate(events, took) for name, events, took in timings if name == "registry_models"]
    if twin:
        # The runner's projection is this one's twin: the like-for-like comparison.
        print(f"registry_models rebuilt alone: {twin[0] / runner:,.1f}x the ProjectionRunner, "
              f"{twin[0] / best_raw:.2f} of the raw read")  # fmt: skip


if __name__ == "__main__":
    main()
