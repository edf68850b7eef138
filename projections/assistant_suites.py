"""Read models of saved prompt test suites, their runs, and prompt test jobs (F11.4.3).

- ``prompt_suites``: one row per prompt with a saved suite: inputs, assertions, settings
  (JSON), the suite hash and revision, the aggregate version (the suite's ETag), who
  created and last changed it, when and why.
- ``prompt_suite_verdicts``: which (prompt, version) each ``SuiteVerdict`` aggregate is of.
- ``prompt_suite_runs``: one row per run of a saved suite against a version: the run, the
  suite revision and hash it ran, cases total / passed / failed, who and when. The
  latest row per version is what the production gate reads (on the write side, from the
  ``SuiteVerdict`` aggregates; this table shows the same).
- ``prompt_test_jobs``: one row per ``PromptTestJob``: status, cases done of the total,
  passed and failed so far, the attempt and worker, the run it recorded, why it failed or
  who stopped it and why.
  The job queue fills itself from the rows still ``queued`` or ``running`` (kind
  ``prompt_test``, ``infrastructure.job_queue``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

import asyncpg
import msgspec

from projections.events import Event
from projections.writer import OrderedWriter

_encode = msgspec.json.Encoder(order="deterministic").encode


def _jsonb(value: Any) -> str:
    return _encode(value).decode()


def _by(e: Event) -> str:
    return e.meta.get("principal", "unknown")


class AssistantSuiteViews:
    name: ClassVar[str] = "assistant_suites"
    contexts: ClassVar[tuple[str, ...]] = ("assistant",)
    tables: ClassVar[Mapping[str, Sequence[str]]] = {
        "prompt_suites": (
            """
            CREATE TABLE {prompt_suites} (
                prompt_id uuid PRIMARY KEY,
                id uuid NOT NULL UNIQUE,
                role text NOT NULL,
                inputs jsonb NOT NULL,
                assertions jsonb NOT NULL,
                settings jsonb NOT NULL,
                suite_hash text NOT NULL,
                revision integer NOT NULL,
                reason text NOT NULL,
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                updated_at timestamptz NOT NULL,
                updated_by text NOT NULL,
                correlation_id text,
                version integer NOT NULL,
                position bigint NOT NULL
            )
            """,
        ),
        "prompt_suite_verdicts": (
            """
            CREATE TABLE {prompt_suite_verdicts} (
                id uuid PRIMARY KEY,
                prompt_id uuid NOT NULL,
                version integer NOT NULL
            )
            """,
        ),
        "prompt_suite_runs": (
            """
            CREATE TABLE {prompt_suite_runs} (
                run_id uuid PRIMARY KEY,
                prompt_id uuid NOT NULL,
                version integer NOT NULL,
                suite_revision integer NOT NULL,
                suite_hash text NOT NULL,
                total integer NOT NULL,
                passed integer NOT NULL,
                failed integer NOT NULL,
                at timestamptz NOT NULL,
                by text NOT NULL,
                position bigint NOT NULL
            )
            """,
            "CREATE INDEX ON {prompt_suite_runs} (prompt_id, version, position DESC)",
        ),
        "prompt_test_jobs": (
            """
            CREATE TABLE {prompt_test_jobs} (
                id uuid PRIMARY KEY,
                prompt_id uuid NOT NULL,
                role text NOT NULL,
                status text NOT NULL,
                subjects jsonb NOT NULL,
                total integer NOT NULL,
                done integer NOT NULL DEFAULT 0,
                passed integer NOT NULL DEFAULT 0,
                failed integer NOT NULL DEFAULT 0,
                suite jsonb,
                reason text NOT NULL,
                attempt integer NOT NULL DEFAULT 0,
                worker text,
                run_id uuid,
                error text,
                stop_reason text,
                stopped_by text,
                requested_at timestamptz NOT NULL,
                requested_by text NOT NULL,
                correlation_id text,
                started_at timestamptz,
                finished_at timestamptz,
                version integer NOT NULL,
                position bigint NOT NULL
            )
            """,
            "CREATE INDEX ON {prompt_test_jobs} (prompt_id, position DESC)",
        ),
    }

    async def apply(
        self, conn: asyncpg.Connection, tables: Mapping[str, str], events: Sequence[Event]
    ) -> None:
        out = OrderedWriter()
        for e in events:
            handler = _HANDLERS.get(e.type)
            if handler is not None:
                handler(out, tables, e)
        await out.flush(conn)


def _suite_created(out: OrderedWriter, t: Mapping[str, str], e: Event) -> None:
    out.add(
        f"INSERT INTO {t['prompt_suites']} (prompt_id, id, role, inputs, assertions, settings, "
        "suite_hash, revision, reason, created_at, created_by, updated_at, updated_by, "
        "correlation_id, version, position) VALUES ($1, $2, $3, '[]', '[]', '{}', '', 0, '', "
        "$4, $5, $4, $5, $6, $7, $8)",
        UUID(e.data["prompt_id"]),
        e.aggregate_id,
        e.data["role"],
        e.timestamp,
        _by(e),
        e.meta.get("correlation_id"),
        e.version,
        e.position,
    )


def _suite_saved(out: OrderedWriter, t: Mapping[str, str], e: Event) -> None:
    d = e.data
    out.add(
        f"UPDATE {t['prompt_suites']} SET inputs = $2::jsonb, assertions = $3::jsonb, "
        "settings = $4::jsonb, suite_hash = $5, revision = $6, reason = $7, updated_at = $8, "
        "updated_by = $9, correlation_id = $10, version = $11, position = $12 WHERE id = $1",
        e.aggregate_id,
        _jsonb(d["inputs"]),
        _jsonb(d["assertions"]),
        _jsonb(d["settings"]),
        d["suite_hash"],
        d["revision"],
        d["reason"],
        e.timestamp,
        _by(e),
        e.meta.get("correlation_id"),
        e.version,
        e.position,
    )


def _verdict_created(out: OrderedWriter, t: Mapping[str, str], e: Event) -> None:
    out.add(
        f"INSERT INTO {t['prompt_suite_verdicts']} (id, prompt_id, version) VALUES ($1, $2, $3) "
        "ON CONFLICT (id) DO NOTHING",
        e.aggregate_id,
        UUID(e.data["prompt_id"]),
        e.data["version"],
    )


def _verdict_recorded(out: OrderedWriter, t: Mapping[str, str], e: Event) -> None:
    d = e.data
    out.add(
        f"INSERT INTO {t['prompt_suite_runs']} (run_id, prompt_id, version, suite_revision, "
        "suite_hash, total, passed, failed, at, by, position) SELECT $2, prompt_id, version, "
        f"$3, $4, $5, $6, $7, $8, $9, $10 FROM {t['prompt_suite_verdicts']} WHERE id = $1 "
        "ON CONFLICT (run_id) DO NOTHING",
        e.aggregate_id,
        UUID(d["run_id"]),
        d["suite_revision"],
        d["suite_hash"],
        d["total"],
        d["passed"],
        d["failed"],
        e.timestamp,
        _by(e),
        e.position,
    )


def _job_requested(out: OrderedWriter, t: Mapping[str, str], e: Event) -> None:
    d = e.data
    out.add(
        f"INSERT INTO {t['prompt_test_jobs']} (id, prompt_id, role, status, subjects, total, "
        "suite, reason, requested_at, requested_by, correlation_id, version, position) "
        "VALUES ($1, $2, $3, 'queued', $4::jsonb, $5, $6::jsonb, $7, $8, $9, $10, $11, $12)",
        e.aggregate_id,
        UUID(d["prompt_id"]),
        d["role"],
        _jsonb([step["subject"] for step in d["plan"]]),
        len(d["plan"]) * len(d["inputs"]),
        None if d.get("suite") is None else _jsonb(d["suite"]),
        d["reason"],
        e.timestamp,
        _by(e),
        e.meta.get("correlation_id"),
        e.version,
        e.position,
    )


def _job_touch(
    out: OrderedWriter, t: Mapping[str, str], e: Event, assignments: str, *args: Any
) -> None:
    out.add(
        f"UPDATE {t['prompt_test_jobs']} SET version = $2, position = $3, {assignments} "
        "WHERE id = $1",
        e.aggregate_id,
        e.version,
        e.position,
        *args,
    )


def _job_started(out: OrderedWriter, t: Mapping[str, str], e: Event) -> None:
    # a takeover starts again from the cases the earlier attempts recorded (kept)
    _job_touch(
        out,
        t,
        e,
        "status = 'running', attempt = $4, worker = $5, started_at = coalesce(started_at, $6)",
        e.data["attempt"],
        e.data["worker"],
        e.timestamp,
    )


def _job_progress(out: OrderedWriter, t: Mapping[str, str], e: Event) -> None:
    cases = e.data["cases"]
    passed = sum(1 for case in cases if case["passed"])
    _job_touch(
        out,
        t,
        e,
        "done = done + $4, passed = passed + $5, failed = failed + $6",
        len(cases),
        passed,
        len(cases) - passed,
    )


def _job_completed(out: OrderedWriter, t: Mapping[str, str], e: Event) -> None:
    _job_touch(
        out,
        t,
        e,
        "status = 'completed', run_id = $4, finished_at = $5",
        UUID(e.data["run_id"]),
        e.timestamp,
    )


def _job_failed(out: OrderedWriter, t: Mapping[str, str], e: Event) -> None:
    _job_touch(
        out,
        t,
        e,
        "status = 'failed', error = $4, finished_at = $5",
        e.data["reason"],
        e.timestamp,
    )


def _job_stopped(out: OrderedWriter, t: Mapping[str, str], e: Event) -> None:
    _job_touch(
        out,
        t,
        e,
        "status = 'stopped', stop_reason = $4, stopped_by = $5, finished_at = $6",
        e.data["reason"],
        _by(e),
        e.timestamp,
    )


_HANDLERS = {
    "PromptSuite.Created": _suite_created,
    "PromptSuite.Saved": _suite_saved,
    "SuiteVerdict.Created": _verdict_created,
    "SuiteVerdict.Recorded": _verdict_recorded,
    "PromptTestJob.Requested": _job_requested,
    "PromptTestJob.Started": _job_started,
    "PromptTestJob.Progress": _job_progress,
    "PromptTestJob.Completed": _job_completed,
    "PromptTestJob.Failed": _job_failed,
    "PromptTestJob.Stopped": _job_stopped,
}

# -- queries ------------------------------------------------------------------------------

SUITE_COLUMNS = (
    "prompt_id, id, role, inputs, assertions, settings, suite_hash, revision, reason, "
    "created_at, created_by, updated_at, updated_by, correlation_id, version"
)
JOB_COLUMNS = (
    "id, prompt_id, role, status, subjects, total, done, passed, failed, suite, reason, "
    "attempt, worker, run_id, error, stop_reason, stopped_by, requested_at, requested_by, "
    "correlation_id, started_at, finished_at, version"
)


async def suite(conn: asyncpg.Connection, prompt_id: UUID) -> asyncpg.Record | None:
    """The prompt's saved suite (None before its first save)."""
    return await conn.fetchrow(
        f"SELECT {SUITE_COLUMNS} FROM rm_prompt_suites WHERE prompt_id = $1 AND revision > 0",
        prompt_id,
    )


