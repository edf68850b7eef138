"""Read models of the assistant context: roles and their history, prompts, versions, labels.

- ``assistant_config``: the configuration aggregate's version (the config's ETag).
- ``assistant_roles``: one row per role: model reference, settings, prompt, who changed it
  last and when.
- ``assistant_role_history``: one row per ``RoleAdded``/``RoleChanged``: each changed field
  before and after, the reason, who, when, the correlation id.
- ``prompts``: one row per prompt: role, name, aggregate version, latest version and the
  labels as a JSON map.
- ``prompt_versions``: one row per version: both templates, variables, overrides, model,
  what it ran on (and, for a registry model, its id and version in columns, which the
  registry's lineage graph reads), content hash, commit message, who and when.
- ``prompt_label_history``: every label move, rollback and removal, in order.
- ``prompt_test_runs``: one row per prompt test run (F11.4.3): what ran (subjects), the
  inputs, assertions, settings and every case as JSON, the counts of passed and failed
  cases, why, who and when. A run is one event and never changes.
- ``experiments``: one row per A/B experiment: its definition, status, winner; at most
  one running per role (a unique index, as the ``ExperimentSlot`` guarantees).
- ``experiment_units``: one row per exposed unit (an ``Exposure``): its variant, the
  number, sum and maximum of its outcomes. Exposures and outcomes that land in the log
  after their experiment's conclusion are left out, so results freeze at the conclusion.

Most of the log is edits made by people; exposures and outcomes are one event per unit.
Rows are written one statement at a time, in event order, batched by ``OrderedWriter``
(consecutive exposures are one ``executemany``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from uuid import UUID

import asyncpg
import msgspec

from projections.events import Event
from projections.writer import OrderedWriter

_encode = msgspec.json.Encoder(order="deterministic").encode


def _jsonb(value: Any) -> str:
    return _encode(value).decode()


def _uuid(value: str | None) -> UUID | None:
    return UUID(value) if value else None


class AssistantViews:
    name: ClassVar[str] = "assistant"
    contexts: ClassVar[tuple[str, ...]] = ("assistant",)
    tables: ClassVar[Mapping[str, Sequence[str]]] = {
        "assistant_config": (
            """
            CREATE TABLE {assistant_config} (
                id uuid PRIMARY KEY,
                version integer NOT NULL,
                updated_at timestamptz NOT NULL,
                position bigint NOT NULL
            )
            """,
        ),
        "assistant_roles": (
            """
            CREATE TABLE {assistant_roles} (
                role text PRIMARY KEY,
                name text NOT NULL,
                description text NOT NULL,
                model text NOT NULL,
                settings jsonb NOT NULL,
                prompt_id uuid,
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                updated_at timestamptz NOT NULL,
                updated_by text NOT NULL,
                config_version integer NOT NULL,
                require_suite_pass boolean NOT NULL DEFAULT false
            )
            """,
        ),
        "assistant_role_history": (
            """
            CREATE TABLE {assistant_role_history} (
                role text NOT NULL,
                sequence integer NOT NULL,
                action text NOT NULL,
                changes jsonb NOT NULL,
                reason text NOT NULL,
                at timestamptz NOT NULL,
                by text NOT NULL,
                correlation_id text,
                config_version integer NOT NULL,
                position bigint NOT NULL,
                PRIMARY KEY (role, sequence)
            )
            """,
        ),
        "prompts": (
            """
            CREATE TABLE {prompts} (
                id uuid PRIMARY KEY,
                role text NOT NULL,
                name text NOT NULL,
                description text NOT NULL,
                latest_version integer,
                labels jsonb NOT NULL,
                version integer NOT NULL,
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                updated_at timestamptz NOT NULL,
                position bigint NOT NULL
            )
            """,
            "CREATE UNIQUE INDEX ON {prompts} (role, name)",
        ),
        "prompt_versions": (
            """
            CREATE TABLE {prompt_versions} (
                prompt_id uuid NOT NULL,
                number integer NOT NULL,
                system_template text NOT NULL,
                user_template text NOT NULL,
                variables jsonb NOT NULL,
                overrides jsonb NOT NULL,
                model text,
                runs_on jsonb NOT NULL,
                registry_model_id uuid,
                registry_version integer,
                content_hash text NOT NULL,
                message text NOT NULL,
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                PRIMARY KEY (prompt_id, number)
            )
            """,
            "CREATE INDEX ON {prompt_versions} (registry_model_id) "
            "WHERE registry_model_id IS NOT NULL",
        ),
        "prompt_label_history": (
            """
            CREATE TABLE {prompt_label_history} (
                prompt_id uuid NOT NULL,
                sequence integer NOT NULL,
                label text NOT NULL,
                action text NOT NULL,
                version integer,
                previous_version integer,
                reason text NOT NULL,
                at timestamptz NOT NULL,
                by text NOT NULL,
                correlation_id text,
                aggregate_version integer NOT NULL,
                position bigint NOT NULL,
                PRIMARY KEY (prompt_id, sequence)
            )
            """,
            "CREATE INDEX ON {prompt_label_history} (prompt_id, label, sequence)",
        ),
        "prompt_test_runs": (
            """
            CREATE TABLE {prompt_test_runs} (
                id uuid PRIMARY KEY,
                prompt_id uuid NOT NULL,
                role text NOT NULL,
                subjects jsonb NOT NULL,
                inputs jsonb NOT NULL,
                assertions jsonb NOT NULL,
                settings jsonb NOT NULL,
                cases jsonb NOT NULL,
                total integer NOT NULL,
                passed integer NOT NULL,
                failed integer NOT NULL,
                reason text NOT NULL,
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                correlation_id text,
                aggregate_version integer NOT NULL,
                position bigint NOT NULL
            )
            """,
            "CREATE INDEX ON {prompt_test_runs} (prompt_id, position DESC)",
        ),
        "experiments": (
            """
            CREATE TABLE {experiments} (
                id uuid PRIMARY KEY,
                role text NOT NULL,
                status text NOT NULL,
                definition jsonb NOT NULL,
                reason text NOT NULL,
                winner integer,
                conclusion text,
                started_at timestamptz NOT NULL,
                started_by text NOT NULL,
                concluded_at timestamptz,
                concluded_by text,
                version integer NOT NULL,
                created_position bigint NOT NULL,
                position bigint NOT NULL
            )
            """,
            "CREATE INDEX ON {experiments} (created_position DESC)",
            "CREATE UNIQUE INDEX ON {experiments} (role) WHERE status = 'running'",
        ),
        "experiment_units": (
            """
            CREATE TABLE {experiment_units} (
                exposure_id uuid NOT NULL UNIQUE,
                experiment_id uuid NOT NULL,
                unit text NOT NULL,
                variant integer NOT NULL,
                prompt_version integer NOT NULL,
                exposed_at timestamptz NOT NULL,
                outcomes integer NOT NULL DEFAULT 0,
                outcome_sum double precision,
                outcome_max double precision,
                PRIMARY KEY (experiment_id, unit)
            )
            """,
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


def _by(e: Event) -> str:
    return e.meta.get("principal", "unknown")


def _config(out: OrderedWriter, t: Mapping[str, str], e: Event) -> None:
    out.add(
        f"INSERT INTO {t['assistant_config']} (id, version, updated_at, position) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET version = $2, "
        "updated_at = $3, position = $4",
        e.aggregate_id,
        e.version,
        e.timestamp,
        e.position,
    )


def _history(out: OrderedWriter, t: Mapping[str, str], e: Event, action: str, changes: Any) -> None:
    table = t["assistant_role_history"]
    out.add(
        f"INSERT INTO {table} (role, sequence, action, changes, reason, at, by, correlation_id, "
        f"config_version, position) VALUES ($1, (SELECT count(*) + 1 FROM {table} "
        "WHERE role = $1), $2, $3::jsonb, $4, $5, $6, $7, $8, $9)",
        e.data["role"],
        action,
        _jsonb(changes),
        e.data["reason"],
        e.timestamp,
        _by(e),
        e.meta.get("correlation_id"),
        e.version,
        e.position,
    )


def _started(out: OrderedWriter, t: Mapping[str, str], e: Event) -> None:
    _config(out, t, e)


def _role_added(out: OrderedWriter, t: Mapping[str, str], e: Event) -> None:
    d = e.data
    _config(out, t, e)
    out.add(
        f"INSERT INTO {t['assistant_roles']} (role, name, description, model, settings, "
        "prompt_id, created_at, created_by, updated_at, updated_by, config_version, "
        "require_suite_pass) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $7, $8, $9, $10)",
        d["role"],
        d["name"],
        d["description"],
        d["model"],
        _jsonb(d["settings"]),
        _uuid(d["prompt_id"]),
        e.timestamp,
        _by(e),
        e.version,
        bool(d.get("require_suite_pass", False)),
    )
    gate = bool(d.get("require_suite_pass", False))
    initial = {
        "model": d["model"],
        "prompt_id": d["prompt_id"],
        "require_suite_pass": gate,
        **d["settings"],
    }
    _history(out, t, e, "added", {k: {"before": None, "after": v} for k, v in initial.items()})


def _role_changed(out: OrderedWriter, t: Mapping[str, str], e: Event) -> None:
    d = e.data
    after = {name: change["after"] for name, change in d["changes"].items()}
    model = after.pop("model", None)
    prompt_changed = "prompt_id" in after
    prompt_id = after.pop("prompt_id", None)
    gate = after.pop("require_suite_pass", None)
    _config(out, t, e)
    out.add(
        f"UPDATE {t['assistant_roles']} SET model = coalesce($2, model), "
        "settings = settings || $3::jsonb, "
        "prompt_id = CASE WHEN $4 THEN $5 ELSE prompt_id END, updated_at = $6, "
        "updated_by = $7, config_version = $8, "
        "require_suite_pass = coalesce($9, require_suite_pass) WHERE role = $1",
        d["role"],
        model,
        _jsonb(after),
        prompt_changed,
        _uuid(prompt_id),
        e.timestamp,
        _by(e),
        e.version,
        gate,
    )
    _history(out, t, e, "changed", d["changes"])


def _prompt_created(out: OrderedWriter, t: Mapping[str, str], e: Event) -> None:
    d = e.data
    out.add(
        f"INSERT INTO {t['prompts']} (id, role, name, description, latest_version, labels, "
        "version, created_at, created_by, updated_at, position) "
        "VALUES ($1, $2, $3, $4, NULL, '{}'::jsonb, $5, $6, $7, $6, $8)",
        e.aggregate_id,
        d["role"],
        d["name"],
        d["description"],
        e.version,
        e.timestamp,
        _by(e),
        e.position,
    )


def _touch(
    out: OrderedWriter, t: Mapping[str, str], e: Event, assignments: str, *args: Any
) -> None:
    """Update the prompt's row: its version, time and position, and ``assignments``
    (their parameters from $5 on)."""
    out.add(
        f"UPDATE {t['prompts']} SET version = $2, updated_at = $3, position = $4"
        f"{', ' + assignments if assignments else ''} WHERE id = $1",
        e.aggregate_id,
        e.version,
        e.timestamp,
        e.position,
        *args,
    )


def _version_committed(out: OrderedWriter, t: Mapping[str, str], e: Event) -> None:
    d = e.data
    runs_on = d["runs_on"]
    out.add(
        f"INSERT INTO {t['prompt_versions']} (prompt_id, number, system_template, "
        "user_template, variables, overrides, model, runs_on, registry_model_id, "
        "registry_version, content_hash, message, created_at, created_by) VALUES ($1, $2, $3, "
        "$4, $5::jsonb, $6::jsonb, $7, $8::jsonb, $9, $10, $11, $12, $13, $14)",
        e.aggregate_id,
        d["version"],
        d["system_template"],
        d["user_template"],
        _jsonb(d["variables"]),
        _jsonb(d["overrides"]),
        d["model"],
        _jsonb(runs_on),
        _uuid(runs_on.get("registry_model_id")),
        runs_on.get("registry_version"),
        d["content_hash"],
        d["message"],
        e.timestamp,
        _by(e),
    )
    _touch(out, t, e, "latest_version = $5", d["version"])


def _label_history(out: OrderedWriter, t: Mapping[str, str], e: Event, action: str) -> None:
    d = e.data
    table = t["prompt_label_history"]
    out.add(
        f"INSERT INTO {table} (prompt_id, sequence, label, action, version, previous_version, "
        f"reason, at, by, correlation_id, aggregate_version, position) VALUES ($1, (SELECT "
        f"count(*) + 1 FROM {table} WHERE prompt_id = $1), $2, $3, $4, $5, $6, $7, $8, $9, "
        "$10, $11)",
        e.aggregate_id,
        d["label"],
        action,
        d.get("version"),
        d["previous_version"],
        d["reason"],
        e.timestamp,
        _by(e),
        e.meta.get("correlation_id"),
        e.version,
        e.position,
    )


def _label_moved(out: OrderedWriter, t: Mapping[str, str], e: Event) -> None:
    d = e.data
    _touch(
        out, t, e, "labels = labels || jsonb_build_object($5::text, $6::int)", d["label"],
        d["version"],
    )  # fmt: skip
    _label_history(out, t, e, d["action"])


def _label_removed(out: OrderedWriter, t: Mapping[str, str], e: Event) -> None:
    _touch(out, t, e, "labels = labels - $5::text", e.data["label"])
    _label_history(out, t, e, "remove")


def _test_recorded(out: OrderedWriter, t: Mapping[str, str], e: Event) -> None:
    d = e.data
    passed = sum(1 for case in d["cases"] if case["passed"])
    out.add(
        f"INSERT INTO {t['prompt_test_runs']} (id, prompt_id, role, subjects, inputs, "
        "assertions, settings, cases, total, passed, failed, reason, created_at, created_by, "
        "correlation_id, aggregate_version, position) VALUES ($1, $2, $3, $4::jsonb, "
        "$5::jsonb, $6::jsonb, $7::jsonb, $8::jsonb, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        e.aggregate_id,
        UUID(d["prompt_id"]),
        d["role"],
        _jsonb(d["subjects"]),
        _jsonb(d["inputs"]),
        _jsonb(d["assertions"]),
        _jsonb(d["settings"]),
        _jsonb(d["cases"]),
        len(d["cases"]),
        passed,
        len(d["cases"]) - passed,
        d["reason"],
        e.timestamp,
        _by(e),
        e.meta.get("correlation_id"),
        e.version,
        e.position,
    )


def _experiment_touch(
    out: OrderedWriter, t: Mapping[str, str], e: Event, assignments: str = "", *args: Any
) -> None:
    out.add(
        f"UPDATE {t['experiments']} SET version = $2, position = $3"
        f"{', ' + assignments if assignments else ''} WHERE id = $1",
        e.aggregate_id,
        e.version,
        e.position,
        *args,
    )


def _experiment_started(out: OrderedWriter, t: Mapping[str, str], e: Event) -> None:
    d = e.data
    out.add(
        f"INSERT INTO {t['experiments']} (id, role, status, definition, reason, started_at, "
        "started_by, version, created_position, position) "
        "VALUES ($1, $2, 'running', $3::jsonb, $4, $5, $6, $7, $8, $8)",
        e.aggregate_id,
        d["definition"]["role"],
        _jsonb(d["definition"]),
        d["reason"],
        e.timestamp,
        _by(e),
        e.version,
        e.position,
    )


def _exposed(out: OrderedWriter, t: Mapping[str, str], e: Event) -> None:
    """A unit's exposure, counted only while its experiment runs in the log's order (an
    exposure that raced the conclusion lands after it and is left out)."""
    d = e.data
    out.add(
        f"INSERT INTO {t['experiment_units']} (exposure_id, experiment_id, unit, variant, "
        "prompt_version, exposed_at) SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 "
        f"FROM {t['experiments']} WHERE id = $2 AND status = 'running') "
        "ON CONFLICT DO NOTHING",
        e.aggregate_id,
        UUID(d["experiment_id"]),
        d["unit"],
        d["variant"],
        d["prompt_version"],
        e.timestamp,
    )


def _outcome_recorded(out: OrderedWriter, t: Mapping[str, str], e: Event) -> None:
    """A unit's outcome, counted only while its experiment runs (as ``_exposed``)."""
    out.add(
        f"UPDATE {t['experiment_units']} u SET outcomes = u.outcomes + 1, "
        "outcome_sum = coalesce(u.outcome_sum, 0) + $2, "
        "outcome_max = greatest(u.outcome_max, $2) "
        f"FROM {t['experiments']} x WHERE u.exposure_id = $1 AND x.id = u.experiment_id "
        "AND x.status = 'running'",
        e.aggregate_id,
        float(e.data["value"]),
    )


