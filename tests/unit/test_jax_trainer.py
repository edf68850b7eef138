"""The JAX trainer: it learns, it is deterministic, its points and export are as documented."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import jax
import numpy as np
import pytest

from benchmarks.bare_jax import bare_loop, synthetic_data
from domain.ml.hyperparameters import Hyperparameters
from infrastructure.artifacts import content_hash
from infrastructure.jax_trainer import (
    MetricPoint,
    Trainer,
    TrainingData,
    _epoch_order,
    load_model,
)

# 400 training rows in batches of 50: 8 steps an epoch.
SMALL = Hyperparameters(
    learning_rate=1e-2, epochs=4, batch_size=50, hidden_units=16, layers=2, seed=7
)


def classification() -> TrainingData:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 8)).astype(np.float32)
    y = ((x @ rng.normal(size=8) + x[:, 0] * x[:, 1]) > 0).astype(np.float32)
    return TrainingData(x[:400], y[:400], x[400:], y[400:])


def regression() -> TrainingData:
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(512, 8)) * 3 + 2).astype(np.float32)
    y = (x @ rng.normal(size=8) * 0.5 + 1.0).astype(np.float32)
    return TrainingData(x[:400], y[:400], x[400:], y[400:])


def points(trainer: Trainer, epochs: int, **options: int) -> list[MetricPoint]:
    return [
        item
        for epoch in range(1, epochs + 1)
        for item in trainer.run_epoch(epoch, **options)
        if item is not None
    ]


def without_durations(items: list[MetricPoint]) -> list[MetricPoint]:
    return [replace(p, duration_ms=0.0) for p in items]


@dataclass(frozen=True)
class Run:
    trainer: Trainer
    points: list[MetricPoint]
    export: bytes


def run(model_type: str, hp: Hyperparameters, data: TrainingData, **options: int) -> Run:
    trainer = Trainer(model_type, hp, data)
    recorded = points(trainer, hp.epochs, **options)
    return Run(trainer, recorded, trainer.export())


@pytest.fixture(scope="module")
def plain() -> Run:
    """SMALL's four epochs, one point an epoch: the reference the other runs match."""
    return run("mlp_classifier", SMALL, classification())


def test_the_classifier_learns_a_learnable_problem(plain: Run) -> None:
    assert [p.epoch for p in plain.points] == [1, 2, 3, 4]
    assert all(p.end_of_epoch for p in plain.points)
    assert plain.points[-1].loss < plain.points[0].loss / 2
    assert plain.points[-1].accuracy > 0.8
    assert plain.points[-1].val_accuracy > 0.8


def test_the_regressor_learns_a_linear_function_and_loads_back() -> None:
    data = regression()
    learnt = run("mlp_regressor", replace(SMALL, epochs=15), data)
    assert learnt.points[-1].val_loss < learnt.points[0].val_loss / 20
    assert 0.0 <= learnt.points[-1].val_accuracy <= 1.0
    expected = learnt.trainer.predict(data.x_val)
    assert expected.shape == (len(data.x_val),)
    np.testing.assert_array_equal(load_model(learnt.export)(data.x_val), expected)


def test_two_identical_trainers_give_identical_points_and_bytes(plain: Run) -> None:
    again = run("mlp_classifier", SMALL, classification())
    assert without_durations(again.points) == without_durations(plain.points)
    assert again.export == plain.export
    assert content_hash(again.export) == content_hash(plain.export)
    assert content_hash(b"").startswith("sha256:e3b0c442")


def test_every_steps_counts_global_steps_and_leaves_the_math_alone(plain: Run) -> None:
    often = run("mlp_classifier", SMALL, classification(), every_steps=3)
    assert often.trainer.steps_per_epoch == 8
    assert [(p.epoch, p.step, p.end_of_epoch) for p in often.points[:7]] == [
        (1, 3, False), (1, 6, False), (1, 8, True),
        (2, 9, False), (2, 12, False), (2, 15, False), (2, 16, True),
    ]  # fmt: skip
    often_ends = [p for p in often.points if p.end_of_epoch]
    assert [p.val_loss for p in often_ends] == [p.val_loss for p in plain.points]
    assert often.export == plain.export
    assert all(p.duration_ms > 0 for p in often.points)


