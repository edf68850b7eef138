"""Assemble assistant responses from read-model rows, or from replayed aggregates (as_of).

The ``*_from_read_models`` functions read several tables: callers pass a connection in
one repeatable-read snapshot (``api.contract.snapshot``/``read_one``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from api.assistant_schemas import (
    ConfigChanged,
    ConfigOut,
    FieldChange,
    FieldWarning,
    LabelResult,
    ModelChange,
    PromptDetail,
    PromptDiffOut,
    PromptOut,
    PromptSummary,
    PromptTestDetail,
    PromptTestSummary,
    PromptVersionDetail,
    PromptVersionOut,
    RegistryTarget,
    RoleDetail,
    RoleHistoryEntry,
    RoleOut,
    RunningPrompt,
    RunsOn,
    SettingChangeOut,
    SettingsOut,
    VersionSummary,
)
from api.contract import jsonb
from application.assistant import effective_settings
from domain.assistant.config import AssistantConfig, Role
from domain.assistant.models import ModelRef, parse_model_ref, stated_context_length
from domain.assistant.prompt import Prompt, PromptVersion
from domain.assistant.prompt_runs import PromptTestRun
from domain.assistant.prompts import (
    PRODUCTION,
    ModelSettings,
    PromptContent,
    diff,
    template_warnings,
)
from projections import assistant as views


def settings_out(settings: ModelSettings | Mapping[str, Any]) -> SettingsOut:
    values = settings.as_dict() if isinstance(settings, ModelSettings) else dict(settings)
    return msgspec.convert(values, SettingsOut)


def settings_of(values: Mapping[str, Any]) -> ModelSettings:
    merged = {**ModelSettings().as_dict(), **values}
    merged["stop"] = tuple(merged["stop"])
    return ModelSettings(**merged)


# -- roles --------------------------------------------------------------------------------


def role_out(role: Role, **extra: Any) -> RoleOut:
    return RoleOut(
        role=role.key,
        name=role.name,
        description=role.description,
        model=role.model,
        settings=settings_out(role.settings),
        prompt_id=UUID(role.prompt_id) if role.prompt_id else None,
        created_at=datetime.fromisoformat(role.created_at),
        created_by=role.created_by,
        updated_at=datetime.fromisoformat(role.updated_at),
        updated_by=role.updated_by,
        require_suite_pass=role.require_suite_pass,
        warnings=settings_warnings(role.settings.as_dict(), extra.get("registry_model")),
        **extra,
    )


def role_detail(
    shown: RoleOut, config: AssistantConfig, as_of: datetime | None = None
) -> RoleDetail:
    return RoleDetail(**msgspec.structs.asdict(shown), config_version=config.version, as_of=as_of)


def config_changed(shown: ConfigOut, changed: Sequence[str]) -> ConfigChanged:
    return ConfigChanged(version=shown.version, changed=list(changed), roles=shown.roles)


def _role_from_row(row: Any, **extra: Any) -> RoleOut:
    settings = jsonb(row["settings"])
    return RoleOut(
        role=row["role"],
        name=row["name"],
        description=row["description"],
        model=row["model"],
        settings=settings_out(settings),
        prompt_id=row["prompt_id"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
        require_suite_pass=row["require_suite_pass"],
        warnings=settings_warnings(settings, extra.get("registry_model")),
        **extra,
    )


def _registry_name(model: str) -> str | None:
    ref = parse_model_ref(model)
    return ref.name if isinstance(ref, ModelRef) and ref.is_registry else None


def _target(model: str, found: Mapping[str, Any]) -> RegistryTarget | None:
    """What a registry reference names now, from the registry's read models."""
    ref = parse_model_ref(model)
    if not isinstance(ref, ModelRef) or not ref.is_registry or ref.name not in found:
        return None
    row = found[ref.name]
    number = ref.version if ref.environment is None else jsonb(row["active"]).get(ref.environment)
    if number is None or number not in row["versions"]:
        return None
    lengths = jsonb(row["context_lengths"]) or {}
    return RegistryTarget(
        model_id=row["id"],
        model_name=row["name"],
        version=number,
        context_length=stated_context_length({"context_length": lengths.get(str(number))}),
    )


def settings_warnings(
    settings: Mapping[str, Any], target: RegistryTarget | None
) -> list[FieldWarning]:
    """A role's ``max_tokens`` over the context length of the registry version its
    reference names now: allowed when the role was saved, it may no longer be once
    another version is deployed (the role's calls are refused until it is lowered)."""
    if target is None or target.context_length is None:
        return []
    limit = target.context_length
    if settings["max_tokens"] <= limit:
        return []
    return [
        FieldWarning(
            "settings.max_tokens",
            f"{settings['max_tokens']} is over the context length {limit} of "
            f"{target.model_name} version {target.version}, which the role's model names "
            "now: completions and tests of the role are refused until it is lowered",
        )
    ]


