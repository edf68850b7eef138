"""The golden event log: events written by today's code, kept readable by every later one.

Run from the project root::

    .venv/bin/python -m scripts.golden_log fresh     # a new fixture, and its expected files
    .venv/bin/python -m scripts.golden_log extend    # append a round (for new event types)
    .venv/bin/python -m scripts.golden_log expected  # rewrite only the expected files
    .venv/bin/python -m scripts.golden_log check     # the event types the fixture lacks

PostgreSQL comes from ``AIMM_DATABASE_URL`` when set (else the embedded server is
started); the script works in a fresh database it drops at the end. The procedure —
when to run which command, and when never to — is ``docs/events.md`` ("Changing an
event: upcasters and the golden log").

What it writes under ``tests/golden/``:

- ``log.jsonl``: the fixture. One line per stored row, exactly as stored, of every
  context's events table and snapshots table, and of the two stores the read models read
  beside the log (``market_data_payloads``: the bars of each import; ``memory_keys``: the
  key of each memory's sealed text). Byte columns are kept as text when they are UTF-8
  (the events' JSON), else as base64.
- ``expected_aggregates.json``: every aggregate of the fixture, replayed from its events,
  as a canonical dump of its state.
- ``expected_read_models.json``: every ``rm_*`` table after a rebuild from zero, rows sorted.

The scenario (``run_scenario``) drives the context applications through their public
commands, as the API does. What the workers do (a training run's points and ending, a
prediction job's forecasts, a prompt test job's cases, the scorer's scores) is done with
the same domain commands the workers call, with scripted numbers instead of JAX and an
LLM: the fixture is about the events' shapes, not about training. The LLM is a scripted
provider (``GoldenLLM``) that answers deterministically.

Every event type is listed by introspection (``event_types``: every event class declared
on an aggregate under ``domain/``); the scenario fails when the log it wrote lacks one, so
a new event type cannot be added without the fixture growing (``extend``).

Ids: aggregates whose ids the code derives (claims, idempotency records, market data,
exposures, slots, suites, verdicts) are deterministic; the others are random (the code
does not take ids from outside). Timestamps are those of the day the fixture was
written; the expected files are derived from the fixture, so both are stable.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import datetime as dt
import decimal
import enum
import importlib
import inspect
import json
import math
import pkgutil
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from eventsourcing.persistence import IntegrityError

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "tests" / "golden"
FIXTURE = GOLDEN_DIR / "log.jsonl"
EXPECTED_AGGREGATES = GOLDEN_DIR / "expected_aggregates.json"
EXPECTED_READ_MODELS = GOLDEN_DIR / "expected_read_models.json"

# The stores beside the log that the read models read (see the module docstring).
SIDE_TABLES: tuple[str, ...] = ("market_data_payloads", "memory_keys")


# ---------------------------------------------------------------------------------------
# Event types, by introspection


def aggregate_classes() -> list[type]:
    """Every aggregate class defined under ``domain/`` (imports every module there)."""
    import domain
    from domain.base import Aggregate

    for info in pkgutil.walk_packages(domain.__path__, "domain."):
        importlib.import_module(info.name)

    def walk(cls: type) -> Iterator[type]:
        for sub in cls.__subclasses__():
            yield sub
            yield from walk(sub)

    found = {c for c in walk(Aggregate) if c.__module__.startswith("domain.")}
    return sorted(found, key=lambda c: (c.__module__, c.__qualname__))


def event_types() -> list[str]:
    """The topic of every concrete event type of every aggregate under ``domain/``.

    An aggregate's event types are the event classes declared on it, less its ``Event``
    base, the created-event classes the library defines but the aggregate does not use
    (an aggregate created by ``Started`` still has a ``Created``), and classes that are
    only the base of others declared beside them (``TrainingRun.Ended`` is the shape of
    ``Completed``, ``EarlyStopped`` and ``Stopped``)."""
    from eventsourcing.domain import CanInitAggregate, CanMutateAggregate, _created_event_classes
    from eventsourcing.utils import get_topic

    topics: list[str] = []
    for aggregate in aggregate_classes():
        base: type = aggregate.Event  # type: ignore[attr-defined]
        created = set(_created_event_classes.get(aggregate, []))
        declared = [
            value
            for value in vars(aggregate).values()
            if inspect.isclass(value)
            and issubclass(value, CanMutateAggregate)
            and issubclass(value, base)
            and value is not base
            and (not issubclass(value, CanInitAggregate) or value in created)
        ]
        for cls in declared:
            if any(other is not cls and issubclass(other, cls) for other in declared):
                continue
            topics.append(get_topic(cls))
    return sorted(topics)


# ---------------------------------------------------------------------------------------
# Canonical dumps


def canonical(value: Any) -> Any:  # noqa: PLR0911, PLR0912 - one branch per kind of value
    """A JSON-able, order-independent form of a value (aggregate state, a row's column)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return {"float": repr(value)}
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return {"seconds": value.total_seconds()}
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, enum.Enum):
        return canonical(value.value)
    if isinstance(value, Mapping):
        return {_key(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: _key(kv[0]))}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((canonical(v) for v in value), key=_sort_key)
    if isinstance(value, msgspec.Struct):
        return canonical(msgspec.to_builtins(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {"__type__": type(value).__qualname__, **canonical(fields)}
    if isinstance(value, asyncpg.Record):
        return canonical(dict(value))
    if hasattr(value, "__dict__"):
        return {"__type__": type(value).__qualname__, **canonical(vars(value))}
    return {"__repr__": repr(value)}


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, tuple):
        return "|".join(str(canonical(k)) for k in key)
    return str(canonical(key))


def _sort_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def aggregate_state(aggregate: Any) -> Any:
    """The canonical state of an aggregate (its attributes, without pending events)."""
    state = {k: v for k, v in vars(aggregate).items() if k != "_pending_events"}
    return {"__type__": f"{type(aggregate).__module__}:{type(aggregate).__qualname__}"} | (
        canonical(state)
    )


# ---------------------------------------------------------------------------------------
# The fixture: rows as stored


async def _columns(conn: asyncpg.Connection, table: str) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
        table,
    )
    return {r["column_name"]: r["data_type"] for r in rows}


