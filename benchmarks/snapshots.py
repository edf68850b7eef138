"""Loading long-lived aggregates with snapshots, against replaying all their events.

Run: ``.venv/bin/python -m benchmarks.snapshots`` (``--help`` for the knobs).
PostgreSQL comes from ``AIMM_DATABASE_URL`` when set, else the embedded server is
started; the benchmark works in a fresh database that it drops at the end.

Two aggregates that grow for as long as the system runs, written through the
applications as they are configured (a snapshot every ``SNAPSHOT_INTERVAL`` events):

(a) a registry ``Model`` with ``--events`` deploys (two versions deployed in turn);
(b) the assistant's ``AssistantConfig`` with ``--events`` role edits.

Each is loaded ``--repeat`` times by ``repository.get`` as commands load it: by the
application with snapshots (the latest snapshot and the events after it), against the
same application class with snapshotting off (every event replayed), in the same run on
the same database. The ratio is replay time / snapshot time (higher is better). The
write side's cost is shown too: the events written per second with and without
snapshotting (each deploy its own ``save``, as a command does).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from application.assistant import AssistantApplication
from application.base import SNAPSHOT_INTERVAL
from application.registry import RegistryApplication
from benchmarks.common import fresh_database, postgres_server
from domain.assistant.config import AssistantConfig, RolePatch
from domain.metadata import acting_as
from domain.registry.model import Model
from infrastructure.postgres import eventsourcing_env

CHUNK = 250  # events per save while writing the long histories


class RegistryWithoutSnapshots(RegistryApplication):
    name = "registry"  # eventsourcing names a subclass after itself unless told
    snapshotting_intervals = {}  # no aggregate type is snapshotted


class AssistantWithoutSnapshots(AssistantApplication):
    name = "assistant"
    snapshotting_intervals = {}


def write_model(app: RegistryApplication, events: int) -> uuid.UUID:
    model = Model.register(
        name=f"bench-{uuid.uuid4().hex[:8]}",
        kind="ml",
        task="forecast",
        description="a model deployed many times",
        owner="bench",
        tags=[],
    )
    for n in (1, 2):
        model.register_version(
            artifact=f"sha256:{n:064x}",
            framework="jax",
            parameters={},
            metrics={},
            lineage={},
            description=f"version {n}",
        )
    app.save(model)
    while model.version < events:
        for _ in range(min(CHUNK, events - model.version)):
            model.deploy(1 + model.version % 2, "production", "flip")
        app.save(model)
    return model.id


def write_config(app: AssistantApplication, events: int) -> uuid.UUID:
    config = app.get_config() or AssistantConfig.start()
    config.add_role(
        key="bench-role",
        name="Bench role",
        description="a role edited many times",
        model="embedded:bench",
        settings={"temperature": 0.5, "max_tokens": 256},
        limit=8192,
        reason="bench",
        require_suite_pass=False,
    )
    app.save(config)
    n = 0
    while config.version < events:
        for _ in range(min(CHUNK, events - config.version)):
            n += 1
            patch = RolePatch("bench-role", settings={"temperature": round(0.1 + (n % 9) / 10, 1)})
            config.change_roles([patch], "bench edit")
        app.save(config)
    return config.id


def loader(app: Any, aggregate_id: uuid.UUID) -> Callable[[], Any]:
    """Loads the aggregate from ``app``'s repository, as a command would."""
    return lambda: app.repository.get(aggregate_id)


def time_loads(load: Callable[[], Any], repeat: int) -> tuple[float, int]:
    load()  # warm: connections, topics, code paths
    times = []
    version = 0
    for _ in range(repeat):
        started = time.perf_counter()
        aggregate = load()
        times.append(time.perf_counter() - started)
        version = aggregate.version
    return statistics.median(times), version


def deploy_rate(app: RegistryApplication, model_id: uuid.UUID, commands: int) -> float:
    started = time.perf_counter()
    for _ in range(commands):
        model: Any = app.repository.get(model_id)
        model.deploy(1 + model.version % 2, "staging", "rate")
        app.save(model)
    return commands / (time.perf_counter() - started)


def report(name: str, events: int, snap: float, replay: float, version: int) -> None:
    print(
        f"{name} at version {version} ({events:,} events, a snapshot every "
        f"{SNAPSHOT_INTERVAL}): load with snapshots {snap * 1000:.1f} ms, "
        f"replaying every event {replay * 1000:.1f} ms — ratio {replay / snap:.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5000, help="events per aggregate")
    parser.add_argument("--repeat", type=int, default=20, help="loads timed per side")
    parser.add_argument("--commands", type=int, default=30, help="deploys timed per side")
    args = parser.parse_args()
    with postgres_server() as server, fresh_database(server) as url:
        env = eventsourcing_env(url)
        registry, plain_registry = RegistryApplication(env), RegistryWithoutSnapshots(env)
        assistant, plain_assistant = AssistantApplication(env), AssistantWithoutSnapshots(env)
        try:
            with acting_as("benchmark", f"bench-{uuid.uuid4()}"):
                model_id = write_model(registry, args.events)
                config_id = write_config(assistant, args.events)
                assert registry.snapshots is not None and assistant.snapshots is not None
                taken = len(list(registry.snapshots.get(model_id))) + len(
                    list(assistant.snapshots.get(config_id))
                )
                print(f"wrote 2 × {args.events:,} events; {taken} snapshots taken on the way")
                for name, with_snap, without, aggregate_id in (
                    ("Model", registry, plain_registry, model_id),
                    ("AssistantConfig", assistant, plain_assistant, config_id),
                ):
                    snap, version = time_loads(loader(with_snap, aggregate_id), args.repeat)
                    replay, same = time_loads(loader(without, aggregate_id), args.repeat)
                    assert same == version
                    report(name, args.events, snap, replay, version)
                with_rate = deploy_rate(registry, model_id, args.commands)
                without_rate = deploy_rate(plain_registry, model_id, args.commands)
                print(
                    f"deploy commands (load, deploy, save) on that model: {with_rate:,.0f}/s "
                    f"with snapshots, {without_rate:,.0f}/s replaying every event — ratio "
                    f"{with_rate / without_rate:.1f}x"
                )
        finally:
            for app in (registry, plain_registry, assistant, plain_assistant):
                app.close()


if __name__ == "__main__":
    main()