def _experiment_concluded(out: OrderedWriter, t: Mapping[str, str], e: Event) -> None:
    d = e.data
    _experiment_touch(
        out, t, e,
        "status = 'concluded', winner = $4, conclusion = $5, concluded_at = $6, "
        "concluded_by = $7",
        d["winner"], d["reason"], e.timestamp, _by(e),
    )  # fmt: skip


_HANDLERS = {
    "AssistantConfig.Started": _started,
    "AssistantConfig.RoleAdded": _role_added,
    "AssistantConfig.RoleChanged": _role_changed,
    "Prompt.Created": _prompt_created,
    "Prompt.VersionCommitted": _version_committed,
    "Prompt.LabelMoved": _label_moved,
    "Prompt.LabelRemoved": _label_removed,
    "PromptTestRun.Recorded": _test_recorded,
    "Experiment.Started": _experiment_started,
    "Exposure.Exposed": _exposed,
    "Exposure.OutcomeRecorded": _outcome_recorded,
    "Experiment.Concluded": _experiment_concluded,
}

# -- queries ------------------------------------------------------------------------------

ROLE_COLUMNS = (
    "role, name, description, model, settings, prompt_id, created_at, created_by, "
    "updated_at, updated_by, config_version, require_suite_pass"
)
PROMPT_COLUMNS = (
    "id, role, name, description, latest_version, labels, version, created_at, created_by, "
    "updated_at"
)
VERSION_COLUMNS = (
    "prompt_id, number, system_template, user_template, variables, overrides, model, runs_on, "
    "content_hash, message, created_at, created_by"
)


