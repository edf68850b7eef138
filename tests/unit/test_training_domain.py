"""Hyperparameter bounds, the early-stopping rule and a training run's life, without I/O."""

from __future__ import annotations

import pytest

from domain.errors import DomainError, InvalidFieldsError
from domain.metadata import acting_as
from domain.ml.early_stopping import Monitor
from domain.ml.hyperparameters import (
    EarlyStopping,
    Hyperparameters,
    parse_early_stopping,
    parse_hyperparameters,
    parse_settings,
)
from domain.ml.runs import (
    COMPLETED,
    QUEUED,
    RUNNING,
    STOPPED,
    RunFinishedError,
    StaleAttemptError,
    TrainingRun,
)


def test_defaults_need_nothing_and_every_bad_field_is_named() -> None:
    assert parse_hyperparameters({}) == Hyperparameters()
    assert parse_early_stopping(None) is None
    assert parse_early_stopping({}) == EarlyStopping()
    with pytest.raises(InvalidFieldsError) as caught:
        parse_hyperparameters(
            {"learning_rate": 0, "epochs": 1.5, "layers": True, "optimizer": "adagrad", "x": 1}
        )
    assert {e["field"] for e in caught.value.errors} == {
        "hyperparameters.learning_rate",
        "hyperparameters.epochs",
        "hyperparameters.layers",
        "hyperparameters.optimizer",
        "hyperparameters.x",
    }
    with pytest.raises(InvalidFieldsError) as caught:
        parse_early_stopping({"mode": "up", "baseline": float("nan"), "min_delta": -1})
    assert {e["field"] for e in caught.value.errors} == {
        "early_stopping.mode",
        "early_stopping.baseline",
        "early_stopping.min_delta",
    }
    # integral floats are accepted as integers (JSON has one number type)
    assert parse_hyperparameters({"epochs": 3.0}).epochs == 3


def test_auto_mode_maximises_accuracies_and_minimises_losses() -> None:
    assert EarlyStopping(monitor="val_accuracy").direction == "max"
    assert EarlyStopping(monitor="val_loss").direction == "min"
    assert EarlyStopping(monitor="val_loss", mode="max").direction == "max"


def test_the_rule_stops_after_patience_epochs_without_improvement() -> None:
    monitor = Monitor(EarlyStopping(patience=2, min_delta=0.1))
    values = [1.0, 0.8, 0.75, 0.72]
    checks = [monitor.update(e, {"val_loss": v}) for e, v in enumerate(values, start=1)]
    # 0.75 and 0.72 do not beat 0.8 by more than 0.1: the fourth epoch stops
    assert [c.improved for c in checks] == [True, True, False, False]
    assert [c.wait for c in checks] == [0, 0, 1, 2]
    assert [c.stop for c in checks] == [False, False, False, True]
    decision = monitor.decision()
    assert decision["best"] == 0.8
    assert decision["best_epoch"] == 2
    assert [c["epoch"] for c in decision["compared"]] == [2, 3, 4]
    assert decision["rule"]["direction"] == "min"


def test_a_baseline_must_be_beaten_and_early_epochs_are_ignored() -> None:
    monitor = Monitor(EarlyStopping(monitor="val_accuracy", patience=1, baseline=0.6))
    assert monitor.update(1, {"val_accuracy": 0.55}).stop is True
    warm = Monitor(EarlyStopping(patience=0, start_from_epoch=2))
    assert warm.update(1, {"val_loss": 1.0}).stop is False
    assert warm.update(2, {"val_loss": 2.0}).stop is False
    assert warm.update(3, {"val_loss": 0.9}).improved is True
    assert warm.update(4, {"val_loss": 0.95}).stop is True
    nan = Monitor(EarlyStopping(patience=1))
    nan.update(1, {"val_loss": 1.0})
    assert nan.update(2, {"val_loss": float("nan")}).improved is False


def new_run() -> TrainingRun:
    with acting_as("tester", "c-1"):
        return TrainingRun.request(
            dataset_id="d", dataset_name="n", dataset_hash="sha256:x", feature_columns=["f"],
            target="direction", model_type="mlp_classifier", model_name="m",
            hyperparameters={}, early_stopping=None, record_every_steps=None,
        )  # fmt: skip


def test_a_run_goes_from_queued_to_running_to_completed() -> None:
    run = new_run()
    assert run.status == QUEUED
    run.start("w1", 1, "first attempt")
    assert run.status == RUNNING
    run.record(1, {"epoch": 1})
    with pytest.raises(StaleAttemptError):
        run.record(2, {"epoch": 1})
    run.end(COMPLETED, 1, artifact_hash="sha256:a", epochs_run=1)
    assert run.status == COMPLETED
    with pytest.raises(RunFinishedError):
        run.request_stop("late")
    with pytest.raises(RunFinishedError):
        run.start("w2", 2, "again")


def test_a_taken_over_run_refuses_its_old_attempt() -> None:
    run = new_run()
    run.start("w1", 1, "first attempt")
    run.start("w2", 2, "restarted")
    with pytest.raises(StaleAttemptError):
        run.record(1, {"epoch": 3})
    with pytest.raises(StaleAttemptError):
        run.start("w3", 2, "same attempt twice")


def test_stopping_a_queued_run_ends_it_and_a_second_ask_changes_nothing() -> None:
    run = new_run()
    with acting_as("alice", "c-2"):
        assert run.request_stop("not needed") is True
    assert run.status == STOPPED
    assert run.stop_requested_by == "alice"
    running = new_run()
    running.start("w1", 1, "first attempt")
    assert running.request_stop("enough") is True
    assert running.request_stop("again") is False
    assert running.status == RUNNING  # the worker records Stopped
    with pytest.raises(DomainError):
        TrainingRun.request(
            dataset_id="d", dataset_name="n", dataset_hash="h", feature_columns=[],
            target="direction", model_type="mlp_classifier", model_name="m",
            hyperparameters={}, early_stopping=None, record_every_steps=0,
        )  # fmt: skip


def test_bad_hyperparameters_and_early_stopping_are_named_in_one_error() -> None:
    with pytest.raises(InvalidFieldsError) as refused:
        parse_settings({"learning_rate": 5, "epochs": 0}, {"patience": -1, "mode": "up"})
    assert {e["field"] for e in refused.value.errors} == {
        "hyperparameters.learning_rate",
        "hyperparameters.epochs",
        "early_stopping.patience",
        "early_stopping.mode",
    }
    hp, rule = parse_settings({"epochs": 3}, None)
    assert hp.epochs == 3 and rule is None
