"""The assistant's configuration: its roles, each with a model, settings and the prompt it runs.

One aggregate, ``AssistantConfig`` (a single instance, ``CONFIG_ID``), holds every role:
the API shows the roles as one document (one ``ETag``) and a change of several roles is
one atomic command with one ``If-Match``. Roles are few (a handful to tens), so the
document stays small; the price is that concurrent edits of two different roles
conflict (409), which for a settings page is what the editor wants to hear.

A role (``trading-assistant``) has a display name and description, a model reference
(``domain.assistant.models``), ``ModelSettings`` and the prompt it runs (``prompt_id``,
whose ``production`` version is what runs). ``require_suite_pass`` (default false) gates
its prompts' ``production`` label on their saved test suites (``domain.assistant.suites``).
Every change is an event naming each changed field with its value before and after, and
the reason given: a role's history is the list of those events.

Checks needing I/O (resolving the model and its context length, the prompt belonging
to the role) are the application's; :func:`check_role_settings` and
:func:`check_patch` are the pure rules, named per field so that one answer lists every
bad field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from domain.assistant.models import MAX_TOKENS_BOUND
from domain.assistant.prompts import (
    FieldError,
    ModelSettings,
    invalid_fields,
    merge,
    validate_settings,
)
from domain.base import Aggregate
from domain.errors import ConflictError
from domain.metadata import EventMeta

CONFIG_ID: UUID = uuid5(NAMESPACE_URL, "aimm:assistant:config")
ROLE_KEY = re.compile(r"[a-z][a-z0-9-]{0,63}")
ROLE_KEY_PATTERN = r"^[a-z][a-z0-9-]{0,63}$"


class _Keep:
    """The default of a patch field that leaves the value as it is (``prompt_id`` may be
    set to None, so None cannot mean 'unchanged')."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()


@dataclass
class Role:
    key: str
    name: str
    description: str
    model: str
    settings: ModelSettings
    prompt_id: str | None
    created_at: str
    created_by: str
    updated_at: str
    updated_by: str
    require_suite_pass: bool = False

    def values(self) -> dict[str, Any]:
        """The role's changeable fields by name, as events carry them."""
        return {
            "model": self.model,
            "prompt_id": self.prompt_id,
            "require_suite_pass": self.require_suite_pass,
            **self.settings.as_dict(),
        }


@dataclass(frozen=True)
class RolePatch:
    """A change of one role: only the fields given change."""

    role: str
    model: str | None = None  # a new reference (None: unchanged; a role always has one)
    settings: Mapping[str, Any] = field(default_factory=dict)
    prompt_id: Any = KEEP  # str, None (runs no prompt) or KEEP
    require_suite_pass: bool | None = None  # None: unchanged


def check_role_key(key: object, field_name: str = "role") -> list[FieldError]:
    if not isinstance(key, str) or ROLE_KEY.fullmatch(key) is None:
        return [
            FieldError(
                field_name,
                f"{str(key)[:40]!r} is not a role key: a lowercase letter, then up to 63 "
                "lowercase letters, digits or '-'",
            )
        ]
    return []


def check_role_settings(
    settings: Mapping[str, Any], limit: int | None, prefix: str
) -> list[FieldError]:
    """Every bad field of (partial) settings; ``limit`` None: the model's bound is unknown
    (the model itself was refused and is named apart)."""
    return validate_settings(settings, limit or MAX_TOKENS_BOUND, prefix)


def check_patch(role: Role, patch: RolePatch, limit: int | None, prefix: str) -> list[FieldError]:
    """Every bad field of ``patch`` for ``role``; ``limit`` is the context length of the model
    the role will run (its new one when the patch changes it)."""
    errors = check_role_settings(patch.settings, limit, f"{prefix}settings.")
    kept = "max_tokens" not in patch.settings
    if patch.model is not None and kept and limit is not None and role.settings.max_tokens > limit:
        errors.append(
            FieldError(
                f"{prefix}settings.max_tokens",
                f"the role's max_tokens {role.settings.max_tokens} is more than {limit}, the "
                "context length of the new model: lower it in the same change",
            )
        )
    return errors


def settings_after(settings: ModelSettings, patch: Mapping[str, Any]) -> ModelSettings:
    """``settings`` with ``patch`` applied (checked again: never builds bad settings)."""
    return merge(settings, patch)


