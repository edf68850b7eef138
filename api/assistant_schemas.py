"""Request and response bodies of the assistant: roles, settings, prompts, versions, labels.

The settings, templates, variables, model references and role keys are checked by the
domain, which names **every** bad field in one 400 (``roles[0].settings.temperature``,
``user_template``, ``variables[2]``): their constraints are stated in the schema with
``extra_json_schema`` (documented, not enforced by the decoder, which would stop at the
first). Plain lengths are enforced by the decoder. Fields left out of a settings patch
are ``UNSET`` (unchanged); ``null`` is a value (``top_p``/``seed``: the provider's default).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from api.schemas import LongText, ShortText
from domain.assistant.config import ROLE_KEY_PATTERN
from domain.assistant.models import MAX_TOKENS_BOUND, MODEL_REF_PATTERN
from domain.assistant.prompt import PROMPT_NAME_PATTERN
from domain.assistant.prompt_runs import MAX_ASSERTIONS, MAX_VERSIONS
from domain.assistant.prompts import (
    ASSERTION_KINDS,
    MAX_STOP_SEQUENCES,
    NAME,
    SEED_RANGE,
    TEMPERATURE_RANGE,
)
from domain.assistant.suites import MAX_SUITE_INPUTS

MAX_VERSION = 2**31 - 1  # version numbers are PostgreSQL integers in the read models
LABEL_PATTERN = r"^(?!latest$)[a-z][a-z0-9_-]{0,31}$"  # domain.assistant.prompts: LABEL_NAME
MAX_TEMPLATE = 100_000
MAX_VARIABLES = 100
MAX_ROLES_PER_CHANGE = 100


def _documented(**schema: Any) -> Meta:
    """A constraint stated in the schema and checked by the domain (every field named)."""
    return Meta(extra_json_schema=schema)


Temperature = Annotated[
    float, _documented(minimum=TEMPERATURE_RANGE[0], maximum=TEMPERATURE_RANGE[1])
]
MaxTokens = Annotated[
    int,
    Meta(
        extra_json_schema={"minimum": 1, "maximum": MAX_TOKENS_BOUND},
        description="1 to the context length of the model the settings are for",
    ),
]
TopP = Annotated[float, _documented(exclusiveMinimum=0, maximum=1)]
StopSequence = Annotated[str, _documented(minLength=1, maxLength=200)]
Stop = Annotated[list[StopSequence], _documented(maxItems=MAX_STOP_SEQUENCES)]
Seed = Annotated[int, _documented(minimum=SEED_RANGE[0], maximum=SEED_RANGE[1])]
ModelRefText = Annotated[
    str,
    Meta(
        extra_json_schema={"pattern": MODEL_REF_PATTERN},
        description="`PROVIDER:NAME` (`embedded:smollm2-135m-instruct`, `openai:NAME`), "
        "`registry:MODEL@VERSION` or `registry:MODEL@production` (MODEL: id or name)",
    ),
]
RoleKey = Annotated[str, _documented(pattern=ROLE_KEY_PATTERN)]
PromptName = Annotated[str, _documented(pattern=PROMPT_NAME_PATTERN)]
VariableName = Annotated[str, _documented(pattern=f"^{NAME.pattern}$")]
Variables = Annotated[list[VariableName], _documented(maxItems=MAX_VARIABLES, uniqueItems=True)]
Template = Annotated[str, Meta(max_length=MAX_TEMPLATE)]
Reason = Annotated[str, Meta(max_length=1000)]
Why = Annotated[str, Meta(min_length=1, max_length=1000)]
VersionNumber = Annotated[int, Meta(ge=1, le=MAX_VERSION)]
Label = Annotated[str, _documented(pattern=LABEL_PATTERN)]
RequireSuitePass = Annotated[
    bool,
    Meta(
        description="moving `production` of the role's prompts to a version needs the latest "
        "run of the prompt's saved test suite against that version to have passed every case "
        "(and run the suite as it is now): 409 otherwise"
    ),
]


# -- requests -----------------------------------------------------------------------------


class SettingsIn(Struct, forbid_unknown_fields=True):
    """Model settings to set; a field left out is not changed (or, in a prompt version's
    overrides, not overridden). ``null`` top_p or seed: the provider's default."""

    temperature: Temperature | UnsetType = UNSET
    max_tokens: MaxTokens | UnsetType = UNSET
    top_p: TopP | UnsetType | None = UNSET
    stop: Stop | UnsetType = UNSET
    seed: Seed | UnsetType | None = UNSET

    def given(self) -> dict[str, Any]:
        """The fields set, by name (what a patch or an override holds)."""
        values = {name: getattr(self, name) for name in self.__struct_fields__}
        return {name: value for name, value in values.items() if value is not UNSET}


class RoleCreate(Struct, forbid_unknown_fields=True):
    role: RoleKey
    model: ModelRefText
    name: ShortText = ""
    description: LongText = ""
    settings: SettingsIn = msgspec.field(default_factory=SettingsIn)
    reason: Reason = ""
    expected_version: VersionNumber | None = None
    require_suite_pass: RequireSuitePass = False


