"""The Prompt aggregate: one prompt of a role, its immutable versions and its labels.

The rules it applies (templates, settings, content hashes, diffs, label names) are in
``domain.assistant.prompts``; this module is the aggregate that records them as events.

- **Versions** are numbered from 1 and never change. A version holds both templates, the
  declared variables, optional settings overrides, an optional model reference that
  overrides the role's, and what that model resolved to when the version was committed
  (``runs_on``: for a registry model, the version it runs on: the lineage). Committing
  content identical to the latest version (same ``content_hash`` and model) records
  nothing and answers the latest version.
- **Labels** (``production``, ``staging``, custom names) point at versions. Every move is
  an event, so a label's history and which version it named at any past time come from
  the log. A rollback is a label move back to a version the label named before
  (``action="rollback"``). Who may move which label (``production`` is protected) is the
  API's to decide with ``prompts.is_protected``: roles are not the domain's concept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain.assistant.models import MAX_TOKENS_BOUND
from domain.assistant.prompts import (
    FieldError,
    PromptContent,
    canonical_overrides,
    check_label_name,
    check_label_target,
    check_templates,
    content_hash,
    invalid_fields,
    validate_settings,
)
from domain.base import Aggregate
from domain.errors import DomainError, NotFoundError
from domain.metadata import EventMeta

PROMPT_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
PROMPT_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"
MOVE, ROLLBACK, REMOVE = "move", "rollback", "remove"


class LabelRuleError(DomainError):
    """A label move the prompt's state refuses (nothing to roll back to; HTTP 422)."""


@dataclass(frozen=True)
class PromptVersion:
    number: int
    content: PromptContent
    model: str | None  # the version's own model reference; None: the role's
    runs_on: dict[str, Any]  # what the model resolved to at commit (models.ResolvedModel)
    content_hash: str
    message: str
    created_at: str
    created_by: str


@dataclass(frozen=True)
class LabelChange:
    sequence: int  # 1, 2, … over all labels of the prompt
    label: str
    action: str  # move, rollback or remove
    version: int | None  # None when removed
    previous_version: int | None
    reason: str
    at: str
    by: str


def check_name(name: object, field_name: str = "name") -> list[FieldError]:
    if not isinstance(name, str) or PROMPT_NAME.fullmatch(name) is None:
        return [
            FieldError(
                field_name,
                f"{str(name)[:40]!r} is not a prompt name: a lowercase letter or digit, then "
                "up to 99 lowercase letters, digits, '.', '_' or '-'",
            )
        ]
    return []


def check_version(content: PromptContent, limit: int | None) -> list[FieldError]:
    """Every bad field of a version's content: templates, variables, overrides (checked
    against ``limit``, the effective model's context length; None: unknown, reported apart)."""
    errors = check_templates(content.system_template, content.user_template, content.variables)
    errors += validate_settings(content.overrides, limit or MAX_TOKENS_BOUND, "overrides.")
    return errors


