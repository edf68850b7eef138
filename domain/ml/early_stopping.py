"""The early-stopping rule, applied once per epoch, and its decision with the evidence.

Pure: a ``Monitor`` is fed each epoch's metrics and answers whether the epoch improved,
how many epochs in a row have not, and whether to stop. The decision carries the rule
and the values it compared, so the event that ends a run explains itself (see
``domain.ml.hyperparameters`` for the rule's definition).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from domain.ml.hyperparameters import EarlyStopping


@dataclass(frozen=True)
class Check:
    """One epoch seen by the rule."""

    epoch: int
    value: float
    improved: bool
    wait: int
    best: float | None
    best_epoch: int | None
    stop: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "value": self.value,
            "improved": self.improved,
            "wait": self.wait,
            "best": self.best,
            "best_epoch": self.best_epoch,
        }


@dataclass
class Monitor:
    rule: EarlyStopping
    best: float | None = None
    best_epoch: int | None = None
    wait: int = 0
    history: list[Check] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.best = self.rule.baseline

    def _improves(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.rule.direction == "min":
            return value < self.best - self.rule.min_delta
        return value > self.best + self.rule.min_delta

    def update(self, epoch: int, metrics: dict[str, float]) -> Check:
        """Apply the rule to an epoch's metrics (``epoch`` is 1-based)."""
        value = float(metrics[self.rule.monitor])
        if epoch <= self.rule.start_from_epoch:
            check = Check(epoch, value, False, 0, self.best, self.best_epoch, False)
        elif self._improves(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            check = Check(epoch, value, True, 0, value, epoch, False)
        else:
            self.wait += 1
            stop = self.wait >= self.rule.patience
            check = Check(epoch, value, False, self.wait, self.best, self.best_epoch, stop)
        self.history.append(check)
        return check

    def decision(self) -> dict[str, Any]:
        """What the stopping event records: the rule, and the epochs it compared."""
        compared = self.history[-(self.rule.patience + 1) :]
        return {
            "rule": {**self.rule.as_dict(), "direction": self.rule.direction},
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "compared": [c.as_dict() for c in compared],
            "explanation": (
                f"{self.rule.monitor} did not improve on {self.best!r} "
                f"(epoch {self.best_epoch}) by more than {self.rule.min_delta} "
                f"({self.rule.direction}) for {self.wait} epoch(s); patience is "
                f"{self.rule.patience}"
            ),
        }