def test_a_point_averages_the_steps_since_the_previous_one(plain: Run) -> None:
    by_step = points(Trainer("mlp_classifier", SMALL, classification()), 1, every_steps=1)
    assert [p.step for p in by_step] == list(range(1, 9))
    assert plain.points[0].loss == pytest.approx(np.mean([p.loss for p in by_step]), rel=1e-6)
    assert plain.points[0].accuracy == pytest.approx(np.mean([p.accuracy for p in by_step]))


def test_chunks_yield_none_between_points_and_a_caller_may_stop_at_any(plain: Run) -> None:
    trainer = Trainer("mlp_classifier", SMALL, classification())
    untrained = trainer.export()
    first = trainer.run_epoch(1, chunk_steps=3)
    assert next(first) is None
    assert trainer.export() != untrained  # the steps of the chunk are in the parameters
    assert [item is None for item in first] == [True, False]
    for epoch in (2, 3, 4):
        assert [item is None for item in trainer.run_epoch(epoch, chunk_steps=3)] == [
            True, True, False,
        ]  # fmt: skip
    assert trainer.export() == plain.export  # chunking changes nothing


def test_restore_brings_back_the_exported_bytes_of_the_snapshot() -> None:
    trainer = Trainer("mlp_classifier", SMALL, classification())
    points(trainer, 1)
    snapshot, saved = trainer.params_snapshot(), trainer.export()
    points(trainer, 1)
    assert trainer.export() != saved
    trainer.restore(snapshot)
    assert trainer.export() == saved


def test_load_model_refuses_other_bytes() -> None:
    with pytest.raises(ValueError, match="not an exported"):
        load_model(b"garbage")


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "rmsprop"])
def test_each_optimizer_with_decay_and_cosine_schedule_stays_finite(optimizer: str) -> None:
    hp = replace(SMALL, epochs=2, optimizer=optimizer, weight_decay=1e-3, lr_schedule="cosine")
    trainer = Trainer("mlp_classifier", hp, classification())
    recorded = points(trainer, 2)
    metrics = [getattr(p, name) for p in recorded for name in ("loss", "val_loss", "accuracy")]
    assert all(math.isfinite(value) for value in metrics)
    # cosine decay over the run's 16 steps: the last step (index 15) uses a tiny rate
    assert recorded[0].learning_rate < hp.learning_rate
    assert recorded[-1].learning_rate < hp.learning_rate * 0.01


def test_a_batch_larger_than_the_data_is_one_full_batch() -> None:
    trainer = Trainer("mlp_classifier", replace(SMALL, batch_size=4096), classification())
    assert trainer.steps_per_epoch == 1
    assert [(p.step, p.end_of_epoch) for p in points(trainer, 2)] == [(1, True), (2, True)]


def test_an_epoch_visits_every_row_once_in_an_order_of_its_own() -> None:
    # 400 rows in batches of 64: 7 steps, the last with 16 real rows and 48 of weight 0
    trainer = Trainer("mlp_classifier", replace(SMALL, batch_size=64), classification())
    assert trainer.steps_per_epoch == 7
    assert math.isfinite(points(trainer, 1)[0].loss)
    key = jax.random.PRNGKey(SMALL.seed)
    first, second = (
        np.asarray(_epoch_order(key, epoch, rows=400, batch_size=64)) for epoch in (1, 2)
    )
    assert first.shape == (7, 64)
    assert sorted(first.ravel()[:400].tolist()) == list(range(400))
    assert not np.array_equal(first, second)


def test_an_unknown_model_type_is_refused() -> None:
    with pytest.raises(ValueError, match="model_type"):
        Trainer("lstm", SMALL, classification())


def test_the_bare_loop_baseline_trains_every_step() -> None:
    data = synthetic_data(500, 6, seed=3)
    assert data.x_train.shape == (400, 6) and data.x_val.shape == (100, 6)
    steps, seconds = bare_loop("mlp_classifier", replace(SMALL, epochs=2), data)
    assert steps == 16
    assert seconds > 0