class RoleChange(Struct, forbid_unknown_fields=True):
    """One role's change: only the fields given change; ``prompt_id`` null: runs none."""

    role: RoleKey
    model: ModelRefText | UnsetType = UNSET
    settings: SettingsIn = msgspec.field(default_factory=SettingsIn)
    prompt_id: UUID | UnsetType | None = UNSET
    require_suite_pass: RequireSuitePass | UnsetType = UNSET


class ConfigUpdate(Struct, forbid_unknown_fields=True):
    roles: Annotated[list[RoleChange], Meta(min_length=1, max_length=MAX_ROLES_PER_CHANGE)]
    reason: Why
    expected_version: Annotated[int, Meta(ge=0, le=MAX_VERSION)] | None = None


class PromptCreate(Struct, forbid_unknown_fields=True):
    role: RoleKey
    name: PromptName
    description: LongText = ""


class PromptVersionIn(Struct, forbid_unknown_fields=True):
    system_template: Template
    user_template: Template
    message: Why
    variables: Variables = []
    overrides: SettingsIn = msgspec.field(default_factory=SettingsIn)
    model: ModelRefText | None = None
    expected_version: VersionNumber | None = None


class LabelMove(Struct, forbid_unknown_fields=True):
    version: VersionNumber
    reason: Reason = ""
    expected_version: VersionNumber | None = None


class LabelRollback(Struct, forbid_unknown_fields=True):
    label: Label = "production"
    version: VersionNumber | None = None
    reason: Reason = ""
    expected_version: VersionNumber | None = None


class TestDraft(Struct, forbid_unknown_fields=True):
    """Unsaved content to test as a version would run (on the role's model)."""

    system_template: Template
    user_template: Template
    variables: Variables = []
    overrides: SettingsIn = msgspec.field(default_factory=SettingsIn)


class TestInput(Struct, forbid_unknown_fields=True):
    """One sample input: a value for each variable the templates use."""

    values: dict[Annotated[str, Meta(max_length=100)], Annotated[str, Meta(max_length=20_000)]]
    name: ShortText = ""


class AssertionIn(Struct, forbid_unknown_fields=True):
    """A check on each output; ``value`` is a string (contains, not_contains, regex), a
    JSON Schema (json_schema), a positive integer (max_chars), a positive number
    (max_latency_ms), or null (json_valid)."""

    kind: Annotated[str, _documented(enum=list(ASSERTION_KINDS))]
    value: Any = None


VersionOrLabel = (
    Annotated[int, Meta(ge=1, le=MAX_VERSION)]
    | Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
)


class PromptTestIn(Struct, forbid_unknown_fields=True):
    """Run versions (numbers, labels or ``latest``) and/or a draft against sample inputs:
    up to 20 cases (versions × inputs) run at once (201); more, up to 500, or ``job``
    true, are a job run by a worker (202)."""

    inputs: Annotated[list[TestInput], Meta(min_length=1, max_length=MAX_SUITE_INPUTS)]
    versions: Annotated[list[VersionOrLabel], Meta(max_length=MAX_VERSIONS)] = []
    draft: TestDraft | None = None
    assertions: Annotated[list[AssertionIn], Meta(max_length=MAX_ASSERTIONS)] = []
    settings: SettingsIn = msgspec.field(default_factory=SettingsIn)
    reason: Reason = ""
    job: bool = False


# -- responses ----------------------------------------------------------------------------


class SettingsOut(Struct):
    temperature: float
    max_tokens: int
    top_p: float | None
    stop: list[str]
    seed: int | None


class RunningPrompt(Struct):
    """The prompt a role runs and its version labelled ``production`` (null: none yet)."""

    id: UUID
    name: str
    label: str
    version: int | None


class FieldWarning(Struct):
    """Allowed but worth a look: a declared variable neither template uses; a role's
    ``max_tokens`` over the context length of the model its reference names now."""

    field: str
    message: str


class RegistryTarget(Struct):
    """The registry version a registry reference names (now, or at ``as_of``)."""

    model_id: UUID
    model_name: str
    version: int
    # the version's ``parameters.context_length`` (None: it states none; the provider's
    # model then decides, checked when the role runs)
    context_length: int | None = None


class RoleOut(Struct, kw_only=True):
    role: str
    name: str
    description: str
    model: str
    settings: SettingsOut
    prompt_id: UUID | None
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str
    require_suite_pass: bool = False
    prompt: RunningPrompt | None = None
    registry_model: RegistryTarget | None = None
    warnings: list[FieldWarning] = []


class RoleDetail(RoleOut, kw_only=True):
    """One role; ``config_version`` is the configuration's version (the ETag)."""

    config_version: int
    as_of: datetime | None = None


class ConfigOut(Struct):
    """Every role; ``version`` is the configuration's version (the ETag, 0 before any role)."""

    version: int
    roles: list[RoleOut]
    as_of: datetime | None = None


