"""A memory's strength: a forgetting curve whose stability grows with each reinforcement.

Deterministic, from the memory's events alone, as of any time ``t``:

- stability ``S`` (days) starts at ``1 + 29 × importance`` (1 day for trivia, 30 days
  for what the agent marked most important);
- each access reinforcement (a search hit, at most once an hour) multiplies ``S`` by
  1.5; explicit feedback ``v`` in [-1, 1] multiplies it by ``1 + v`` when positive (up
  to ×2) and by ``1 + v/2`` when negative (down to ×0.5); ``S`` never falls below 0.25
  days;
- the anchor is the last positive reinforcement (access, or feedback > 0), else the
  memory's recording;
- retention ``R = exp(-(t - anchor) / S)``;
- **strength = R × (0.5 + 0.5 × importance)**: between 0 and 1; a fresh memory starts at
  0.5 to 1 by importance and fades at the pace its stability sets.

Every response carrying a memory carries ``strength`` and these components, and the
read models keep ``S``, the anchor and the importance, so SQL computes the same value
(``SQL_STRENGTH``) for ranking and filters at query time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from datetime import datetime

BASE_STABILITY_DAYS = 1.0
IMPORTANCE_STABILITY_DAYS = 29.0
ACCESS_GROWTH = 1.5
MIN_STABILITY_DAYS = 0.25
ACCESS_INTERVAL_SECONDS = 3600.0  # a memory is reinforced by access at most once an hour
DAY = 86400.0

# The same function over a read model row with importance, stability_days, anchor_at.
SQL_STRENGTH = (
    "((0.5 + 0.5 * {t}.importance) * exp(-greatest(0, extract(epoch FROM ({now} - "
    "{t}.anchor_at))) / 86400.0 / {t}.stability_days))"
)


@dataclass(frozen=True)
class Reinforcement:
    at: datetime
    source: str  # "access" or "feedback"
    value: float  # 1.0 for an access; the feedback value otherwise


@dataclass(frozen=True)
class Curve:
    """What the strength is computed from (as of some time)."""

    importance: float
    recorded_at: datetime
    stability_days: float
    anchor_at: datetime
    accesses: int
    feedback: int


@dataclass(frozen=True)
class Strength:
    strength: float
    retention: float
    importance: float
    stability_days: float
    age_days: float
    days_since_reinforced: float
    accesses: int
    feedback: int
    as_of: datetime

    def as_dict(self) -> dict[str, object]:
        values = asdict(self)
        values["as_of"] = self.as_of.isoformat()
        return values


def initial_stability(importance: float) -> float:
    return BASE_STABILITY_DAYS + IMPORTANCE_STABILITY_DAYS * importance


def reinforce(stability: float, source: str, value: float) -> float:
    if source == "access":
        factor = ACCESS_GROWTH
    elif value >= 0:
        factor = 1.0 + value
    else:
        factor = 1.0 + value / 2.0
    return max(MIN_STABILITY_DAYS, stability * factor)


def step(c: Curve, r: Reinforcement) -> Curve:
    """The curve after one more reinforcement (what every reader of the events folds)."""
    positive = r.source == "access" or r.value > 0
    return replace(
        c,
        stability_days=reinforce(c.stability_days, r.source, r.value),
        anchor_at=r.at if positive else c.anchor_at,
        accesses=c.accesses + (r.source == "access"),
        feedback=c.feedback + (r.source != "access"),
    )


def curve(
    importance: float, recorded_at: datetime, reinforcements: Iterable[Reinforcement]
) -> Curve:
    c = Curve(importance, recorded_at, initial_stability(importance), recorded_at, 0, 0)
    for r in reinforcements:
        c = step(c, r)
    return c


def strength_at(c: Curve, as_of: datetime) -> Strength:
    since = max(0.0, (as_of - c.anchor_at).total_seconds()) / DAY
    retention = math.exp(-since / c.stability_days)
    return Strength(
        strength=retention * (0.5 + 0.5 * c.importance),
        retention=retention,
        importance=c.importance,
        stability_days=c.stability_days,
        age_days=max(0.0, (as_of - c.recorded_at).total_seconds()) / DAY,
        days_since_reinforced=since,
        accesses=c.accesses,
        feedback=c.feedback,
        as_of=as_of,
    )