class Prompt(Aggregate):
    """A prompt of an assistant role; unique by (role, name)."""

    class Created(Aggregate.Created):
        role: str
        name: str
        description: str

    class VersionCommitted(Aggregate.Event):
        version: int
        system_template: str
        user_template: str
        variables: list[str]
        overrides: dict[str, Any]
        model: str | None
        runs_on: dict[str, Any]
        content_hash: str
        message: str

        def apply(self, aggregate: Prompt) -> None:
            aggregate.versions[self.version] = PromptVersion(
                number=self.version,
                content=PromptContent(
                    self.system_template,
                    self.user_template,
                    tuple(self.variables),
                    dict(self.overrides),
                ),
                model=self.model,
                runs_on=dict(self.runs_on),
                content_hash=self.content_hash,
                message=self.message,
                created_at=self.timestamp.isoformat(),
                created_by=self.meta.get("principal", "unknown"),
            )

    class LabelMoved(Aggregate.Event):
        label: str
        version: int
        previous_version: int | None
        action: str  # move or rollback
        reason: str

        def apply(self, aggregate: Prompt) -> None:
            aggregate.labels[self.label] = self.version
            aggregate._record(self, self.action, self.version)

    class LabelRemoved(Aggregate.Event):
        label: str
        previous_version: int
        reason: str

        def apply(self, aggregate: Prompt) -> None:
            del aggregate.labels[self.label]
            aggregate._record(self, REMOVE, None)

    def __init__(self, role: str, name: str, description: str, meta: EventMeta) -> None:
        self.role = role
        self.name = name
        self.description = description
        self.created_by = meta.get("principal", "unknown")
        self.versions: dict[int, PromptVersion] = {}
        self.labels: dict[str, int] = {}
        self.label_history: list[LabelChange] = []

    def _record(self, event: Any, action: str, version: int | None) -> None:
        self.label_history.append(
            LabelChange(
                sequence=len(self.label_history) + 1,
                label=event.label,
                action=action,
                version=version,
                previous_version=event.previous_version,
                reason=event.reason,
                at=event.timestamp.isoformat(),
                by=event.meta.get("principal", "unknown"),
            )
        )

    @classmethod
    def create(cls, *, role: str, name: str, description: str) -> Prompt:
        errors = check_name(name)
        if errors:
            raise invalid_fields(errors)
        return cls._create(cls.Created, role=role, name=name, description=description)

    # -- versions ---------------------------------------------------------------------------

    @property
    def latest_version(self) -> int | None:
        return max(self.versions) if self.versions else None

    @property
    def latest(self) -> PromptVersion | None:
        number = self.latest_version
        return None if number is None else self.versions[number]

    def get_version(self, number: int) -> PromptVersion:
        try:
            return self.versions[number]
        except KeyError:
            raise NotFoundError(f"prompt {self.id} has no version {number}") from None

    def commit(
        self,
        content: PromptContent,
        *,
        model: str | None,
        runs_on: Mapping[str, Any],
        limit: int,
        message: str,
    ) -> tuple[PromptVersion, bool]:
        """The next version, or the latest one unchanged (and False) when the content and
        model are identical to it: nothing is recorded then."""
        errors = check_version(content, limit)
        if errors:
            raise invalid_fields(errors)
        digest = content_hash(content)
        latest = self.latest
        if latest is not None and latest.content_hash == digest and latest.model == model:
            return latest, False
        number = (self.latest_version or 0) + 1
        self.trigger_event(
            self.VersionCommitted,
            version=number,
            system_template=content.system_template,
            user_template=content.user_template,
            variables=list(content.variables),
            overrides=canonical_overrides(content.overrides),
            model=model,
            runs_on=dict(runs_on),
            content_hash=digest,
            message=message,
        )
        return self.versions[number], True

    # -- labels -----------------------------------------------------------------------------

    def resolve(self, name_or_number: str | int) -> int:
        """A version number from a number, a label or ``latest``; unknown ones are 404."""
        if isinstance(name_or_number, int):
            return self.get_version(name_or_number).number
        if name_or_number == "latest" and self.latest_version is not None:
            return self.latest_version
        if name_or_number in self.labels:
            return self.labels[name_or_number]
        raise NotFoundError(f"prompt {self.id} has no label {name_or_number!r}")

    def move_label(self, label: str, version: int, reason: str) -> bool:
        """Point ``label`` at ``version``; False (nothing recorded) when it already does."""
        errors = check_label_name(label) + check_label_target(version, self.latest_version or 0)
        if errors:
            raise invalid_fields(errors)
        previous = self.labels.get(label)
        if previous == version:
            return False
        self.trigger_event(
            self.LabelMoved,
            label=label,
            version=version,
            previous_version=previous,
            action=MOVE,
            reason=reason,
        )
        return True

    def rollback(self, label: str, version: int | None, reason: str) -> LabelChange:
        """Move ``label`` back: to the version it named before its current one, or to
        ``version`` if the label named it before."""
        errors = check_label_name(label)
        if errors:
            raise invalid_fields(errors)
        current = self.labels.get(label)
        if current is None:
            raise LabelRuleError(f"label {label!r} names no version, so nothing to roll back")
        earlier = [c.version for c in self.label_history if c.label == label and c.version]
        if version is None:
            candidates = [v for v in reversed(earlier) if v != current]
            if not candidates:
                raise LabelRuleError(f"label {label!r} has named no other version before")
            version = candidates[0]
        else:
            self.get_version(version)
            if version == current:
                raise LabelRuleError(f"label {label!r} already names version {version}")
            if version not in earlier:
                raise LabelRuleError(
                    f"label {label!r} never named version {version}; move it there instead"
                )
        self.trigger_event(
            self.LabelMoved,
            label=label,
            version=version,
            previous_version=current,
            action=ROLLBACK,
            reason=reason,
        )
        return self.label_history[-1]

    def remove_label(self, label: str, reason: str) -> None:
        if label not in self.labels:
            raise NotFoundError(f"prompt {self.id} has no label {label!r}")
        self.trigger_event(
            self.LabelRemoved, label=label, previous_version=self.labels[label], reason=reason
        )

    def labels_of(self, number: int) -> list[str]:
        """The labels naming version ``number``, sorted."""
        return sorted(label for label, version in self.labels.items() if version == number)
