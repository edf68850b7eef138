"""The golden event log: events written by earlier code stay readable by today's.

``log.jsonl`` holds rows of every events table (and snapshots, and the stores the read
models read beside the log) as an earlier version of aimm stored them
(``scripts/golden_log.py``). Loaded as they are into a fresh database, every event must
still decode to its class's shape (upcasters applied), every aggregate must replay to
the state in ``expected_aggregates.json`` — also when loaded from its snapshot — and
every read model rebuilt from zero must equal ``expected_read_models.json``.

When this fails, read ``docs/events.md`` ("Changing an event: upcasters and the golden
log") before touching any file here: the fixture is never regenerated to make it pass.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import uuid
from typing import Any

import pytest
from eventsourcing.utils import get_topic

from application.registry import RegistryApplication
from domain.base import Aggregate
from infrastructure.postgres import eventsourcing_env
from infrastructure.schema import migrate
from infrastructure.wiring import build_contexts
from scripts import golden_log

LIMIT_SECONDS = 300  # the whole replay and rebuild takes seconds; a hang fails, not waits
FIX = "see docs/events.md, 'Changing an event: upcasters and the golden log'"


@pytest.fixture(scope="module")
def lines() -> list[dict[str, Any]]:
    return golden_log.read_fixture()


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where two canonical dumps differ (the first few paths), for a readable failure."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out: list[str] = []
        for key in sorted(set(expected) | set(actual)):
            if key not in actual:
                out.append(f"{path}/{key}: missing now")
            elif key not in expected:
                out.append(f"{path}/{key}: new, {json.dumps(actual[key])[:120]}")
            else:
                out += differences(expected[key], actual[key], f"{path}/{key}")
        return out
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [d for i, (e, a) in enumerate(zip(expected, actual, strict=True))
                for d in differences(e, a, f"{path}[{i}]")]  # fmt: skip
    if expected != actual:
        return [f"{path}: was {json.dumps(expected)[:120]}, now {json.dumps(actual)[:120]}"]
    return []


def test_the_fixture_has_every_event_type(lines: list[dict[str, Any]]) -> None:
    missing = golden_log.missing_types(lines)
    assert not missing, (
        f"event types without an event in the golden log: {missing}; add them to the "
        f"scenario and run `python -m scripts.golden_log extend` ({FIX})"
    )


def test_every_stored_event_decodes_to_its_class_shape(lines: list[dict[str, Any]]) -> None:
    problems = [
        p for _, e in golden_log.decoded_events(lines) if (p := golden_log.shape_problem(e))
    ]
    assert not problems, f"events whose shape changed without an upcaster ({FIX}):\n" + (
        "\n".join(problems[:20])
    )


async def test_aggregates_replay_and_read_models_rebuild_as_expected(
    database_url: str, lines: list[dict[str, Any]]
) -> None:
    async with asyncio.timeout(LIMIT_SECONDS):
        await migrate(database_url)
        await golden_log.load_fixture(database_url, lines)
        env = eventsourcing_env(database_url)

        expected_aggregates = json.loads(golden_log.EXPECTED_AGGREGATES.read_text())
        replayed = await asyncio.to_thread(golden_log.replay_all, env)
        diff = differences(expected_aggregates, replayed)
        assert not diff, f"aggregates replay differently ({FIX}):\n" + "\n".join(diff[:20])

        loaded = await asyncio.to_thread(_load_through_repositories, env)
        diff = differences(replayed, loaded)
        assert not diff, (
            "aggregates loaded through the repositories (from their snapshots) differ from "
            f"their replay from events: an aggregate's state changed shape ({FIX}):\n"
            + "\n".join(diff[:20])
        )

        expected_models = json.loads(golden_log.EXPECTED_READ_MODELS.read_text())
        rebuilt = await golden_log.rebuild_and_dump(database_url)
        diff = differences(expected_models, rebuilt)
        assert not diff, f"read models rebuild differently ({FIX}):\n" + "\n".join(diff[:20])


def _load_through_repositories(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Every aggregate as commands load it: from its latest snapshot when it has one."""
    contexts = build_contexts(env)
    try:
        snapshotted = 0
        out: dict[str, dict[str, Any]] = {}
        for app in contexts:
            states: dict[str, Any] = {}
            for originator_id in golden_log.originator_ids(app):
                if app.snapshots is not None and list(app.snapshots.get(originator_id, limit=1)):
                    snapshotted += 1
                states[str(originator_id)] = golden_log.aggregate_state(
                    app.repository.get(originator_id)
                )
            out[app.name] = states
        assert snapshotted > 0, "the golden log holds no snapshot to read back"
        return out
    finally:
        contexts.close()


async def test_as_of_replays_read_events_not_snapshots(
    database_url: str, lines: list[dict[str, Any]]
) -> None:
    """A model's past as of an earlier event equals its replay up to that event, although
    its snapshot (at its last version) is newer than that instant."""
    async with asyncio.timeout(LIMIT_SECONDS):
        await migrate(database_url)
        await golden_log.load_fixture(database_url, lines)
        contexts = build_contexts(eventsourcing_env(database_url))
        try:
            registry = contexts.registry
            model_topic = "domain.registry.model:Model.Registered"
            model_id = next(
                e.originator_id
                for _, e in golden_log.decoded_events(lines)
                if get_topic(type(e)) == model_topic
            )
            assert registry.snapshots is not None
            assert list(registry.snapshots.get(model_id, limit=1)), "the model has a snapshot"
            events = list(registry.events.get(model_id))
            assert len(events) >= 4
            middle = events[2]
            past = registry.get_model_as_of(model_id, middle.timestamp)
            assert past.version == middle.originator_version
            from_events = registry.repository.get(model_id, version=middle.originator_version)
            assert golden_log.aggregate_state(past) == golden_log.aggregate_state(from_events)
            assert registry.get_model(model_id).version == events[-1].originator_version
        finally:
            contexts.close()


# -- what the test catches: a field added without an upcaster ------------------------------


class ThingBefore(Aggregate):
    class Renamed(Aggregate.Event):
        name: str


class ThingChanged(Aggregate):
    class Renamed(Aggregate.Event):
        name: str
        reason: str  # the new field, and no upcaster


class ThingUpcast(Aggregate):
    class Renamed(Aggregate.Event):
        name: str
        reason: str

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["reason"] = ""  # what an event from before the field meant


def test_a_field_added_without_an_upcaster_is_caught_and_with_one_is_not() -> None:
    """The stored state of a ``Renamed`` written before ``reason`` existed, read by the
    class as changed: without an upcaster the shape check names the field; with
    ``class_version = 2`` and ``upcast_v1_v2`` it decodes with the field filled in."""
    mapper = RegistryApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper
    before = ThingBefore.Renamed(
        originator_id=uuid.uuid4(),
        originator_version=2,
        timestamp=dt.datetime.now(dt.UTC),
        meta={"principal": "test"},
        name="first",
    )
    stored = mapper.to_stored_event(before)
    assert golden_log.shape_problem(mapper.to_domain_event(stored)) is None

    def read_as(cls: type) -> Any:
        return mapper.to_domain_event(dataclasses.replace(stored, topic=get_topic(cls)))

    problem = golden_log.shape_problem(read_as(ThingChanged.Renamed))
    assert problem is not None
    assert "class fields not in the stored event: ['reason']" in problem

    upcast = read_as(ThingUpcast.Renamed)
    assert golden_log.shape_problem(upcast) is None
    assert upcast.reason == ""
    assert upcast.name == "first"
