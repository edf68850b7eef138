"""Request and response bodies of the assistant's A/B experiments (F11.4.5).

The definition's constraints (2-10 variants, weights, unit, metric, min_sample, salt,
settings) are checked by the domain (``domain.assistant.experiments.validate_definition``),
which names **every** bad field in one 400 (``variants[1].weight``, ``min_sample``); the
schema states them with ``extra_json_schema`` (documented, not enforced by the decoder,
which would stop at the first).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from msgspec import Meta, Struct

from api.assistant_schemas import Reason, SettingsIn
from domain.assistant.experiments import (
    MAX_NAME_LENGTH,
    MAX_SALT_LENGTH,
    MAX_VARIANTS,
    MAX_WEIGHT,
    METRICS,
    MIN_SAMPLE_BOUNDS,
    MIN_VARIANTS,
    UNITS,
)


def _documented(**schema: Any) -> Meta:
    return Meta(extra_json_schema=schema)


UnitId = Annotated[str, Meta(min_length=1, max_length=200)]


class VariantIn(Struct, forbid_unknown_fields=True):
    prompt_id: Annotated[str, _documented(minLength=1, maxLength=MAX_NAME_LENGTH)]
    prompt_version: Annotated[int, _documented(minimum=1)]
    weight: Annotated[float, _documented(exclusiveMinimum=0, maximum=MAX_WEIGHT)] = 1.0
    settings: SettingsIn = msgspec.field(default_factory=SettingsIn)


class ExperimentIn(Struct, forbid_unknown_fields=True):
    role: str
    variants: Annotated[list[VariantIn], _documented(minItems=MIN_VARIANTS, maxItems=MAX_VARIANTS)]
    metric: Annotated[str, _documented(enum=list(METRICS))]
    min_sample: Annotated[
        int, _documented(minimum=MIN_SAMPLE_BOUNDS[0], maximum=MIN_SAMPLE_BOUNDS[1])
    ]
    unit: Annotated[str, _documented(enum=list(UNITS))] = "user"
    salt: Annotated[str, _documented(minLength=1, maxLength=MAX_SALT_LENGTH)] | None = None
    reason: Reason = ""


class OutcomeIn(Struct, forbid_unknown_fields=True):
    unit: UnitId
    value: Annotated[float, Meta(description="0 or 1 for a rate; a finite number for a score")]


class ConcludeIn(Struct, forbid_unknown_fields=True):
    winner: Annotated[int, Meta(ge=0, le=MAX_VARIANTS - 1, description="a variant's index")]
    reason: Reason = ""
    expected_version: Annotated[int, Meta(ge=1)] | None = None


class VariantOut(Struct):
    index: int
    prompt_id: str
    prompt_version: int
    weight: float
    settings: dict[str, Any]


class ExperimentOut(Struct):
    id: UUID
    role: str
    status: str  # running or concluded
    variants: list[VariantOut]
    unit: str
    metric: str
    min_sample: int
    salt: str  # with assign(), anyone can reproduce the assignment
    reason: str
    winner: int | None
    conclusion: str | None
    exposed: int  # units exposed so far (per the read models)
    started_at: datetime
    started_by: str
    concluded_at: datetime | None
    concluded_by: str | None
    version: int  # the aggregate's version: every exposure and outcome advances it


class ExperimentPage(Struct):
    items: list[ExperimentOut]
    next_cursor: str | None


class ConclusionOut(Struct):
    id: UUID
    status: str
    winner: int
    prompt_id: str
    prompt_version: int  # now the prompt's production version
    reason: str
    changed: bool  # False: it was concluded so already, nothing appended
    version: int


class OutcomeOut(Struct):
    experiment_id: UUID
    unit: str
    variant: int
    value: float
    outcomes: int  # the unit's outcomes recorded so far, this one included


class ResolveOut(Struct):
    role: str
    unit: str
    source: str  # experiment or production
    experiment_id: UUID | None
    variant: int | None
    prompt_id: UUID
    prompt_version: int
    model: str
    settings: dict[str, Any]
    exposure_recorded: bool  # True when this call recorded the unit's first exposure


class CompleteIn(Struct, forbid_unknown_fields=True):
    unit: UnitId
    variables: Annotated[dict[str, str], Meta(description="the templates' variables")] = {}


class CompleteOut(ResolveOut):
    output: str
    latency_ms: float
    tokens_in: int
    tokens_out: int
    finish_reason: str
    provider_model: str  # what the provider reports it ran


class IntervalOut(Struct):
    lower: float
    upper: float


class VersusControlOut(Struct):
    difference: float | None
    difference_ci: IntervalOut | None
    lift: float | None
    lift_ci: IntervalOut | None
    p_value: float | None
    adjusted_p_value: float | None  # Holm
    significant: bool | None  # None until the results are ready


class VariantResultOut(Struct):
    index: int
    share: float
    n: int
    n_outcomes: int
    successes: int | None
    estimate: float | None
    ci: IntervalOut | None
    std_dev: float | None
    enough_data: bool
    versus_control: VersusControlOut | None


class SampleRatioOut(Struct):
    statistic: float | None
    p_value: float | None
    mismatch: bool
    threshold: float
    expected: list[float]


class ResultsOut(Struct):
    experiment_id: UUID
    status: str  # insufficient_data or ready
    metric: str
    confidence: float
    min_sample: int
    units: int
    variants: list[VariantResultOut]
    sample_ratio: SampleRatioOut