def fixture_tables() -> list[str]:
    """The tables the fixture holds, in the order they are loaded."""
    from application.contexts import CONTEXTS

    return [
        *(f"{c}_events" for c in CONTEXTS),
        *(f"{c}_snapshots" for c in CONTEXTS),
        *SIDE_TABLES,
    ]


def _encode(value: Any, data_type: str) -> Any:
    if value is None:
        return None
    if data_type == "bytea":
        try:
            return {"utf8": bytes(value).decode("utf-8")}
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if data_type.startswith("timestamp"):
        return value.isoformat()
    if data_type == "uuid":
        return str(value)
    return value


def _decode(value: Any, data_type: str) -> Any:
    if value is None:
        return None
    if data_type == "bytea":
        if "utf8" in value:
            return value["utf8"].encode("utf-8")
        return base64.b64decode(value["b64"])
    if data_type.startswith("timestamp"):
        return dt.datetime.fromisoformat(value)
    if data_type == "uuid":
        return uuid.UUID(value)
    return value


def _order(columns: Mapping[str, str]) -> str:
    if "notification_id" in columns:
        return "notification_id"
    return ", ".join(c for c in columns if columns[c] != "bytea")


async def dump_fixture(url: str) -> list[dict[str, Any]]:
    """Every row of the fixture's tables in a database, as fixture lines."""
    conn = await asyncpg.connect(url)
    try:
        lines: list[dict[str, Any]] = []
        for table in fixture_tables():
            columns = await _columns(conn, table)
            if not columns:
                continue
            for row in await conn.fetch(f"SELECT * FROM {table} ORDER BY {_order(columns)}"):
                lines.append(
                    {"table": table, "row": {c: _encode(row[c], t) for c, t in columns.items()}}
                )
        return lines
    finally:
        await conn.close()