async def latest_runs(conn: asyncpg.Connection, prompt_id: UUID) -> list[asyncpg.Record]:
    """The latest run of the saved suite against each version, by version."""
    return await conn.fetch(
        "SELECT DISTINCT ON (version) run_id, version, suite_revision, suite_hash, total, "
        "passed, failed, at, by FROM rm_prompt_suite_runs WHERE prompt_id = $1 "
        "ORDER BY version, position DESC",
        prompt_id,
    )


async def test_job(conn: asyncpg.Connection, job_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {JOB_COLUMNS} FROM rm_prompt_test_jobs WHERE id = $1", job_id
    )


async def test_jobs(  # noqa: PLR0913
    conn: asyncpg.Connection,
    prompt_id: UUID,
    *,
    status: str | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
    newest_first: bool = False,
) -> list[asyncpg.Record]:
    """A prompt's test jobs by the time they were requested (then id), oldest or newest
    first, after the keyset ``after``. (Not by ``position``: it moves with each event.)"""
    op, direction = ("<", " DESC") if newest_first else (">", "")
    return await conn.fetch(
        f"SELECT {JOB_COLUMNS} FROM rm_prompt_test_jobs "
        "WHERE prompt_id = $1 AND ($2::text IS NULL OR status = $2) "
        f"AND ($3::timestamptz IS NULL OR (requested_at, id) {op} ($3, $4)) "
        f"ORDER BY requested_at{direction}, id{direction} LIMIT $5",
        prompt_id,
        status,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
