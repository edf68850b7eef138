"""What a training run has reached, as the worker trains it (see ``RunTracker``).

Pure bookkeeping over the trainer's metric points: no I/O. ``Fail`` is the error that
ends a run with its message as the recorded reason (a diverged loss here; missing or
altered dataset rows in the worker).
"""

from __future__ import annotations

import math
from typing import Any

from application.ports import MetricPoint, Trainer
from domain.ml.early_stopping import Check, Monitor
from domain.ml.hyperparameters import EarlyStopping

METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


class Fail(Exception):
    """The run cannot go on; the message is the recorded reason."""


class RunTracker:
    """What a run has reached: metric points, the best epoch (and its weights when the
    rule restores them), the early-stopping check, and the ending's summary.

    The best epoch is the early-stopping rule's (an improvement beyond ``min_delta`` on
    its monitor, as Keras keeps it); without a rule, the lowest ``val_loss``."""

    def __init__(self, trainer: Trainer, rule: EarlyStopping | None) -> None:
        self.trainer = trainer
        self.monitor = Monitor(rule) if rule else None
        self.best_name = rule.monitor if rule else "val_loss"
        self.restore_best = rule is not None and rule.restore_best_weights
        self.best: tuple[float, int, dict[str, float], Any] | None = None
        self.final: dict[str, float] = {}
        self.epochs_run = self.steps_run = 0
        self.stop = False

    def point(self, point: MetricPoint) -> dict[str, Any]:
        """The event payload of a point; updates the best epoch and the rule's check."""
        metrics = {m: float(getattr(point, m)) for m in METRICS}
        if not all(math.isfinite(v) for v in metrics.values()):
            raise Fail(f"training diverged at epoch {point.epoch}: {metrics}")
        self.steps_run = point.step
        record: dict[str, Any] = {
            "epoch": point.epoch,
            "step": point.step,
            "end_of_epoch": point.end_of_epoch,
            **metrics,
            "learning_rate": float(point.learning_rate),
            "duration_ms": round(float(point.duration_ms), 3),
        }
        if not point.end_of_epoch:
            return record
        self.epochs_run, self.final = point.epoch, metrics
        value = metrics[self.best_name]
        if self.monitor is not None:  # the rule decides what counts as better (min_delta)
            check: Check = self.monitor.update(point.epoch, metrics)
            record["early_stopping"] = check.as_dict()
            self.stop = check.stop
            improved = check.improved
        else:
            improved = self.best is None or value < self.best[0]
        if improved:
            snapshot = self.trainer.params_snapshot() if self.restore_best else None
            self.best = (value, point.epoch, metrics, snapshot)
        return record

    def keep_weights(self) -> bool:
        """Set the trainer to the weights the artifact keeps; False if nothing trained."""
        if self.restore_best and self.best is not None and self.best[3] is not None:
            self.trainer.restore(self.best[3])
        return self.epochs_run > 0

    def summary(self, artifact: str | None) -> dict[str, Any]:
        kept_best = self.restore_best and self.best is not None
        return {
            "epochs_run": self.epochs_run,
            "steps_run": self.steps_run,
            "best_epoch": self.best[1] if self.best else None,
            "best_metrics": self.best[2] if self.best else {},
            "final_metrics": self.final,
            "artifact_hash": artifact,
            "artifact_epoch": (
                None
                if artifact is None
                else self.best[1]
                if kept_best and self.best
                else self.epochs_run
            ),
        }
