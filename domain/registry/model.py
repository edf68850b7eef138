"""The Model aggregate: a registered LLM or ML model and its descriptive details."""

from __future__ import annotations

import re
from typing import Literal

from domain.base import Aggregate
from domain.errors import DomainError
from domain.metadata import EventMeta

ModelKind = Literal["llm", "ml"]
MODEL_KINDS: tuple[str, ...] = ("llm", "ml")

# Names are identifiers people type and paste into pipelines: lower-case letters,
# digits and - _ . /, starting with a letter or digit, at most 100 characters.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._/-]{0,99}$")
MAX_TAGS = 32
MAX_TAG_LENGTH = 64


class InvalidModelError(DomainError):
    """A model's details break a registry rule."""


def normalise_tags(tags: list[str]) -> list[str]:
    """Tags are case-insensitive, unique and kept in a stable (sorted) order."""
    cleaned = sorted({t.strip().lower() for t in tags if t.strip()})
    if len(cleaned) > MAX_TAGS:
        raise InvalidModelError(f"at most {MAX_TAGS} tags are allowed")
    for tag in cleaned:
        if len(tag) > MAX_TAG_LENGTH:
            raise InvalidModelError(f"tag {tag[:20]!r}… is longer than {MAX_TAG_LENGTH}")
    return cleaned


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise InvalidModelError(
            "name must be 1-100 characters of a-z, 0-9, '.', '_', '-', '/' "
            "and start with a letter or digit"
        )
    return name


class Model(Aggregate):
    """A model of the platform, registered once under a unique name."""

    class Registered(Aggregate.Created):
        name: str
        kind: str
        task: str
        description: str
        owner: str
        tags: list[str]

    class DetailsUpdated(Aggregate.Event):
        task: str
        description: str
        owner: str
        tags: list[str]

        def apply(self, aggregate: Model) -> None:  # type: ignore[override]
            aggregate.task = self.task
            aggregate.description = self.description
            aggregate.owner = self.owner
            aggregate.tags = list(self.tags)

    def __init__(  # noqa: PLR0913
        self,
        name: str,
        kind: str,
        task: str,
        description: str,
        owner: str,
        tags: list[str],
        meta: EventMeta,
    ) -> None:
        self.created_by = meta.get("principal", "unknown")
        self.name = name
        self.kind = kind
        self.task = task
        self.description = description
        self.owner = owner
        self.tags = tags

    @classmethod
    def register(  # noqa: PLR0913
        cls, *, name: str, kind: str, task: str, description: str, owner: str, tags: list[str]
    ) -> Model:
        if kind not in MODEL_KINDS:
            raise InvalidModelError(f"kind must be one of {', '.join(MODEL_KINDS)}")
        return cls._create(
            cls.Registered,
            name=check_name(name),
            kind=kind,
            task=task.strip(),
            description=description,
            owner=owner,
            tags=normalise_tags(tags),
        )

    def update_details(
        self,
        *,
        task: str | None = None,
        description: str | None = None,
        owner: str | None = None,
        tags: list[str] | None = None,
    ) -> bool:
        """Change descriptive details; returns False (and records nothing) if unchanged."""
        new = {
            "task": self.task if task is None else task.strip(),
            "description": self.description if description is None else description,
            "owner": self.owner if owner is None else owner,
            "tags": self.tags if tags is None else normalise_tags(tags),
        }
        if all(getattr(self, k) == v for k, v in new.items()):
            return False
        self.trigger_event(self.DetailsUpdated, **new)
        return True
