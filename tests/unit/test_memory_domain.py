"""Memory rules without I/O: parsing, tickers, sealing, strength and the lifecycle."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import InvalidFieldsError
from domain.memory.memory import (
    Memory,
    MemoryErasedError,
    MemoryStateError,
    parse_memory,
    recognise_tickers,
)
from domain.memory.sealing import UnsealError, new_key, seal, unseal
from domain.memory.strength import Reinforcement, curve, strength_at
from domain.metadata import acting_as

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_tickers_are_cashtags_and_exchange_prefixes_only() -> None:
    text = "CEO says $AAPL and $BRK.B beat; NYSE:IBM flat, USA GDP up, $aapl ignored, $AAPL again"
    assert recognise_tickers(text) == ["AAPL", "BRK.B", "IBM"]


def test_parse_names_every_bad_field_and_adds_ticker_entities() -> None:
    with pytest.raises(InvalidFieldsError) as caught:
        parse_memory({"agent_id": "", "content": "", "kind": "x", "importance": -1, "extra": 1})
    assert {e["field"] for e in caught.value.errors} == {
        "agent_id", "content", "kind", "importance", "extra",
    }  # fmt: skip
    draft = parse_memory(
        {"agent_id": "a", "content": "long $MSFT", "entities": [{"name": "msft", "type": "ticker"}],
         "tags": ["B", "a", "b"]}
    )  # fmt: skip
    assert draft.document["entities"] == [{"name": "msft", "type": "ticker"}]  # no duplicate
    assert draft.document["tags"] == ["a", "b"]
    assert draft.kind == "observation"
    assert draft.importance == 0.5


def test_sealed_text_opens_only_with_its_key_for_its_memory() -> None:
    key, memory_id = new_key(), uuid.uuid4()
    sealed = seal(key, memory_id, {"content": "secret"})
    assert "secret" not in sealed
    assert unseal(key, memory_id, sealed) == {"content": "secret"}
    with pytest.raises(UnsealError):
        unseal(new_key(), memory_id, sealed)
    with pytest.raises(UnsealError):
        unseal(key, uuid.uuid4(), sealed)  # moved to another memory


def test_strength_falls_with_time_and_reinforcement_slows_the_fall() -> None:
    plain = curve(0.5, T0, [])
    day1, day10 = (
        strength_at(plain, T0 + timedelta(days=1)),
        strength_at(plain, T0 + timedelta(days=10)),
    )
    assert strength_at(plain, T0).strength == pytest.approx(0.75)
    assert day10.strength < day1.strength < 0.75
    reinforced = curve(0.5, T0, [Reinforcement(T0 + timedelta(days=1), "access", 1.0)])
    assert reinforced.stability_days == pytest.approx(15.5 * 1.5)
    later = T0 + timedelta(days=10)
    assert strength_at(reinforced, later).strength > strength_at(plain, later).strength
    negative = curve(0.5, T0, [Reinforcement(T0 + timedelta(days=1), "feedback", -1.0)])
    assert negative.stability_days == pytest.approx(15.5 / 2)
    assert negative.anchor_at == T0  # negative feedback does not refresh the memory
    important = curve(1.0, T0, [])
    assert strength_at(important, later).strength > strength_at(plain, later).strength


def new_memory() -> Memory:
    draft = parse_memory({"agent_id": "a", "content": "c"})
    with acting_as("tester", "c1"):
        return Memory.record(uuid.uuid4(), draft, "sealed", T0)


def test_lifecycle_rules() -> None:
    m = new_memory()
    now = datetime.now(UTC)
    assert m.access(now) is True  # stamped now
    assert m.access(now + timedelta(minutes=30)) is False  # once an hour at most
    assert m.access(now + timedelta(minutes=61)) is True
    with pytest.raises(MemoryStateError):
        m.restore("not invalidated")
    assert m.invalidate("old") is True
    assert m.invalidate("again") is False
    assert m.access(now + timedelta(hours=3)) is False
    with pytest.raises(MemoryStateError):
        m.feedback(1.0)
    m.restore("back")
    assert m.status == "active"
    with pytest.raises(InvalidFieldsError):
        m.feedback(2.0)
    assert m.erase("gdpr") is True
    assert m.erase("again") is False
    for act in (lambda: m.invalidate("x"), lambda: m.restore("x"), lambda: m.feedback(1.0)):
        with pytest.raises(MemoryErasedError):
            act()