def _running(prompt_id: UUID | None, prompts: Mapping[UUID, Any]) -> RunningPrompt | None:
    row = prompts.get(prompt_id) if prompt_id is not None else None
    if row is None:
        return None
    production = jsonb(row["labels"]).get(PRODUCTION)
    return RunningPrompt(id=row["id"], name=row["name"], label=PRODUCTION, version=production)


async def _roles_from_read_models(conn: asyncpg.Connection, rows: Sequence[Any]) -> list[RoleOut]:
    prompts = await views.running_prompts(conn, [r["prompt_id"] for r in rows if r["prompt_id"]])
    names = [n for n in (_registry_name(r["model"]) for r in rows) if n is not None]
    found = await views.registry_targets(conn, names) if names else {}
    return [
        _role_from_row(
            r, prompt=_running(r["prompt_id"], prompts), registry_model=_target(r["model"], found)
        )
        for r in rows
    ]


async def config_from_read_models(conn: asyncpg.Connection) -> ConfigOut:
    version = await views.config_version(conn)
    return ConfigOut(
        version=version, roles=await _roles_from_read_models(conn, await views.roles(conn))
    )


async def role_from_read_models(conn: asyncpg.Connection, key: str) -> RoleDetail | None:
    row = await views.role(conn, key)
    if row is None:
        return None
    [out] = await _roles_from_read_models(conn, [row])
    return RoleDetail(
        **msgspec.structs.asdict(out), config_version=await views.config_version(conn)
    )


def config_view(
    config: AssistantConfig | None,
    prompt_of: Callable[[str], Prompt | None],
    target_of: Callable[[str], dict[str, Any] | None],
    as_of: datetime | None = None,
) -> ConfigOut:
    """The configuration from its aggregate (replayed to ``as_of``, or as a command left
    it), with the version each role's prompt has labelled production and what its
    registry reference names, as ``prompt_of`` and ``target_of`` see them (then, or now)."""
    if config is None:
        return ConfigOut(version=0, roles=[], as_of=as_of)
    roles = [role_view(r, prompt_of, target_of) for _, r in sorted(config.roles.items())]
    return ConfigOut(version=config.version, roles=roles, as_of=as_of)


def role_view(
    role: Role,
    prompt_of: Callable[[str], Prompt | None],
    target_of: Callable[[str], dict[str, Any] | None],
) -> RoleOut:
    prompt = prompt_of(role.prompt_id) if role.prompt_id else None
    running = (
        RunningPrompt(
            id=prompt.id, name=prompt.name, label=PRODUCTION, version=prompt.labels.get(PRODUCTION)
        )
        if prompt is not None
        else None
    )
    target = target_of(role.model)
    return role_out(
        role,
        prompt=running,
        registry_model=msgspec.convert(target, RegistryTarget) if target else None,
    )


def history_from_row(row: Any) -> RoleHistoryEntry:
    changes = {
        name: FieldChange(change.get("before"), change.get("after"))
        for name, change in jsonb(row["changes"]).items()
    }
    return RoleHistoryEntry(
        sequence=row["sequence"],
        action=row["action"],
        changes=changes,
        reason=row["reason"],
        at=row["at"],
        by=row["by"],
        correlation_id=row["correlation_id"],
        config_version=row["config_version"],
    )


# -- prompts ------------------------------------------------------------------------------


def prompt_out(prompt: Prompt) -> PromptOut:
    return PromptOut(**_prompt_fields(prompt))


def prompt_detail(prompt: Prompt, as_of: datetime | None = None) -> PromptDetail:
    return PromptDetail(**_prompt_fields(prompt), as_of=as_of)


def _prompt_fields(prompt: Prompt) -> dict[str, Any]:
    return {
        "id": prompt.id,
        "role": prompt.role,
        "name": prompt.name,
        "description": prompt.description,
        "version": prompt.version,
        "latest_version": prompt.latest_version,
        "labels": dict(sorted(prompt.labels.items())),
        "created_at": prompt.created_on,
        "created_by": prompt.created_by,
        "updated_at": prompt.modified_on,
    }


_PROMPT_FIELDS = tuple(PromptOut.__struct_fields__)


def prompt_summary_from_row(row: Any) -> PromptSummary:
    values = {f: row[f] for f in _PROMPT_FIELDS}
    values["labels"] = jsonb(row["labels"])
    return PromptSummary(
        **values,
        latest_message=row["latest_message"],
        latest_at=row["latest_at"],
        latest_by=row["latest_by"],
    )


def prompt_detail_from_row(row: Any) -> PromptDetail:
    values = {f: row[f] for f in _PROMPT_FIELDS}
    values["labels"] = jsonb(row["labels"])
    return PromptDetail(**values)


def _labels_of(labels: Mapping[str, int], number: int) -> list[str]:
    return sorted(label for label, version in labels.items() if version == number)


def version_out(prompt: Prompt, version: PromptVersion) -> PromptVersionOut:
    content = version.content
    return PromptVersionOut(
        prompt_id=prompt.id,
        aggregate_version=prompt.version,
        version=version.number,
        system_template=content.system_template,
        user_template=content.user_template,
        variables=list(content.variables),
        overrides=dict(content.overrides),
        model=version.model,
        runs_on=msgspec.convert(version.runs_on, RunsOn),
        content_hash=version.content_hash,
        message=version.message,
        created_at=datetime.fromisoformat(version.created_at),
        created_by=version.created_by,
        labels=prompt.labels_of(version.number),
        warnings=[
            FieldWarning(w.field, w.message)
            for w in template_warnings(
                content.system_template, content.user_template, content.variables
            )
        ],
    )