class ConfigChanged(Struct):
    version: int
    changed: list[str]
    roles: list[RoleOut]


class FieldChange(Struct):
    before: Any
    after: Any


class RoleHistoryEntry(Struct):
    sequence: int
    action: Literal["added", "changed"]
    changes: dict[str, FieldChange]
    reason: str
    at: datetime
    by: str
    correlation_id: str | None
    config_version: int


class RoleHistoryPage(Struct):
    items: list[RoleHistoryEntry]
    next_cursor: str | None


class PromptOut(Struct, kw_only=True):
    id: UUID
    role: str
    name: str
    description: str
    version: int
    latest_version: int | None
    labels: dict[str, int]
    created_at: datetime
    created_by: str
    updated_at: datetime


class PromptSummary(PromptOut, kw_only=True):
    latest_message: str | None = None
    latest_at: datetime | None = None
    latest_by: str | None = None


class PromptPage(Struct):
    items: list[PromptSummary]
    next_cursor: str | None


class PromptDetail(PromptOut, kw_only=True):
    as_of: datetime | None = None


class RunsOn(Struct):
    """What the version's model resolved to when it was committed (its lineage)."""

    ref: str
    provider: str | None
    provider_model: str | None
    registry_model_id: str | None
    registry_model_name: str | None
    registry_version: int | None
    context_length: int


class PromptVersionOut(Struct, kw_only=True):
    """A version; ``aggregate_version`` is the prompt's version (the ETag), ``version``
    the version's number."""

    prompt_id: UUID
    aggregate_version: int
    version: int
    system_template: str
    user_template: str
    variables: list[str]
    overrides: dict[str, Any]
    model: str | None
    runs_on: RunsOn
    content_hash: str
    message: str
    created_at: datetime
    created_by: str
    labels: list[str]
    warnings: list[FieldWarning] = []


class PromptVersionDetail(PromptVersionOut, kw_only=True):
    """With what it would run with now: its model (or the role's) and the role's current
    settings under its overrides."""

    effective_model: str
    effective_settings: SettingsOut


class VersionSummary(Struct):
    version: int
    message: str
    content_hash: str
    model: str | None
    registry_version: int | None
    created_at: datetime
    created_by: str
    labels: list[str]


class VersionPage(Struct):
    items: list[VersionSummary]
    next_cursor: str | None


class SettingChangeOut(Struct):
    name: str
    before: Any
    after: Any


class ModelChange(Struct):
    before: str | None
    after: str | None


class PromptDiffOut(Struct):
    prompt_id: UUID
    from_version: int
    to_version: int
    identical: bool
    system_diff: str
    user_diff: str
    variables_added: list[str]
    variables_removed: list[str]
    settings_changed: list[SettingChangeOut]
    model_changed: ModelChange | None


class LabelResult(Struct):
    prompt_id: UUID
    aggregate_version: int
    label: str
    version: int | None
    previous_version: int | None
    changed: bool
    labels: dict[str, int]


class LabelChangeOut(Struct):
    sequence: int
    label: str
    action: Literal["move", "rollback", "remove"]
    version: int | None
    previous_version: int | None
    reason: str
    at: datetime
    by: str
    correlation_id: str | None
    aggregate_version: int


class LabelHistoryPage(Struct):
    items: list[LabelChangeOut]
    next_cursor: str | None


class TestSubjectOut(Struct):
    """What ran: a version (``asked`` as the request named it) or the draft, on which
    model and with which settings (the role's, the version's overrides, the request's)."""

    version: int | None
    asked: int | str | None
    draft: bool
    content_hash: str
    model: str
    provider: str
    provider_model: str
    settings: SettingsOut


class AssertionResultOut(Struct):
    kind: str
    value: Any
    passed: bool
    detail: str


class TestCaseOut(Struct):
    """One version (or the draft) on one input; ``error`` when it could not run (a
    variable without a value), and then no output."""

    version: int | None
    draft: bool
    input: int
    input_name: str
    rendered_system: str | None
    rendered_user: str | None
    output: str | None
    latency_ms: float | None
    tokens_in: int | None
    tokens_out: int | None
    finish_reason: str | None
    model: str | None
    assertions: list[AssertionResultOut]
    passed: bool
    error: str | None


class TestInputOut(Struct):
    name: str
    values: dict[str, str]


class AssertionOut(Struct):
    kind: str
    value: Any


class PromptTestSummary(Struct, kw_only=True):
    id: UUID
    prompt_id: UUID
    role: str
    subjects: list[TestSubjectOut]
    total: int
    passed: int
    failed: int
    reason: str
    created_at: datetime
    created_by: str


class PromptTestDetail(PromptTestSummary, kw_only=True):
    """A run; ``aggregate_version`` is the run's version (the ETag: a run never changes)."""

    aggregate_version: int
    inputs: list[TestInputOut]
    assertions: list[AssertionOut]
    settings: dict[str, Any]
    cases: list[TestCaseOut]
    correlation_id: str | None


class PromptTestPage(Struct):
    items: list[PromptTestSummary]
    next_cursor: str | None