def read_fixture(path: Path = FIXTURE) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_fixture(lines: Sequence[Mapping[str, Any]], path: Path = FIXTURE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")


async def load_fixture(url: str, lines: Sequence[Mapping[str, Any]]) -> None:
    """INSERT the fixture's rows as they are, into a migrated database; then move each
    events table's notification id sequence past the highest id loaded."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            by_table: dict[str, list[Mapping[str, Any]]] = {}
            for line in lines:
                by_table.setdefault(line["table"], []).append(line["row"])
            for table, rows in by_table.items():
                columns = await _columns(conn, table)
                if not columns:
                    raise RuntimeError(f"the fixture has rows of {table}, which does not exist")
                names = list(rows[0])
                missing = [n for n in names if n not in columns]
                if missing:
                    raise RuntimeError(f"{table} has no columns {missing} (the fixture has)")
                records = [tuple(_decode(r.get(n), columns[n]) for n in names) for r in rows]
                await conn.copy_records_to_table(table, records=records, columns=names)
                if "notification_id" in columns:
                    await conn.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'notification_id'), "
                        f"(SELECT max(notification_id) FROM {table}))"
                    )
    finally:
        await conn.close()


def fixture_topics(lines: Sequence[Mapping[str, Any]]) -> set[str]:
    return {line["row"]["topic"] for line in lines if line["table"].endswith("_events")}


# ---------------------------------------------------------------------------------------
# Replays and read models (what the expected files hold, and what the test compares)


def replay_all(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Every aggregate of every context, replayed from its events alone (no snapshot)."""
    from infrastructure.wiring import build_contexts

    contexts = build_contexts(env)
    try:
        out: dict[str, dict[str, Any]] = {}
        for app in contexts:
            ids = originator_ids(app)
            states: dict[str, Any] = {}
            for originator_id in ids:
                aggregate: Any = None
                for event in app.events.get(originator_id):
                    aggregate = event.mutate(aggregate)
                states[str(originator_id)] = aggregate_state(aggregate)
            out[app.name] = states
        return out
    finally:
        contexts.close()


def originator_ids(app: Any) -> list[uuid.UUID]:
    """The ids of every aggregate in an application's events table, in log order."""
    from infrastructure.wiring import datastore_of

    datastore = datastore_of(app.recorder)
    with datastore.transaction(commit=False) as curs:
        curs.execute(
            f"SELECT originator_id FROM {app.name}_events "
            "GROUP BY originator_id ORDER BY min(notification_id)"
        )
        return [row["originator_id"] for row in curs.fetchall()]


def shape_problem(event: Any) -> str | None:
    """What is wrong with a decoded (and upcast) event's shape: the fields its state has
    that its class does not declare, and those its class declares that the state lacks.
    A field added, removed or renamed without an upcaster shows here."""
    declared = {f.name for f in dataclasses.fields(event)}
    stored = set(vars(event))
    if declared == stored:
        return None
    name = f"{type(event).__qualname__} v{getattr(type(event), 'class_version', 1)}"
    extra, lacking = sorted(stored - declared), sorted(declared - stored)
    return (
        f"{name} (originator {event.originator_id} version {event.originator_version}): "
        f"stored fields not in the class: {extra or 'none'}; class fields not in the stored "
        f"event: {lacking or 'none'}"
    )


def decoded_events(lines: Sequence[Mapping[str, Any]]) -> Iterator[tuple[str, Any]]:
    """Every event of the fixture, decoded and upcast by its context's mapper."""
    from eventsourcing.persistence import StoredEvent

    from application.contexts import APPLICATION_CLASSES

    mappers = {
        cls.name: cls(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper
        for cls in APPLICATION_CLASSES
    }
    for line in lines:
        table, row = line["table"], line["row"]
        if not table.endswith("_events"):
            continue
        context = table.removesuffix("_events")
        stored = StoredEvent(
            originator_id=uuid.UUID(row["originator_id"]),
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=_decode(row["state"], "bytea"),
        )
        yield context, mappers[context].to_domain_event(stored)


async def rebuild_and_dump(url: str) -> dict[str, list[Any]]:
    """Rebuild every read model from zero; every ``rm_*`` table's rows, sorted."""
    from infrastructure.postgres import create_pool
    from projections.catalog import all_projections
    from projections.rebuild import rebuild_many

    pool = await create_pool(url, min_size=1, max_size=4)
    try:
        await rebuild_many(pool, all_projections())
        async with pool.acquire() as conn:
            tables = [
                r["tablename"]
                for r in await conn.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename LIKE 'rm\\_%' AND tablename NOT LIKE '%\\_\\_%' "
                    "ORDER BY tablename"
                )
            ]
            out: dict[str, list[Any]] = {}
            for table in tables:
                rows = [canonical(dict(r)) for r in await conn.fetch(f"SELECT * FROM {table}")]
                out[table] = sorted(rows, key=_sort_key)
            return out
    finally:
        await pool.close()


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------
# The scenario


@dataclasses.dataclass
class GoldenLLM:
    """A scripted LLM provider: a deterministic answer naming what it was asked."""

    name: str = "embedded"

    def complete(self, request: Any) -> Any:
        from application.ports import Completion

        text = f'{{"answer": "golden reply to {request.user[:40]}"}}'
        return Completion(
            text=text,
            tokens_in=len(request.system.split()) + len(request.user.split()),
            tokens_out=len(text.split()),
            latency_ms=12.5,
            finish_reason="stop",
            model=request.model,
        )

    def context_length(self, model: str) -> int:
        return 8192


def _respond(*_: Any) -> tuple[int, Any]:
    return 200, None


def _bars(start: dt.date, count: int, drift: float) -> list[dict[str, Any]]:
    """``count`` business-day bars from ``start``, from a fixed formula (no randomness)."""
    rows: list[dict[str, Any]] = []
    day, price = start, 100.0
    while len(rows) < count:
        if day.weekday() < 5:
            n = len(rows)
            price *= math.exp(drift + 0.01 * math.sin(n * 0.7) + 0.004 * math.cos(n * 1.3))
            rows.append(
                {
                    "date": day.isoformat(),
                    "open": round(price * 0.998, 4),
                    "high": round(price * 1.01, 4),
                    "low": round(price * 0.99, 4),
                    "close": round(price, 4),
                    "volume": 1_000_000 + 1000 * (n % 17),
                }
            )
        day += dt.timedelta(days=1)
    return rows


def run_scenario(contexts: Any, tag: str) -> None:  # noqa: PLR0915 - one scenario, in order
    """At least one event of every event type of every context, through today's code.

    ``tag`` makes the names of this round unique (``extend`` runs it again on a log that
    already holds an earlier round)."""
    from application.base import Idempotency
    from application.run_tracker import RunTracker
    from domain.assistant.config import RolePatch
    from domain.assistant.experiments import Variant
    from domain.assistant.prompts import PromptContent
    from domain.memory.memory import parse_memory
    from domain.metadata import acting_as
    from domain.ml.hyperparameters import EarlyStopping
    from domain.predictions.forecasters import level_key
    from domain.predictions.prediction import Prediction
    from domain.predictions.scoring import score_steps, volatility_proxies

    registry, training, predictions = contexts.registry, contexts.training, contexts.predictions
    memory, assistant = contexts.memory, contexts.assistant
    principal = "golden:admin"

    def idem(key: str) -> Idempotency:
        return Idempotency(principal, f"{tag}-{key}", f"fingerprint-{key}")

    def created_id(result: Any) -> uuid.UUID:
        return uuid.UUID(str(result.value.body))

    with acting_as(principal, f"golden-{tag}-registry"):
        # -- registry: every Model event, a name claim, an idempotency record -----------
        model_id = created_id(
            registry.register_model(
                name=f"golden-forecaster-{tag}",
                kind="ml",
                task="price forecast",
                description="the golden log's model",
                owner="golden",
                tags=["daily", "golden"],
                idem=idem("register-model"),
                respond=lambda m: (201, str(m.id)),
            )
        )
        registry.update_model(
            model_id,
            expected_version=1,
            description="the golden log's model, described again",
            tags=["daily"],
            respond=_respond,
        )
        for n in (1, 2):
            registry.register_version(
                model_id,
                artifact=f"sha256:{n:064x}",
                framework="jax",
                parameters={"hidden_units": 8 * n},
                metrics={"val_loss": 0.5 / n},
                lineage={"dataset_hash": f"sha256:{n + 10:064x}"},
                description=f"version {n}",
                respond=_respond,
            )
        registry.record_metrics(model_id, 1, {"mae": 0.12}, "backtest", respond=_respond)
        registry.deploy(model_id, 1, "production", "first release", respond=_respond)
        registry.deploy(model_id, 2, "production", "second release", respond=_respond)
        registry.rollback(model_id, "production", None, "second was worse", respond=_respond)
        registry.set_status(model_id, 2, "staging", "a candidate again", respond=_respond)
        registry.set_status(model_id, 2, "archived", "superseded", respond=_respond)
        # an LLM in the registry that the assistant's roles can run (context length stated)
        llm_id = created_id(
            registry.register_model(
                name=f"golden-chat-{tag}",
                kind="llm",
                task="chat",
                description="a chat model for the assistant",
                owner="golden",
                tags=[],
                respond=lambda m: (201, str(m.id)),
            )
        )
        registry.register_version(
            llm_id,
            artifact="hf://golden-chat",
            framework="llama.cpp",
            parameters={"context_length": 4096, "serving": "embedded:golden-chat"},
            metrics={},
            lineage={},
            description="served by the embedded provider",
            respond=_respond,
        )
        registry.deploy(llm_id, 1, "production", "serve it", respond=_respond)

    with acting_as(principal, f"golden-{tag}-market"):
        # -- predictions: market data imported, then corrected ---------------------------
        ticker = "GOLD" + "".join(ch for ch in tag.upper() if ch.isalnum())[:6]
        rows = _bars(dt.date(2020, 1, 1), 320, 0.0005)
        predictions.import_bars(ticker, rows[:300], idem=idem("import"), respond=_respond)
        corrected = [dict(r) for r in rows[290:]]
        corrected[0]["close"] = round(corrected[0]["close"] * 1.01, 4)
        corrected[0]["high"] = round(max(corrected[0]["high"], corrected[0]["close"]), 4)
        predictions.import_bars(ticker, corrected, replace=True, respond=_respond)

    with acting_as(principal, f"golden-{tag}-training"):
        # -- training: a dataset, and runs ending every way a run ends --------------------
        dataset_id = created_id(
            training.register_dataset(
                f"golden-dataset-{tag}",
                {
                    "tickers": [ticker],
                    "start": "2020-01-01",
                    "end": "2021-03-31",
                    "target": "log_return",
                },
                predictions,
                respond=lambda d: (201, str(d.id)),
            )
        )

        def request_run(name: str, stopping: dict[str, Any] | None) -> Any:
            run_id = created_id(
                training.request_run(
                    dataset_id=dataset_id,
                    model_type="mlp_regressor",
                    hyperparameters={"epochs": 4, "hidden_units": 8},
                    early_stopping=stopping,
                    record_every_steps=None,
                    model_name=f"{name}-{tag}",
                    respond=lambda r: (202, str(r.id)),
                )
            )
            return training.get_run(run_id)

        class ScriptedTrainer:
            def params_snapshot(self) -> Any:
                return None

            def restore(self, _: Any) -> None:
                return None

        def train(run: Any, losses: Sequence[float], rule: EarlyStopping | None) -> RunTracker:
            from application.ports import MetricPoint

            run.start("golden-worker", 1, "first attempt")
            tracker = RunTracker(ScriptedTrainer(), rule)  # type: ignore[arg-type]
            for epoch, loss in enumerate(losses, start=1):
                point = MetricPoint(
                    epoch=epoch,
                    step=epoch * 10,
                    end_of_epoch=True,
                    loss=loss,
                    accuracy=0.5,
                    val_loss=loss * 1.1,
                    val_accuracy=0.5,
                    learning_rate=1e-3,
                    duration_ms=25.0,
                )
                run.record(1, tracker.point(point))
                if tracker.stop:
                    break
            return tracker

        done = request_run("golden-completed", None)
        tracker = train(done, (0.9, 0.7, 0.6, 0.55), None)
        done.end(
            "completed", 1, reason="trained all 4 epochs", **tracker.summary("sha256:" + "a" * 64)
        )
        training.save(done)

        rule = EarlyStopping(patience=1)
        early = request_run("golden-early", {"patience": 1})
        tracker = train(early, (0.9, 0.8, 0.85, 0.86), rule)
        assert tracker.monitor is not None and tracker.stop
        decision = tracker.monitor.decision()
        early.end(
            "early_stopped",
            1,
            decision=decision,
            reason=decision["explanation"],
            **tracker.summary("sha256:" + "b" * 64),
        )
        training.save(early)

        stopped = request_run("golden-stopped", None)
        tracker = train(stopped, (0.9, 0.8), None)
        training.save(stopped)
        training.stop_run(stopped.id, "enough", respond=_respond)
        stopped = training.get_run(stopped.id)
        stopped.end("stopped", 1, reason=stopped.stop_reason, **tracker.summary(None))
        training.save(stopped)

        queued_stop = request_run("golden-queued-stop", None)
        training.stop_run(queued_stop.id, "not needed", respond=_respond)

        failed = request_run("golden-failed", None)
        failed.start("golden-worker", 1, "first attempt")
        failed.fail("training diverged at epoch 1", 1)
        training.save(failed)

    with acting_as(principal, f"golden-{tag}-predictions"):
        # -- predictions: a job forecast, scored, completed; a failed job -----------------
        job_id = created_id(
            predictions.request_run(
                ticker=ticker,
                model="random_walk",
                horizon=3,
                levels=[80.0],
                as_of=dt.date(2021, 1, 29),
                registry=registry,
                training=training,
                respond=lambda j: (202, str(j.id)),
            )
        )
        job = predictions.get_job(job_id)
        job.start("golden-worker", 1, "first attempt")
        cutoff = job.cutoffs[0]
        bars = predictions.bars_as_of(ticker, job.market_data_version)
        last_close = next(b[4] for b in bars if b[0] == cutoff)
        from domain.predictions.prediction import expected_dates

        steps = [
            {
                "step": k,
                "date": day,
                "loc": 0.0,
                "scale": 0.01 * math.sqrt(k),
                "df": None,
                "median": last_close,
                "volatility": 0.16,
                "bands": {
                    level_key(80.0): [last_close * (1 - 0.013 * k), last_close * (1 + 0.013 * k)]
                },
            }
            for k, day in enumerate(expected_dates(cutoff, job.horizon), start=1)
        ]
        prediction = Prediction.make(
            job.id,
            "random_walk",
            cutoff,
            forecaster="random_walk",
            model_id=None,
            model_version=None,
            ticker=ticker,
            market_data_version=job.market_data_version,
            last_close=last_close,
            horizon=job.horizon,
            levels=list(job.levels),
            steps=steps,
            params={"sigma": 0.01},
            method={"distribution": "normal", "bands": "analytic"},
        )
        job.record_made(1, "random_walk", [(cutoff, str(prediction.id))])
        predictions.save(job, prediction)
        job.complete(1, 0.25)
        predictions.save(job)
        market = predictions.market(ticker)
        current = predictions.bars_as_of(ticker, market.version)
        scores = score_steps(
            cutoff=prediction.cutoff,
            last_close=prediction.last_close,
            steps=prediction.steps,
            unscored=prediction.unscored_steps,
            bars=current,
            index={b[0]: i for i, b in enumerate(current)},
            proxies=volatility_proxies(current),
        )
        assert scores, "the golden prediction's steps should be scorable"
        prediction.score(scores, market.version)
        predictions.save(prediction)
        failing = predictions.get_job(
            created_id(
                predictions.request_run(
                    ticker=ticker,
                    model="random_walk",
                    horizon=2,
                    levels=None,
                    as_of=None,
                    registry=registry,
                    training=training,
                    respond=lambda j: (202, str(j.id)),
                )
            )
        )
        failing.start("golden-worker", 1, "first attempt")
        failing.fail("the bars could not be used", 1)
        predictions.save(failing)

    with acting_as(f"agent:golden-{tag}", f"golden-{tag}-memory"):
        # -- memory: recorded (one superseding another), reinforced, invalidated, restored,
        # erased ---------------------------------------------------------------------------
        agent = f"golden-agent-{tag}"

        def remember(content: str, **extra: Any) -> list[uuid.UUID]:
            draft = parse_memory({"agent_id": agent, "content": content, **extra})
            result = memory.record([draft], respond=lambda ms: (201, [str(m.id) for m in ms]))
            return [uuid.UUID(i) for i in result.value.body]

        [first] = remember(
            "AAPL earnings beat estimates",
            kind="fact",
            importance=0.8,
            entities=[{"name": "Apple", "type": "company"}],
            relations=[{"subject": "Apple", "predicate": "reported", "object": "earnings"}],
            tags=["earnings"],
            source="golden",
        )
        [second] = remember("AAPL guidance raised", supersedes=str(first))
        memory.change(
            first, lambda m: m.restore("the newer memory was wrong"), lambda m: (200, None)
        )
        memory.access([second], at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))
        memory.change(second, lambda m: m.feedback(0.5), lambda m: (200, None))
        memory.forget([second], "the agent forgot it", lambda ms: (200, None))
        [third] = remember("A secret to erase")
        memory.erase(third, "erasure request", lambda m: (200, None))

    with acting_as(principal, f"golden-{tag}-assistant"):
        # -- assistant: roles, prompts, labels, tests, suites, jobs, experiments ---------
        role = f"golden-{tag}".lower()[:60]
        llm = f"registry:golden-chat-{tag}@production"
        assistant.add_role(
            key=role,
            name="Golden role",
            description="the golden log's role",
            model=llm,
            settings={"temperature": 0.2, "max_tokens": 256},
            reason="golden: a role",
            registry=registry,
            respond=_respond,
        )
        assistant.update_config(
            [RolePatch(role, settings={"temperature": 0.3})],
            reason="golden: warmer",
            registry=registry,
            respond=_respond,
        )
        prompt_id = created_id(
            assistant.create_prompt(
                role=role,
                name="system",
                description="the golden prompt",
                respond=lambda p: (201, str(p.id)),
            )
        )
        for n in (1, 2):
            assistant.commit_version(
                prompt_id,
                PromptContent(
                    f"You are golden helper number {n}.",
                    "{{question}}",
                    ("question",),
                    {"temperature": 0.1} if n == 2 else {},
                ),
                model=None,
                message=f"version {n}",
                registry=registry,
                respond=_respond,
            )
        assistant.move_label(prompt_id, "production", 1, "golden: release", respond=_respond)
        assistant.move_label(prompt_id, "staging", 2, "golden: try", respond=_respond)
        assistant.remove_label(prompt_id, "staging", "golden: done trying", respond=_respond)
        assistant.update_config(
            [RolePatch(role, prompt_id=str(prompt_id))],
            reason="golden: run the prompt",
            registry=registry,
            respond=_respond,
        )
        assistant.run_prompt_test(
            prompt_id,
            versions=[1],
            draft=None,
            inputs=[("one", {"question": "what is gold?"})],
            assertions=[{"kind": "contains", "value": "golden"}],
            settings={},
            reason="golden: a test",
            registry=registry,
            respond=_respond,
        )
        assistant.save_suite(
            prompt_id,
            inputs=[{"name": "one", "values": {"question": "what is gold?"}}],
            assertions=[{"kind": "json_valid"}],
            settings={},
            reason="golden: a suite",
            respond=_respond,
        )
        assistant.run_suite(
            prompt_id,
            versions=[1],
            reason="golden: run the suite",
            registry=registry,
            respond=_respond,
            respond_job=_respond,
        )

        def suite_job(versions: list[int], reason: str) -> uuid.UUID:
            """The suite run against ``versions`` as a job (queued): its id."""
            queued = assistant.run_suite(
                prompt_id,
                versions=versions,
                reason=reason,
                registry=registry,
                as_job=True,
                respond=_respond,
                respond_job=lambda j: (202, str(j.id)),
            )
            return uuid.UUID(str(queued.value.body))

        _run_test_job(assistant, suite_job([2], "golden: run the suite as a job"))
        job = assistant.get_test_job(suite_job([1], "golden: a job that fails"))
        job.start("golden-worker", 1, "first attempt")
        job.fail("the model's provider failed: golden outage", 1)
        assistant.save(job)
        stopped = suite_job([1], "golden: a job that is stopped")
        assistant.stop_test_job(prompt_id, stopped, "golden: not needed", respond=_respond)
        experiment_id = created_id(
            assistant.start_experiment(
                role=role,
                variants=[Variant(str(prompt_id), 1), Variant(str(prompt_id), 2)],
                unit="user",
                metric="rate",
                min_sample=1,
                salt="golden",
                reason="golden: which version",
                registry=registry,
                respond=lambda e: (201, str(e.id)),
            )
        )
        experiment = assistant.get_experiment(experiment_id)
        for unit in ("user-1", "user-2", "user-3"):
            assistant.expose(str(experiment_id), experiment.definition, unit)
            assistant.record_outcome(experiment_id, unit, 1.0, respond=_respond)
        assistant.conclude_experiment(
            experiment_id, 1, "version 2 converts better", registry=registry, respond=_respond
        )


