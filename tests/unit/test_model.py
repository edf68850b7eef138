"""The Model aggregate's rules, without any I/O."""

from __future__ import annotations

import pytest

from domain.claims import IdempotencyRecord, UniqueClaim, claim_id, request_fingerprint
from domain.metadata import acting_as
from domain.registry.model import InvalidModelError, Model


def register(**overrides: object) -> Model:
    fields: dict[str, object] = {
        "name": "lstm-forecaster",
        "kind": "ml",
        "task": "forecast",
        "description": "",
        "owner": "quant-team",
        "tags": ["Daily", "daily", " equities "],
    }
    fields.update(overrides)
    return Model.register(**fields)  # type: ignore[arg-type]


def test_registration_normalises_tags_and_records_who_acted() -> None:
    with acting_as("alice", "corr-1"):
        model = register()
    event = model.collect_events()[0]
    assert model.tags == ["daily", "equities"]
    assert model.created_by == "alice"
    assert event.meta == {"principal": "alice", "correlation_id": "corr-1"}


@pytest.mark.parametrize("name", ["", "Upper", "-leading-dash", "x" * 101, "has space"])
def test_a_bad_name_is_refused(name: str) -> None:
    with pytest.raises(InvalidModelError):
        register(name=name)


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(InvalidModelError):
        register(kind="quantum")


def test_updating_to_the_same_details_records_nothing() -> None:
    model = register()
    model.collect_events()
    assert model.update_details(task="forecast", tags=["equities", "daily"]) is False
    assert model.collect_events() == []
    assert model.version == 1


def test_an_update_is_an_event_with_the_new_details_and_its_own_metadata() -> None:
    with acting_as("alice", "c1"):
        model = register()
    with acting_as("bob", "c2", causation_id="e9"):
        assert model.update_details(description="now with volume features") is True
    events = model.collect_events()
    assert [type(e).__name__ for e in events] == ["Registered", "DetailsUpdated"]
    assert events[1].description == "now with volume features"
    assert events[1].meta == {"principal": "bob", "correlation_id": "c2", "causation_id": "e9"}
    assert model.version == 2


def test_claims_and_idempotency_records_have_ids_derived_from_their_values() -> None:
    assert UniqueClaim.claim("s", "v", "o").id == claim_id("s", "v")
    assert claim_id("s", "v") != claim_id("s", "w")
    assert IdempotencyRecord.id_for("alice", "k") != IdempotencyRecord.id_for("bob", "k")


def test_request_fingerprints_differ_when_any_part_differs() -> None:
    base = request_fingerprint("POST", "/a", b"{}")
    assert base == request_fingerprint("post", "/a", b"{}")
    assert base != request_fingerprint("POST", "/b", b"{}")
    assert base != request_fingerprint("POST", "/a", b"{ }")


def test_text_with_a_nul_character_is_refused_before_it_is_stored() -> None:
    from domain.base import UnstorableTextError

    with pytest.raises(UnstorableTextError):
        register(description="bad\x00text")
    model = register()
    with pytest.raises(UnstorableTextError):
        model.update_details(tags=["ok", "b\x00d"])
    with pytest.raises(UnstorableTextError):
        model.register_version(
            artifact="a",
            framework="",
            parameters={"k\x00": 1},
            metrics={},
            lineage={},
            description="",
        )
