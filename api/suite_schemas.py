"""Request and response bodies of saved prompt test suites and prompt test jobs (F11.4.3).

A suite holds what ``POST …/test`` takes besides the versions: ``inputs`` (variable values
with an optional name), ``assertions`` and request ``settings``; the domain names every bad
field in one 400 (``inputs[3].values``, ``assertions[1].value``, ``settings.top_p``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from msgspec import Meta, Struct

from api.assistant_schemas import (
    MAX_VERSION,
    AssertionIn,
    AssertionOut,
    Reason,
    SettingsIn,
    TestInput,
    TestInputOut,
    TestSubjectOut,
    VersionOrLabel,
)
from domain.assistant.prompt_runs import MAX_ASSERTIONS, MAX_VERSIONS
from domain.assistant.suites import MAX_SUITE_INPUTS

JobStatus = Literal["queued", "running", "completed", "failed", "stopped"]


class SuiteIn(Struct, forbid_unknown_fields=True):
    """The whole suite: 1–200 inputs, up to 20 assertions, settings over each version's."""

    inputs: Annotated[list[TestInput], Meta(min_length=1, max_length=MAX_SUITE_INPUTS)]
    assertions: Annotated[list[AssertionIn], Meta(max_length=MAX_ASSERTIONS)] = []
    settings: SettingsIn = msgspec.field(default_factory=SettingsIn)
    reason: Reason = ""
    expected_version: Annotated[int, Meta(ge=0, le=MAX_VERSION)] | None = None


class SuiteRunIn(Struct, forbid_unknown_fields=True):
    """Run the saved suite against versions (numbers, labels or ``latest``): more than 20
    cases (versions × inputs), or ``job`` true, is a job (202)."""

    versions: Annotated[list[VersionOrLabel], Meta(min_length=1, max_length=MAX_VERSIONS)]
    reason: Reason = ""
    job: bool = False


class SuiteRef(Struct):
    """The suite a run ran: its id, revision (1, 2, …) and content hash."""

    suite_id: UUID
    revision: int
    suite_hash: str


class SuiteRunOut(Struct):
    """The latest run of the suite against one version; ``current``: it ran the suite as
    it is now (the production gate counts only such a run, and only if it passed)."""

    version: int
    run_id: UUID
    suite_revision: int
    suite_hash: str
    current: bool
    total: int
    passed: int
    failed: int
    at: datetime
    by: str


class SuiteOut(Struct, kw_only=True):
    """A saved suite; ``version`` is the suite aggregate's version (the ETag)."""

    prompt_id: UUID
    id: UUID
    role: str
    version: int
    revision: int
    suite_hash: str
    inputs: list[TestInputOut]
    assertions: list[AssertionOut]
    settings: dict[str, Any]
    reason: str
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str
    changed: bool | None = None  # in a PUT's answer: false when nothing was appended


class PromptTestJobOut(Struct, kw_only=True):
    """A prompt test run made by a worker: ``done`` of ``total`` cases so far, and the run
    (``run_id``, ``run``) once ``completed``; ``error`` when ``failed``; ``stop_reason`` and
    ``stopped_by`` when ``stopped``. ``aggregate_version`` is the job's version (the ETag)."""

    id: UUID
    prompt_id: UUID
    role: str
    status: JobStatus
    subjects: list[TestSubjectOut]
    total: int
    done: int
    passed: int
    failed: int
    suite: SuiteRef | None
    reason: str
    attempt: int
    worker: str | None
    run_id: UUID | None
    run: str | None
    error: str | None
    stop_reason: str | None
    stopped_by: str | None
    requested_at: datetime
    requested_by: str
    started_at: datetime | None
    finished_at: datetime | None
    aggregate_version: int


class PromptTestJobPage(Struct):
    items: list[PromptTestJobOut]
    next_cursor: str | None