def _content_of(row: Any) -> PromptContent:
    return PromptContent(
        row["system_template"],
        row["user_template"],
        tuple(jsonb(row["variables"])),
        jsonb(row["overrides"]),
    )


async def version_detail_from_read_models(
    conn: asyncpg.Connection, prompt_id: UUID, number: int
) -> PromptVersionDetail | None:
    prompt = await views.prompt(conn, prompt_id)
    row = await views.version(conn, prompt_id, number)
    if prompt is None or row is None:
        return None
    role = await views.role(conn, prompt["role"])
    content = _content_of(row)
    role_settings = settings_of(jsonb(role["settings"])) if role else ModelSettings()
    return PromptVersionDetail(
        prompt_id=prompt_id,
        aggregate_version=prompt["version"],
        version=number,
        system_template=content.system_template,
        user_template=content.user_template,
        variables=list(content.variables),
        overrides=dict(content.overrides),
        model=row["model"],
        runs_on=msgspec.convert(jsonb(row["runs_on"]), RunsOn),
        content_hash=row["content_hash"],
        message=row["message"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        labels=_labels_of(jsonb(prompt["labels"]), number),
        warnings=[
            FieldWarning(w.field, w.message)
            for w in template_warnings(
                content.system_template, content.user_template, content.variables
            )
        ],
        effective_model=row["model"] or (role["model"] if role else ""),
        effective_settings=settings_out(effective_settings(role_settings, content.overrides)),
    )


def version_summary_from_row(row: Any, labels: Mapping[str, int]) -> VersionSummary:
    return VersionSummary(
        version=row["number"],
        message=row["message"],
        content_hash=row["content_hash"],
        model=row["model"],
        registry_version=jsonb(row["runs_on"]).get("registry_version"),
        created_at=row["created_at"],
        created_by=row["created_by"],
        labels=_labels_of(labels, row["number"]),
    )


def diff_out(prompt_id: UUID, a: Any, b: Any) -> PromptDiffOut:
    """How version row ``b`` differs from version row ``a``."""
    changes = diff(_content_of(a), _content_of(b))
    model_changed = ModelChange(a["model"], b["model"]) if a["model"] != b["model"] else None
    return PromptDiffOut(
        prompt_id=prompt_id,
        from_version=a["number"],
        to_version=b["number"],
        identical=changes.identical and model_changed is None,
        system_diff=changes.system_diff,
        user_diff=changes.user_diff,
        variables_added=list(changes.variables_added),
        variables_removed=list(changes.variables_removed),
        settings_changed=[
            SettingChangeOut(c.name, c.before, c.after) for c in changes.settings_changed
        ],
        model_changed=model_changed,
    )


def label_result(prompt: Prompt, label: str, previous: int | None, changed: bool) -> LabelResult:
    return LabelResult(
        prompt_id=prompt.id,
        aggregate_version=prompt.version,
        label=label,
        version=prompt.labels.get(label),
        previous_version=previous,
        changed=changed,
        labels=dict(sorted(prompt.labels.items())),
    )


# -- prompt tests -------------------------------------------------------------------------


def test_detail(run: PromptTestRun) -> PromptTestDetail:
    """A run as its command recorded it (the POST's answer)."""
    return msgspec.convert(
        {
            "id": run.id,
            "prompt_id": UUID(run.prompt_id),
            "role": run.role,
            "subjects": run.subjects,
            "total": len(run.cases),
            "passed": run.passed,
            "failed": run.failed,
            "reason": run.reason,
            "created_at": run.created_on,
            "created_by": run.created_by,
            "aggregate_version": run.version,
            "inputs": run.inputs,
            "assertions": run.assertions,
            "settings": run.settings,
            "cases": run.cases,
            "correlation_id": run.correlation_id,
        },
        PromptTestDetail,
        from_attributes=True,
        builtin_types=(UUID, datetime),
    )


_SUMMARY_FIELDS = tuple(PromptTestSummary.__struct_fields__)
_JSON_FIELDS = ("subjects", "inputs", "assertions", "settings", "cases")


def _test_values(row: Any, fields: Sequence[str]) -> dict[str, Any]:
    return {f: jsonb(row[f]) if f in _JSON_FIELDS else row[f] for f in fields}


def test_summary_from_row(row: Any) -> PromptTestSummary:
    return msgspec.convert(
        _test_values(row, _SUMMARY_FIELDS), PromptTestSummary, builtin_types=(UUID, datetime)
    )


def test_detail_from_row(row: Any) -> PromptTestDetail:
    return msgspec.convert(
        _test_values(row, PromptTestDetail.__struct_fields__),
        PromptTestDetail,
        builtin_types=(UUID, datetime),
    )