async def api_keys_round(url: str, tag: str) -> None:
    """An API key created and revoked (``domain.keys``; its events are in the registry log)."""
    from domain.metadata import acting_as
    from infrastructure import keys

    conn = await asyncpg.connect(url)
    try:
        with acting_as("golden:admin", f"golden-{tag}-keys"):
            _, info = await keys.create_key(
                conn,
                roles=["viewer"],
                name=f"golden-{tag}",
                key=f"aimm_golden_{tag}_0123456789abcdef",
                note="the golden log's key",
            )
            await keys.revoke_key(conn, info.key_id, reason="golden: revoked")
    finally:
        await conn.close()


def _run_test_job(assistant: Any, job_id: uuid.UUID) -> None:
    """What the prompt test worker does with a job (``application.prompt_test_worker``)."""
    from application.prompt_test_worker import PromptTestJobs

    runner = PromptTestJobs(assistant, queue=None, name="golden-worker")  # type: ignore[arg-type]
    job = assistant.get_test_job(job_id)
    job.start("golden-worker", 1, "first attempt")
    assistant.save(job)
    for subject, given in job.todo():
        job.progress(1, [assistant.run_test_case(job, subject, given)])
        assistant.save(job)
    runner.finish(job, 1, 0.5)


# ---------------------------------------------------------------------------------------
# Commands


