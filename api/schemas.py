"""Request and response bodies as msgspec Structs (snake_case JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from msgspec import Meta, Struct

Name = Annotated[str, Meta(min_length=1, max_length=100)]
ShortText = Annotated[str, Meta(max_length=200)]
LongText = Annotated[str, Meta(max_length=5000)]
Tag = Annotated[str, Meta(min_length=1, max_length=64)]
Tags = Annotated[list[Tag], Meta(max_length=32)]
Version = Annotated[int, Meta(ge=1)]

# Request bodies refuse unknown fields (``forbid_unknown_fields``), which
# ``api.contract.ClosedStructs`` states in the schema.


class ModelCreate(Struct, forbid_unknown_fields=True):
    name: Name
    kind: Literal["llm", "ml"]
    task: ShortText = ""
    description: LongText = ""
    owner: ShortText | None = None
    tags: Tags = []


class ModelUpdate(Struct, forbid_unknown_fields=True):
    task: ShortText | None = None
    description: LongText | None = None
    owner: ShortText | None = None
    tags: Tags | None = None
    expected_version: Version | None = None


class ModelOut(Struct):
    id: UUID
    name: str
    kind: str
    task: str
    description: str
    owner: str
    tags: list[str]
    version: int
    created_at: datetime
    updated_at: datetime
    created_by: str


class Health(Struct):
    status: Literal["ok", "degraded", "down"]
    checks: dict[str, str]
    projection_lag: dict[str, int] = {}


class Permissions(Struct):
    """What the key may do, by kind of operation (``api.auth.PERMISSIONS``)."""

    read: bool  # the registry, predictions, training, the assistant's configuration
    write: bool  # commands on those: deploy, train, run, edit a prompt, ...
    audit: bool  # the audit log: events, aggregates' histories, hash-chain verification
    read_memory: bool  # an agent's key: its own agent's memory only
    write_memory: bool  # an agent's key: its own agent's memory only
    admin: bool  # conclude an experiment, move the protected production label


class Caller(Struct):
    """The key that made the request: who events record as its actor, its roles, and
    what it may do."""

    principal: str
    roles: list[str]
    agent_id: str | None
    key_id: str | None
    may: Permissions
