"""Named domain errors; the API maps each family to one HTTP status in one place."""

from __future__ import annotations


class DomainError(Exception):
    """A command was refused by a rule of the domain (HTTP 422 unless more specific)."""


class NotFoundError(DomainError):
    """The aggregate or item named by a command or query does not exist (HTTP 404)."""


class ConflictError(DomainError):
    """The command conflicts with the current state (HTTP 409)."""


class VersionConflictError(ConflictError):
    """The caller expected another aggregate version than the current one (HTTP 409)."""

    def __init__(self, expected: int, current: int) -> None:
        super().__init__(f"expected version {expected} but the current version is {current}")
        self.expected = expected
        self.current = current


class DuplicateNameError(ConflictError):
    """A unique name is already taken (HTTP 409)."""


class IdempotencyKeyReusedError(DomainError):
    """An Idempotency-Key was reused with a different request (HTTP 422)."""


class InvalidFieldsError(DomainError):
    """Input values outside their documented bounds (HTTP 400, every bad field named)."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors
