"""API keys as an aggregate: who created each key, with which roles, and who revoked it.

An ``ApiKey`` lives in the registry context's log (see ``infrastructure.keys`` for why
that log). Its events carry the key's SHA-256 hash, never the key: the plaintext is
shown once, at creation, and exists nowhere else. ``created_by`` and ``revoked_by``
repeat the acting principal of the event's metadata in the payload, so the audit log
answers "who created this admin key?" without reading metadata.

The aggregate id is derived from the key id (the first 12 hex digits of the hash), so
creating a key twice collides in the event store, and revoking by key id needs no
lookup table.
"""

from __future__ import annotations

import uuid

from domain.base import Aggregate
from domain.errors import ConflictError, DomainError

ROLES = ("admin", "operator", "viewer", "auditor", "agent")
NAMESPACE = uuid.UUID("0d6c2f5e-8a3b-4f1e-9c7d-2b4e6a8f1c35")


class InvalidKeyRequestError(DomainError, ValueError):
    """A key cannot be created as asked (unknown role, agent role without agent)."""


class KeyAlreadyRevokedError(ConflictError):
    """The key was revoked before (HTTP 409): revocation is final."""


def key_aggregate_id(key_id: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"api-key:{key_id}")


def validate_roles(roles: list[str], agent_id: str | None) -> None:
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise InvalidKeyRequestError(f"roles must be some of {', '.join(ROLES)}; got {roles}")
    if ("agent" in roles) != (agent_id is not None):
        raise InvalidKeyRequestError(
            "the agent role needs --agent ID, and only the agent role takes one"
        )


class ApiKey(Aggregate):
    """One API key: its hash, principal, roles and bound agent; active until revoked."""

    class Created(Aggregate.Created):
        key_id: str
        key_hash: str
        name: str
        principal: str
        roles: list[str]
        agent_id: str | None
        created_by: str
        note: str

    class Revoked(Aggregate.Event):
        key_id: str
        revoked_by: str
        reason: str

        def apply(self, aggregate: ApiKey) -> None:
            aggregate.revoked_by = self.revoked_by
            aggregate.reason = self.reason

    def __init__(  # noqa: PLR0913
        self,
        key_id: str,
        key_hash: str,
        name: str,
        principal: str,
        roles: list[str],
        agent_id: str | None,
        created_by: str,
        note: str,
    ) -> None:
        self.key_id = key_id
        self.key_hash = key_hash
        self.name = name
        self.principal = principal
        self.roles = roles
        self.agent_id = agent_id
        self.created_by = created_by
        self.note = note
        self.revoked_by: str | None = None
        self.reason = ""

    @property
    def revoked(self) -> bool:
        return self.revoked_by is not None

    @classmethod
    def create(  # noqa: PLR0913
        cls,
        *,
        key_id: str,
        key_hash: str,
        name: str,
        principal: str,
        roles: list[str],
        agent_id: str | None,
        created_by: str,
        note: str = "",
    ) -> ApiKey:
        validate_roles(roles, agent_id)
        if len(key_hash) != 64 or not key_id or not key_hash.startswith(key_id):
            raise InvalidKeyRequestError("a key is stored by its SHA-256 hash and that hash's id")
        return cls._create(
            cls.Created,
            id=key_aggregate_id(key_id),
            key_id=key_id,
            key_hash=key_hash,
            name=name,
            principal=principal,
            roles=sorted(set(roles)),
            agent_id=agent_id,
            created_by=created_by,
            note=note,
        )

    def revoke(self, *, revoked_by: str, reason: str) -> None:
        if self.revoked:
            raise KeyAlreadyRevokedError(f"key {self.key_id} was already revoked")
        self.trigger_event(self.Revoked, key_id=self.key_id, revoked_by=revoked_by, reason=reason)