async def config_version(conn: asyncpg.Connection) -> int:
    """The configuration's aggregate version (0 before the first role)."""
    return int(await conn.fetchval("SELECT max(version) FROM rm_assistant_config") or 0)


async def roles(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {ROLE_COLUMNS} FROM rm_assistant_roles ORDER BY role")


async def role(conn: asyncpg.Connection, key: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {ROLE_COLUMNS} FROM rm_assistant_roles WHERE role = $1", key
    )


async def role_history(
    conn: asyncpg.Connection, key: str, after_sequence: int, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT sequence, action, changes, reason, at, by, correlation_id, config_version "
        "FROM rm_assistant_role_history WHERE role = $1 AND sequence > $2 "
        "ORDER BY sequence LIMIT $3",
        key,
        after_sequence,
        limit,
    )


async def running_prompts(
    conn: asyncpg.Connection, prompt_ids: Sequence[UUID]
) -> dict[UUID, asyncpg.Record]:
    """The prompts roles run, with their names and labels."""
    rows = await conn.fetch(
        "SELECT id, name, labels, latest_version FROM rm_prompts WHERE id = ANY($1::uuid[])",
        list(prompt_ids),
    )
    return {row["id"]: row for row in rows}


async def list_prompts(
    conn: asyncpg.Connection, *, role: str | None, after: tuple[str, str] | None, limit: int
) -> list[asyncpg.Record]:
    """Prompts by role and name, with their latest version's message, time and author."""
    return await conn.fetch(
        "SELECT p.id, p.role, p.name, p.description, p.latest_version, p.labels, p.version, "
        "p.created_at, p.created_by, p.updated_at, v.message AS latest_message, "
        "v.created_at AS latest_at, v.created_by AS latest_by FROM rm_prompts p "
        "LEFT JOIN rm_prompt_versions v ON v.prompt_id = p.id AND v.number = p.latest_version "
        "WHERE ($1::text IS NULL OR p.role = $1) AND ($2::text IS NULL OR (p.role, p.name) > "
        "($2, $3)) ORDER BY p.role, p.name LIMIT $4",
        role,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )


async def prompt(conn: asyncpg.Connection, prompt_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {PROMPT_COLUMNS} FROM rm_prompts WHERE id = $1", prompt_id)


async def versions(
    conn: asyncpg.Connection, prompt_id: UUID, after_number: int, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {VERSION_COLUMNS} FROM rm_prompt_versions WHERE prompt_id = $1 AND number > $2 "
        "ORDER BY number LIMIT $3",
        prompt_id,
        after_number,
        limit,
    )


async def version(conn: asyncpg.Connection, prompt_id: UUID, number: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {VERSION_COLUMNS} FROM rm_prompt_versions WHERE prompt_id = $1 AND number = $2",
        prompt_id,
        number,
    )


async def label_history(
    conn: asyncpg.Connection,
    prompt_id: UUID,
    *,
    label: str | None,
    after_sequence: int,
    limit: int,
) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT sequence, label, action, version, previous_version, reason, at, by, "
        "correlation_id, aggregate_version FROM rm_prompt_label_history WHERE prompt_id = $1 "
        "AND ($2::text IS NULL OR label = $2) AND sequence > $3 ORDER BY sequence LIMIT $4",
        prompt_id,
        label,
        after_sequence,
        limit,
    )


TEST_RUN_COLUMNS = (
    "id, prompt_id, role, subjects, total, passed, failed, reason, created_at, created_by, position"
)


async def test_runs(
    conn: asyncpg.Connection, prompt_id: UUID, before_position: int | None, limit: int
) -> list[asyncpg.Record]:
    """A prompt's test runs, newest first (before ``before_position`` when given)."""
    return await conn.fetch(
        f"SELECT {TEST_RUN_COLUMNS} FROM rm_prompt_test_runs WHERE prompt_id = $1 AND "
        "($2::bigint IS NULL OR position < $2) ORDER BY position DESC LIMIT $3",
        prompt_id,
        before_position,
        limit,
    )


async def test_run(conn: asyncpg.Connection, run_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {TEST_RUN_COLUMNS}, inputs, assertions, settings, cases, correlation_id, "
        "aggregate_version FROM rm_prompt_test_runs WHERE id = $1",
        run_id,
    )


async def prompts_running_on(conn: asyncpg.Connection, model_id: UUID) -> list[asyncpg.Record]:
    """Prompt versions whose model resolved to a version of registry model ``model_id``."""
    return await conn.fetch(
        "SELECT v.prompt_id, v.number, v.registry_version, v.runs_on->>'ref' AS ref, p.role, "
        "p.name, p.labels FROM rm_prompt_versions v JOIN rm_prompts p ON p.id = v.prompt_id "
        "WHERE v.registry_model_id = $1 ORDER BY p.role, p.name, v.number",
        model_id,
    )


async def registry_targets(
    conn: asyncpg.Connection, names_or_ids: Sequence[str]
) -> dict[str, asyncpg.Record]:
    """Registry LLM models by the ids or names references use, with their active version
    per environment (``active``), version numbers and each version's stated
    ``parameters.context_length`` (``context_lengths``), from the registry's read models."""
    rows = await conn.fetch(
        "SELECT m.id, m.name, m.active, ARRAY(SELECT v.version FROM rm_model_versions v "
        "WHERE v.model_id = m.id) AS versions, (SELECT jsonb_object_agg(v.version, "
        "v.parameters->'context_length') FROM rm_model_versions v WHERE v.model_id = m.id) "
        "AS context_lengths FROM rm_models m "
        "WHERE m.kind = 'llm' AND (m.name = ANY($1::text[]) OR m.id::text = ANY($1::text[]))",
        list(names_or_ids),
    )
    found: dict[str, asyncpg.Record] = {}
    for row in rows:
        found[row["name"]] = row
        found[str(row["id"])] = row
    return found


# -- experiments --------------------------------------------------------------------------

EXPERIMENT_COLUMNS = (
    "e.id, e.role, e.status, e.definition, e.reason, e.winner, e.conclusion, e.started_at, "
    "e.started_by, e.concluded_at, e.concluded_by, e.version, e.created_position, "
    "(SELECT count(*) FROM rm_experiment_units u WHERE u.experiment_id = e.id) AS exposed"
)


async def experiments(
    conn: asyncpg.Connection,
    *,
    role: str | None,
    status: str | None,
    before_position: int | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Experiments, newest first."""
    return await conn.fetch(
        f"SELECT {EXPERIMENT_COLUMNS} FROM rm_experiments e WHERE ($1::text IS NULL OR "
        "e.role = $1) AND ($2::text IS NULL OR e.status = $2) AND ($3::bigint IS NULL OR "
        "e.created_position < $3) ORDER BY e.created_position DESC LIMIT $4",
        role,
        status,
        before_position,
        limit,
    )


async def experiment(conn: asyncpg.Connection, experiment_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {EXPERIMENT_COLUMNS} FROM rm_experiments e WHERE e.id = $1", experiment_id
    )


RESOLUTION_SQL = """
SELECT r.model, r.settings, r.prompt_id,
       pv.number AS production_version, pv.overrides AS production_overrides,
       pv.model AS production_model,
       e.id AS experiment_id, e.definition,
       (SELECT jsonb_agg(jsonb_build_object('overrides', v.overrides, 'model', v.model)
                         ORDER BY x.i)
          FROM jsonb_array_elements(e.definition->'variants') WITH ORDINALITY AS x(variant, i)
          JOIN rm_prompt_versions v ON v.prompt_id = (x.variant->>'prompt_id')::uuid
                                   AND v.number = (x.variant->>'prompt_version')::int
       ) AS variant_versions,
       EXISTS (SELECT 1 FROM rm_experiment_units u
                WHERE u.experiment_id = e.id AND u.unit = $2) AS exposed
  FROM rm_assistant_roles r
  LEFT JOIN rm_prompts p ON p.id = r.prompt_id
  LEFT JOIN rm_prompt_versions pv
         ON pv.prompt_id = p.id AND pv.number = (p.labels->>'production')::int
  LEFT JOIN rm_experiments e ON e.role = r.role AND e.status = 'running'
 WHERE r.role = $1
"""


async def resolution(conn: asyncpg.Connection, role: str, unit: str) -> asyncpg.Record | None:
    """In one read: the role's model and settings; its prompt's ``production`` version
    (number, overrides, model); the running experiment of the role, if any, with its
    definition, each variant's version (overrides and model, in variant order) and
    whether ``unit`` is exposed in it. None for an unknown role."""
    return await conn.fetchrow(RESOLUTION_SQL, role, unit)


async def experiment_records(
    conn: asyncpg.Connection, experiment_id: UUID, metric: str
) -> list[asyncpg.Record]:
    """One row per exposed unit: ``unit_id``, ``variant`` and its reduced ``outcome``
    (null without one; a rate's the maximum, a score's the mean)."""
    reduced = "outcome_max" if metric == "rate" else "outcome_sum / nullif(outcomes, 0)"
    return await conn.fetch(
        f"SELECT unit AS unit_id, variant, {reduced} AS outcome FROM rm_experiment_units "
        "WHERE experiment_id = $1",
        experiment_id,
    )