def _contexts(url: str) -> Any:
    from application.contexts import Contexts
    from infrastructure.postgres import eventsourcing_env
    from infrastructure.wiring import postgres_ports

    golden = GoldenLLM()
    return Contexts(eventsourcing_env(url), postgres_ports(lambda: {golden.name: golden}))


def take_snapshots(url: str) -> int:
    """A snapshot of every aggregate of a type its application snapshots (today's shape
    of the aggregates' state, for the test to read back)."""
    contexts = _contexts(url)
    taken = 0
    try:
        for app in contexts:
            kinds = tuple(app.snapshotting_intervals or {})
            if not kinds:
                continue
            for originator_id in originator_ids(app):
                if isinstance(app.repository.get(originator_id), kinds):
                    try:
                        app.take_snapshot(originator_id)
                    except IntegrityError:
                        # extending: an earlier round's aggregate with no event since its
                        # snapshot, which is the past and stays as it was stored
                        continue
                    taken += 1
    finally:
        contexts.close()
    return taken


def missing_types(lines: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted(set(event_types()) - fixture_topics(lines))


async def write_expected(url: str) -> None:
    """The expected files, from the fixture loaded into ``url`` (a migrated database)."""
    from infrastructure.postgres import eventsourcing_env

    aggregates = await asyncio.to_thread(replay_all, eventsourcing_env(url))
    write_json(EXPECTED_AGGREGATES, aggregates)
    write_json(EXPECTED_READ_MODELS, await rebuild_and_dump(url))


async def _fresh(url: str, *, extend: bool) -> None:
    from infrastructure.schema import migrate

    await migrate(url)
    tag = "r1"
    if extend:
        lines = read_fixture()
        await load_fixture(url, lines)
        rounds = {
            json.loads(line["row"]["state"]["utf8"]).get("name", "")
            for line in lines
            # rows of the stores beside the log (payloads, memory keys) have no topic
            if line["row"].get("topic") == "domain.registry.model:Model.Registered"
        }
        tag = f"r{sum(1 for r in rounds if r.startswith('golden-forecaster-')) + 1}"
    contexts = _contexts(url)
    try:
        await asyncio.to_thread(run_scenario, contexts, tag)
    finally:
        contexts.close()
    await api_keys_round(url, tag)
    await asyncio.to_thread(take_snapshots, url)
    lines = await dump_fixture(url)
    missing = missing_types(lines)
    if missing:
        raise SystemExit(
            "the scenario wrote no event of these types; add them to run_scenario in "
            "scripts/golden_log.py:\n  " + "\n  ".join(missing)
        )
    write_fixture(lines)
    await write_expected(url)
    print(f"wrote {FIXTURE.name}: {len(lines)} rows, round {tag}, {len(event_types())} types")


async def _expected(url: str) -> None:
    from infrastructure.schema import migrate

    await migrate(url)
    await load_fixture(url, read_fixture())
    await write_expected(url)
    print(f"wrote {EXPECTED_AGGREGATES.name} and {EXPECTED_READ_MODELS.name}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.golden_log", description=__doc__)
    parser.add_argument("command", choices=("fresh", "extend", "expected", "check"))
    args = parser.parse_args(argv)
    if args.command == "check":
        missing = missing_types(read_fixture())
        for topic in missing:
            print(f"missing: {topic}")
        print(f"{len(event_types())} event types, {len(missing)} missing from the fixture")
        return 1 if missing else 0
    from benchmarks.common import fresh_database, postgres_server

    with postgres_server() as server, fresh_database(server) as url:
        if args.command == "expected":
            asyncio.run(_expected(url))
        else:
            asyncio.run(_fresh(url, extend=args.command == "extend"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
