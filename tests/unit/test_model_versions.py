"""Versions, deployments and their rules inside the Model aggregate (no I/O)."""

from __future__ import annotations

import pytest

from domain.errors import ConflictError, NotFoundError
from domain.registry.model import InvalidModelError, Model


def model_with_versions(count: int, kind: str = "ml") -> Model:
    model = Model.register(name="m", kind=kind, task="", description="", owner="o", tags=[])
    for i in range(count):
        model.register_version(
            artifact=f"sha256:{i}",
            framework="jax",
            parameters={},
            metrics={"accuracy": i / 10},
            lineage={},
            description="",
        )
    return model


def replayed(model: Model) -> Model:
    """The same model rebuilt from its events, as the repository would."""
    rebuilt = None
    for event in model.collect_events():
        rebuilt = event.mutate(rebuilt)
    assert isinstance(rebuilt, Model)
    return rebuilt


def test_deploying_archives_the_replaced_version_only_when_it_is_active_nowhere() -> None:
    model = model_with_versions(3)
    model.deploy(1, "production", "")
    model.deploy(1, "staging", "")
    model.deploy(2, "production", "")
    assert (model.versions[1].status, model.versions[1].environments) == ("active", ["staging"])
    model.deploy(3, "staging", "")
    assert (model.versions[1].status, model.versions[1].environments) == ("archived", [])
    assert model.active == {"production": 2, "staging": 3}
    again = replayed(model)
    assert again.active == model.active
    assert [d.version for d in again.deployments] == [1, 1, 2, 3]


def test_deploy_refuses_unknown_versions_environments_and_no_ops() -> None:
    model = model_with_versions(2)
    with pytest.raises(NotFoundError):
        model.deploy(3, "production", "")
    with pytest.raises(InvalidModelError):
        model.deploy(1, "moon", "")
    model.deploy(1, "production", "")
    with pytest.raises(ConflictError):
        model.deploy(1, "production", "")


def test_rollback_goes_to_the_previous_distinct_version_by_default() -> None:
    model = model_with_versions(3)
    for version in (1, 2, 3):
        model.deploy(version, "production", "")
    assert model.rollback("production", None, "bad").version == 2
    assert model.rollback("production", None, "worse").version == 3
    with pytest.raises(InvalidModelError, match="nothing is deployed"):
        model_with_versions(2).rollback("production", 1, "")
    fresh = model_with_versions(2)
    fresh.deploy(1, "production", "")
    with pytest.raises(InvalidModelError, match="no earlier version"):
        fresh.rollback("production", None, "")
    with pytest.raises(InvalidModelError, match="never active"):
        fresh.rollback("production", 2, "")


def test_metrics_history_keeps_every_record_and_shows_the_latest() -> None:
    model = model_with_versions(1)
    model.record_metrics(1, {"accuracy": 0.7, "loss": 0.3}, "re-evaluation")
    version = replayed(model).versions[1]
    assert version.metrics == {"accuracy": 0.7, "loss": 0.3}
    assert [r.source for r in version.metrics_history] == ["registration", "re-evaluation"]
    with pytest.raises(InvalidModelError):
        model.record_metrics(1, {"accuracy": float("nan")}, "x")
    with pytest.raises(InvalidModelError):
        model.record_metrics(1, {}, "x")


def test_lineage_rules_parent_must_exist_and_prompts_are_for_llms() -> None:
    model = model_with_versions(1)
    with pytest.raises(InvalidModelError, match="parent_version"):
        model.register_version(
            artifact="a",
            framework="",
            parameters={},
            metrics={},
            lineage={"parent_version": 5},
            description="",
        )
    with pytest.raises(InvalidModelError, match="llm"):
        model.register_version(
            artifact="a",
            framework="",
            parameters={},
            metrics={},
            lineage={"prompt_versions": ["p"]},
            description="",
        )
    llm = model_with_versions(0, kind="llm")
    assert (
        llm.register_version(
            artifact="a",
            framework="",
            parameters={},
            metrics={},
            lineage={"prompt_versions": ["p"]},
            description="",
        )
        == 1
    )


def test_stage_and_archive_refuse_active_versions() -> None:
    model = model_with_versions(2)
    model.deploy(1, "production", "")
    with pytest.raises(InvalidModelError):
        model.archive(1, "")
    model.archive(2, "old")
    assert model.versions[2].status == "archived"
    with pytest.raises(ConflictError):
        model.archive(2, "")
    model.stage(2, "reconsider")
    assert model.versions[2].status == "staging"