class AssistantConfig(Aggregate):
    """Every assistant role with its model, settings and prompt (one document)."""

    class Started(Aggregate.Created):
        pass

    class RoleAdded(Aggregate.Event):
        class_version = 2  # 2 added require_suite_pass
        role: str
        name: str
        description: str
        model: str
        settings: dict[str, Any]
        prompt_id: str | None
        reason: str
        require_suite_pass: bool

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["require_suite_pass"] = False

        def apply(self, aggregate: AssistantConfig) -> None:
            at, by = self.timestamp.isoformat(), self.meta.get("principal", "unknown")
            aggregate.roles[self.role] = Role(
                key=self.role,
                name=self.name,
                description=self.description,
                model=self.model,
                settings=_settings(self.settings),
                prompt_id=self.prompt_id,
                created_at=at,
                created_by=by,
                updated_at=at,
                updated_by=by,
                require_suite_pass=self.require_suite_pass,
            )

    class RoleChanged(Aggregate.Event):
        role: str
        changes: dict[str, dict[str, Any]]  # field -> {"before": …, "after": …}
        reason: str

        def apply(self, aggregate: AssistantConfig) -> None:
            role = aggregate.roles[self.role]
            after = {name: change["after"] for name, change in self.changes.items()}
            role.model = after.pop("model", role.model)
            role.prompt_id = after.pop("prompt_id", role.prompt_id)
            role.require_suite_pass = after.pop("require_suite_pass", role.require_suite_pass)
            if after:
                role.settings = _settings({**role.settings.as_dict(), **after})
            role.updated_at = self.timestamp.isoformat()
            role.updated_by = self.meta.get("principal", "unknown")

    def __init__(self, meta: EventMeta) -> None:
        self.roles: dict[str, Role] = {}

    @classmethod
    def start(cls) -> AssistantConfig:
        return cls._create(cls.Started, id=CONFIG_ID)

    def get_role(self, key: str) -> Role | None:
        return self.roles.get(key)

    def add_role(  # noqa: PLR0913
        self,
        *,
        key: str,
        name: str,
        description: str,
        model: str,
        settings: Mapping[str, Any],
        limit: int,
        prompt_id: str | None = None,
        reason: str = "",
        require_suite_pass: bool = False,
    ) -> Role:
        """A new role with ``settings`` over the defaults; a taken key is a 409."""
        errors = check_role_key(key) + check_role_settings(settings, limit, "settings.")
        if errors:
            raise invalid_fields(errors)
        if key in self.roles:
            raise ConflictError(f"a role {key!r} already exists")
        self.trigger_event(
            self.RoleAdded,
            role=key,
            name=name.strip() or key,
            description=description,
            model=model,
            settings=settings_after(ModelSettings(), settings).as_dict(),
            prompt_id=prompt_id,
            reason=reason,
            require_suite_pass=require_suite_pass,
        )
        return self.roles[key]

    def change_roles(self, patches: Sequence[RolePatch], reason: str) -> list[str]:
        """Apply every patch (checked by the caller with the models' limits); one event per
        role that really changes. Returns the keys of the changed roles."""
        unknown = [
            FieldError(f"roles[{i}].role", f"there is no role {p.role!r}")
            for i, p in enumerate(patches)
            if p.role not in self.roles
        ]
        if unknown:
            raise invalid_fields(unknown)
        changed: list[str] = []
        for patch in patches:
            role = self.roles[patch.role]
            before = role.values()
            after = dict(before)
            if patch.model is not None:
                after["model"] = patch.model
            if patch.prompt_id is not KEEP:
                after["prompt_id"] = patch.prompt_id
            if patch.require_suite_pass is not None:
                after["require_suite_pass"] = patch.require_suite_pass
            after.update(settings_after(role.settings, patch.settings).as_dict())
            changes = {
                name: {"before": before[name], "after": after[name]}
                for name in before
                if before[name] != after[name]  # 1 == 1.0: one temperature
            }
            if changes:
                self.trigger_event(
                    self.RoleChanged, role=patch.role, changes=changes, reason=reason
                )
                changed.append(patch.role)
        return changed


def _settings(values: Mapping[str, Any]) -> ModelSettings:
    known = {k: v for k, v in values.items() if k in ModelSettings.__dataclass_fields__}
    if "stop" in known:
        known["stop"] = tuple(known["stop"])
    return replace(ModelSettings(), **known)
