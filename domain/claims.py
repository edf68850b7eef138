"""Small aggregates whose id is derived from a value, so a second use collides.

Saving one of these in the same ``save()`` as the command's own aggregates makes a
uniqueness rule (a model name) or a retry rule (an Idempotency-Key) atomic with the
command: the event store's (id, version) key refuses the second writer.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from domain.base import Aggregate

NAMESPACE = uuid.UUID("6f1d4a0e-2a55-4f7e-9d2b-6a5b1d0c9e11")


def claim_id(scope: str, value: str) -> uuid.UUID:
    """The id of the claim on ``value`` within ``scope`` (stable across processes)."""
    return uuid.uuid5(NAMESPACE, f"{scope}\x00{value}")


class UniqueClaim(Aggregate):
    """Records that ``value`` in ``scope`` belongs to the aggregate ``owner_id``."""

    class Claimed(Aggregate.Created):
        scope: str
        value: str
        owner_id: str

    def __init__(self, scope: str, value: str, owner_id: str) -> None:
        self.scope = scope
        self.value = value
        self.owner_id = owner_id

    @classmethod
    def claim(cls, scope: str, value: str, owner_id: str) -> UniqueClaim:
        return cls._create(
            cls.Claimed, id=claim_id(scope, value), scope=scope, value=value, owner_id=owner_id
        )


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    """What makes two requests 'the same' for an idempotent retry."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class IdempotencyRecord(Aggregate):
    """The first response to a request made with an Idempotency-Key."""

    class Recorded(Aggregate.Created):
        principal: str
        key: str
        fingerprint: str
        status_code: int
        response: Any

    def __init__(
        self, principal: str, key: str, fingerprint: str, status_code: int, response: Any
    ) -> None:
        self.principal = principal
        self.key = key
        self.fingerprint = fingerprint
        self.status_code = status_code
        self.response = response

    @staticmethod
    def id_for(principal: str, key: str) -> uuid.UUID:
        return claim_id("idempotency", f"{principal}\x00{key}")

    @classmethod
    def record(
        cls, *, principal: str, key: str, fingerprint: str, status_code: int, response: Any
    ) -> IdempotencyRecord:
        return cls._create(
            cls.Recorded,
            id=cls.id_for(principal, key),
            principal=principal,
            key=key,
            fingerprint=fingerprint,
            status_code=status_code,
            response=response,
        )
