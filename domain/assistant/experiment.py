"""The Experiment aggregate (F11.4.5): an A/B test of prompt versions of one role.

The rules (definitions, sticky assignment, statistics) are ``domain.assistant.experiments``;
this module records an experiment's life as events:

- ``Started``: the definition as ``ExperimentDefinition.as_dict`` (role, variants with
  their prompt versions, settings overrides and weights, unit kind, metric, min_sample and
  the salt drawn at creation), and why. The definition never changes afterwards: changing
  the salt or a weight would move units between variants.
- ``Concluded``: the winner (a variant index), the version production runs from then on,
  and why; assignment stops. Concluding again with the same winner records nothing; with
  another winner it is a conflict.

A unit's exposure and its outcomes are not events of the experiment but of an
``Exposure`` (one per experiment and unit, its id ``uuid5`` of both): a busy experiment
takes thousands of new units a minute, and were they events of one aggregate, every
resolve of a new unit would load the experiment's whole history and race every other on
its version. With one aggregate per unit the event store's uniqueness of (id, version 1)
records each exposure exactly once, with no load and no lock:

- ``Exposure.Exposed``: the unit saw a variant (index, prompt id and version).
- ``Exposure.OutcomeRecorded``: its outcome (0 or 1 for a rate, a number for a score); a
  unit may report several (the results reduce them: a rate is 1 if it ever succeeded, a
  score their mean).

Exposures and outcomes are taken while the experiment runs (the application checks the
experiment). One can race the conclusion and land in the log just after ``Concluded``;
the read model (``projections.assistant``) applies events in log order and counts only
exposures and outcomes before the conclusion, so the results freeze at the conclusion
and a rebuild gives the same numbers.

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
EXPOSURE_SCOPE = "assistant/exposure"
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

    class Concluded(Aggregate.Event):
        winner: int
        prompt_id: str
        prompt_version: int  # the winner's version, as the experiment ran it
        production_version: int  # what production runs now (see ``conclude``)
        reason: str

        def apply(self, aggregate: Experiment) -> None:
            aggregate.status = CONCLUDED
            aggregate.winner = self.winner
            aggregate.production_version = self.production_version
            aggregate.conclusion = self.reason

    def __init__(self, definition: dict[str, Any], reason: str, meta: EventMeta) -> None:
        self.definition = ExperimentDefinition.from_dict(definition)
        self.reason = reason
        self.started_by = meta.get("principal", "unknown")
        self.status = RUNNING
        self.winner: int | None = None
        self.production_version: int | None = None
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

    def check_running(self, what: str) -> None:
        if not self.running:
            raise ExperimentConflictError(f"experiment {self.id} is concluded: {what}")

    def concluding(self, winner: int) -> bool:
        """Whether concluding with ``winner`` records anything: False when concluded so
        already; 400 for an index that names no variant, 409 when another won."""
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
        return True

    def conclude(self, winner: int, reason: str, production_version: int | None = None) -> bool:
        """Conclude with ``winner``; False (nothing recorded) when already concluded so.

        ``production_version``: the version production runs from now on, when it is not
        the winner's own: a winner that ran with settings of its own is made a new version
        of the prompt with those settings in its overrides (the application commits it in
        the same transaction), so production runs exactly what won.
        """
        if not self.concluding(winner):
            return False
        chosen = self.definition.variants[winner]
        self.trigger_event(
            self.Concluded,
            winner=winner,
            prompt_id=chosen.prompt_id,
            prompt_version=chosen.prompt_version,
            production_version=production_version or chosen.prompt_version,
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


class Exposure(Aggregate):
    """One unit of one experiment: the variant it saw, and its outcomes."""

    class Exposed(Aggregate.Created):
        experiment_id: str
        unit: str
        variant: int
        prompt_id: str
        prompt_version: int

    class OutcomeRecorded(Aggregate.Event):
        value: float

        def apply(self, aggregate: Exposure) -> None:
            aggregate.outcomes += 1

    def __init__(  # noqa: PLR0913
        self,
        experiment_id: str,
        unit: str,
        variant: int,
        prompt_id: str,
        prompt_version: int,
        meta: EventMeta,
    ) -> None:
        self.experiment_id = experiment_id
        self.unit = unit
        self.variant = variant
        self.prompt_id = prompt_id
        self.prompt_version = prompt_version
        self.outcomes = 0

    @staticmethod
    def id_for(experiment_id: str, unit: str) -> Any:
        return claim_id(EXPOSURE_SCOPE, f"{experiment_id}\x00{unit}")

    @classmethod
    def expose(cls, experiment_id: str, definition: ExperimentDefinition, unit: str) -> Exposure:
        """The unit's exposure to the variant the definition assigns it (not yet saved:
        saving a second exposure of a unit is an integrity conflict)."""
        errors = check_unit(unit)
        if errors:
            raise invalid_fields(errors)
        variant = definition.assign(unit)
        chosen = definition.variants[variant]
        return cls._create(
            cls.Exposed,
            id=cls.id_for(experiment_id, unit),
            experiment_id=experiment_id,
            unit=unit,
            variant=variant,
            prompt_id=chosen.prompt_id,
            prompt_version=chosen.prompt_version,
        )

    def record_outcome(self, metric: str, value: float) -> int:
        """Record an outcome of this unit (checked against the experiment's ``metric``);
        its variant."""
        errors = check_outcome(metric, value)
        if errors:
            raise invalid_fields(errors)
        self.trigger_event(self.OutcomeRecorded, value=float(value))
        return self.variant
