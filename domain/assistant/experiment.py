"""The Experiment aggregate (F11.4.5): an A/B test of prompt versions of one role.

The rules (definitions, sticky assignment, statistics) are ``domain.assistant.experiments``;
this module records an experiment's life as events:

- ``Started``: the definition as ``ExperimentDefinition.as_dict`` (role, variants with
  their prompt versions, settings overrides and weights, unit kind, metric, min_sample and
  the salt drawn at creation), and why. The definition never changes afterwards: changing
  the salt or a weight would move units between variants.
- ``Exposed``: a unit saw a variant, once per unit (the aggregate refuses a second
  exposure of a unit by answering the first one's variant, appending nothing).
- ``OutcomeRecorded``: a unit's outcome (0 or 1 for a rate, a number for a score); a unit
  may report several (the results reduce them: a rate is 1 if it ever succeeded, a score
  their mean). Only exposed units report, and only while the experiment runs.
- ``Concluded``: the winner (a variant index) and why; assignment stops. Concluding again
  with the same winner records nothing; with another winner it is a conflict.

``ExperimentSlot`` (one per role, id derived from the role) holds which experiment of the
role is running: starting one occupies it, concluding frees it, and both are saved in the
same transaction as the experiment, so two experiments of a role can never run at once.
"""

from __future__ import annotations

import math
from typing import Any

from domain.assistant.experiments import ExperimentDefinition
from domain.assistant.prompts import FieldError, invalid_fields
from domain.base import Aggregate
from domain.claims import claim_id
from domain.errors import ConflictError
from domain.metadata import EventMeta

RUNNING, CONCLUDED = "running", "concluded"
SLOT_SCOPE = "assistant/experiment-slot"
MAX_UNIT_LENGTH = 200


class ExperimentConflictError(ConflictError):
    """A change the experiment's state refuses (HTTP 409)."""


def check_unit(unit: object, field_name: str = "unit") -> list[FieldError]:
    if not isinstance(unit, str) or not 0 < len(unit) <= MAX_UNIT_LENGTH:
        message = f"must be a non-empty string of at most {MAX_UNIT_LENGTH} characters"
        return [FieldError(field_name, message)]
    return []


def check_outcome(metric: str, value: object) -> list[FieldError]:
    """A rate's outcome is 0 or 1; a score's a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return [FieldError("value", "must be a number")]
    if metric == "rate" and value not in (0, 1):
        return [FieldError("value", "must be 0 or 1: the experiment's metric is a rate")]
    if not math.isfinite(value):
        return [FieldError("value", "must be a finite number")]
    return []


class Experiment(Aggregate):
    """An A/B experiment of prompt versions of one role."""

    class Started(Aggregate.Created):
        definition: dict[str, Any]
        reason: str

    class Exposed(Aggregate.Event):
        unit: str
        variant: int
        prompt_id: str
        prompt_version: int

        def apply(self, aggregate: Experiment) -> None:
            aggregate.exposures[self.unit] = self.variant

    class OutcomeRecorded(Aggregate.Event):
        unit: str
        variant: int
        value: float

        def apply(self, aggregate: Experiment) -> None:
            aggregate.outcomes += 1

    class Concluded(Aggregate.Event):
        winner: int
        prompt_id: str
        prompt_version: int
        reason: str

        def apply(self, aggregate: Experiment) -> None:
            aggregate.status = CONCLUDED
            aggregate.winner = self.winner
            aggregate.conclusion = self.reason

    def __init__(self, definition: dict[str, Any], reason: str, meta: EventMeta) -> None:
        self.definition = ExperimentDefinition.from_dict(definition)
        self.reason = reason
        self.started_by = meta.get("principal", "unknown")
        self.status = RUNNING
        self.exposures: dict[str, int] = {}
        self.outcomes = 0
        self.winner: int | None = None
        self.conclusion: str | None = None

    @classmethod
    def start(cls, definition: ExperimentDefinition, reason: str) -> Experiment:
        return cls._create(cls.Started, definition=definition.as_dict(), reason=reason)

    @property
    def role(self) -> str:
        return self.definition.role

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    def expose(self, unit: str) -> tuple[int, bool]:
        """The unit's variant, and whether this exposure is new (then it is recorded)."""
        errors = check_unit(unit)
        if errors:
            raise invalid_fields(errors)
        if unit in self.exposures:
            return self.exposures[unit], False
        if not self.running:
            raise ExperimentConflictError(f"experiment {self.id} is concluded")
        variant = self.definition.assign(unit)
        chosen = self.definition.variants[variant]
        self.trigger_event(
            self.Exposed,
            unit=unit,
            variant=variant,
            prompt_id=chosen.prompt_id,
            prompt_version=chosen.prompt_version,
        )
        return variant, True

    def record_outcome(self, unit: str, value: float) -> int:
        """Record ``unit``'s outcome; its variant."""
        errors = check_unit(unit) + check_outcome(self.definition.metric, value)
        if errors:
            raise invalid_fields(errors)
        if not self.running:
            raise ExperimentConflictError(
                f"experiment {self.id} is concluded: it takes no more outcomes"
            )
        if unit not in self.exposures:
            raise ExperimentConflictError(
                f"unit {unit!r} was never exposed in experiment {self.id}: resolve it first"
            )
        variant = self.exposures[unit]
        self.trigger_event(self.OutcomeRecorded, unit=unit, variant=variant, value=float(value))
        return variant

    def conclude(self, winner: int, reason: str) -> bool:
        """Conclude with ``winner``; False (nothing recorded) when already concluded so."""
        count = len(self.definition.variants)
        if isinstance(winner, bool) or not isinstance(winner, int) or not 0 <= winner < count:
            raise invalid_fields(
                [FieldError("winner", f"must be a variant index, 0 to {count - 1}")]
            )
        if not self.running:
            if self.winner == winner:
                return False
            raise ExperimentConflictError(
                f"experiment {self.id} was concluded with variant {self.winner} as the winner"
            )
        chosen = self.definition.variants[winner]
        self.trigger_event(
            self.Concluded,
            winner=winner,
            prompt_id=chosen.prompt_id,
            prompt_version=chosen.prompt_version,
            reason=reason,
        )
        return True


class ExperimentSlot(Aggregate):
    """Which experiment of a role is running (None: none)."""

    class Created(Aggregate.Created):
        role: str

    class Occupied(Aggregate.Event):
        experiment_id: str

        def apply(self, aggregate: ExperimentSlot) -> None:
            aggregate.experiment_id = self.experiment_id

    class Freed(Aggregate.Event):
        experiment_id: str

        def apply(self, aggregate: ExperimentSlot) -> None:
            aggregate.experiment_id = None

    def __init__(self, role: str, meta: EventMeta) -> None:
        self.role = role
        self.experiment_id: str | None = None

    @staticmethod
    def id_for(role: str) -> Any:
        return claim_id(SLOT_SCOPE, role)

    @classmethod
    def open(cls, role: str) -> ExperimentSlot:
        return cls._create(cls.Created, id=cls.id_for(role), role=role)

    def occupy(self, experiment_id: str) -> None:
        if self.experiment_id is not None:
            raise ExperimentConflictError(
                f"role {self.role!r} already runs experiment {self.experiment_id}: "
                "conclude it first"
            )
        self.trigger_event(self.Occupied, experiment_id=experiment_id)

    def free(self, experiment_id: str) -> None:
        if self.experiment_id == experiment_id:
            self.trigger_event(self.Freed, experiment_id=experiment_id)
