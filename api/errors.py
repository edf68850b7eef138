"""Every failure as RFC 9457 problem+json, mapped from errors in one place.

400 malformed, 401 no or invalid key, 403 role not allowed, 404 unknown id, 409
version or uniqueness conflict, 413 body too large and 429 over the key's rate limit
(``api/overload.py``), 422 a domain rule refused the command. Stored data
that cannot be read — an event whose JSON is corrupt, an artifact whose bytes are — is
503 naming the event or artifact (logged as an error: an operator must repair it; no
``Retry-After``, since waiting alone does not help). Anything else is a bug: logged
with its traceback, answered 500 without internals.

The database away (refused, dropped, shutting down or starting up, a bounded wait run
out: ``infrastructure.postgres.database_unavailable``) is 503 with ``Retry-After``
(``on_database_error``; docs/reliability.md, "Database outage").
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

import asyncpg
from eventsourcing.persistence import MapperDeserialisationError
from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.utils.scope.state import ScopeState

from application.ports import ArtifactIntegrityError
from domain.errors import (
    ConflictError,
    DomainError,
    IdempotencyKeyReusedError,
    InvalidFieldsError,
    NotFoundError,
    VersionConflictError,
)
from infrastructure.postgres import DATABASE_ERROR_TYPES, database_unavailable
from projections.events import UnreadableEventError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    412: "Precondition Failed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    428: "Precondition Required",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class ProblemError(Exception):
    """Raised by handlers for a problem that has no domain error behind it."""

    def __init__(
        self, status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def problem(
    request: Request[Any, Any, Any],
    status: int,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    body.update(extra)
    correlation_id = request.scope.get("state", {}).get("correlation_id")
    if correlation_id:
        body["correlation_id"] = correlation_id
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _validation_fields(exc: ValidationException) -> list[dict[str, str]]:
    fields = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            source = item.get("source") or "body"
            source = str(getattr(source, "value", source))  # Litestar passes an enum
            fields.append(
                {
                    "field": str(item.get("key") or source),
                    "source": source,
                    "message": str(item.get("message", "")),
                }
            )
    return fields


def path_field(message: str) -> str | None:
    """The body field a decoder's message points at (msgspec ends one with
    ``at `$.a.b[0]```: ``a.b[0]``), or None when it names none."""
    if "at `$." not in message:
        return None
    return message.rpartition("at `$.")[2].rstrip("`") or None


def _non_finite(value: Any, path: str = "") -> list[str]:
    """The paths (``a.b[0]``) of the numbers in a decoded document that are not finite."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [path or "body"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _non_finite(v, f"{path}.{k}".lstrip("."))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _non_finite(v, f"{path}[{i}]")]
    return []


def _refused_numbers(request: Request[Any, Any, Any]) -> list[dict[str, str]]:
    """The fields of a refused body that hold a number JSON cannot carry (``1e999``,
    ``NaN``, ``Infinity``): the decoder stops at them without naming the field, so the
    body (read already, kept in the request's scope) is read again by a lenient parser
    that takes them as infinite or NaN floats."""
    body = ScopeState.from_scope(request.scope).body
    if not isinstance(body, bytes) or not body:
        return []
    try:
        document = json.loads(body)
    except ValueError:
        return []
    message = "must be a finite number (JSON has no infinite or NaN numbers)"
    return [{"field": f, "source": "body", "message": message} for f in _non_finite(document)]


def on_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    fields = _validation_fields(exc) or _refused_numbers(request)
    named = path_field(str(exc.detail)) if not fields else None
    if named is not None:  # a body the decoder refused at a field it names
        fields = [{"field": named, "source": "body", "message": str(exc.detail)}]
    detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields) or str(exc.detail)
    return problem(request, HTTP_400_BAD_REQUEST, detail, errors=fields)


def on_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    extra = exc.extra if isinstance(exc.extra, dict) else {}
    if exc.status_code == HTTP_400_BAD_REQUEST and "errors" not in extra:
        refused = _refused_numbers(request)  # a body the framework could not decode
        if refused:
            extra = {**extra, "errors": refused}
    headers = dict(exc.headers or {})
    if isinstance(exc, NotAuthorizedException):
        headers.setdefault("WWW-Authenticate", 'Bearer realm="aimm"')
    return problem(request, exc.status_code, str(exc.detail), headers=headers, **extra)


def on_problem(request: Request[Any, Any, Any], exc: ProblemError) -> Response[Any]:
    return problem(request, exc.status, exc.detail, headers=exc.headers, **exc.extra)


def on_domain(request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    if isinstance(exc, VersionConflictError):
        return problem(
            request,
            HTTP_409_CONFLICT,
            str(exc),
            headers={"ETag": f'"{exc.current}"'},
            current_version=exc.current,
            expected_version=exc.expected,
        )
    if isinstance(exc, NotFoundError):
        return problem(request, HTTP_404_NOT_FOUND, str(exc))
    if isinstance(exc, InvalidFieldsError):
        errors = [{"source": "body", **error} for error in exc.errors]  # FieldError
        return problem(request, HTTP_400_BAD_REQUEST, str(exc), errors=errors)
    if isinstance(exc, ConflictError):
        # a rule may name what conflicts (the production gate: the version and the suite)
        extra = getattr(exc, "problem_extra", None) or {}
        return problem(request, HTTP_409_CONFLICT, str(exc), **extra)
    if isinstance(exc, IdempotencyKeyReusedError):
        return problem(request, HTTP_422_UNPROCESSABLE_ENTITY, str(exc))
    # a rule may name the figures a client needs to fix its request (bars needed, …)
    extra = getattr(exc, "problem_extra", None) or {}
    return problem(request, HTTP_422_UNPROCESSABLE_ENTITY, str(exc), **extra)


def on_unstorable_text(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # PostgreSQL text cannot hold NUL (or bytes invalid in UTF-8): the input is at fault.
    return problem(request, HTTP_400_BAD_REQUEST, "text must not contain NUL characters")


def on_unreadable_event(
    request: Request[Any, Any, Any], exc: UnreadableEventError
) -> Response[Any]:
    log.error("%s %s: %s", request.method, request.url.path, exc)
    return problem(
        request,
        HTTP_503_SERVICE_UNAVAILABLE,
        str(exc),
        type="urn:aimm:problem:unreadable-event",
        context=exc.context,
        position=exc.position,
        aggregate_id=str(exc.aggregate_id),
        aggregate_version=exc.version,
    )


def on_unreadable_artifact(
    request: Request[Any, Any, Any], exc: ArtifactIntegrityError
) -> Response[Any]:
    log.error("%s %s: %s", request.method, request.url.path, exc)
    return problem(
        request,
        HTTP_503_SERVICE_UNAVAILABLE,
        str(exc),
        type="urn:aimm:problem:unreadable-artifact",
    )


def on_undecodable_event(
    request: Request[Any, Any, Any], exc: MapperDeserialisationError
) -> Response[Any]:
    """A command (or a read of the write side) met a stored event of its aggregate that
    does not decode: the event store names its topic, aggregate and version."""
    log.error("%s %s: %s", request.method, request.url.path, exc)
    return problem(
        request,
        HTTP_503_SERVICE_UNAVAILABLE,
        f"a stored event cannot be read: {exc}",
        type="urn:aimm:problem:unreadable-event",
    )


DATABASE_RETRY_AFTER = "2"  # seconds: a restarting server is usually back within a few
DATABASE_LOG_EVERY = 5.0  # seconds between two "database unavailable" log lines
_database_logged = [0.0]  # when the last one was logged


def on_database_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The database is away or did not answer in time: 503 with ``Retry-After`` (one
    log line per ``DATABASE_LOG_EVERY`` seconds at most, not one per request). Other
    errors of the same types (a misused connection) are bugs: 500."""
    if not database_unavailable(exc):
        return on_unexpected(request, exc)
    now = time.monotonic()
    if now - _database_logged[0] >= DATABASE_LOG_EVERY:
        _database_logged[0] = now
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        log.warning(
            "database unavailable on %s %s: %s: %s",
            request.method,
            request.url.path,
            type(exc).__name__,
            first_line,
        )
    return problem(
        request,
        HTTP_503_SERVICE_UNAVAILABLE,
        "the database is unavailable or did not answer in time; retry after Retry-After "
        "seconds (with the same Idempotency-Key, a command that did get through is not "
        "applied twice)",
        headers={"Retry-After": DATABASE_RETRY_AFTER},
    )


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(
        request, HTTP_500_INTERNAL_SERVER_ERROR, "an unexpected error occurred; it was logged"
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ValidationException: on_validation,
    HTTPException: on_http,
    NotAuthorizedException: on_http,
    PermissionDeniedException: on_http,
    NotFoundException: on_http,
    ProblemError: on_problem,
    DomainError: on_domain,
    asyncpg.exceptions.CharacterNotInRepertoireError: on_unstorable_text,
    asyncpg.exceptions.UntranslatableCharacterError: on_unstorable_text,
    UnreadableEventError: on_unreadable_event,
    ArtifactIntegrityError: on_unreadable_artifact,
    MapperDeserialisationError: on_undecodable_event,
    **dict.fromkeys(DATABASE_ERROR_TYPES, on_database_error),
    Exception: on_unexpected,
}

__all__ = ["EXCEPTION_HANDLERS", "PROBLEM_JSON", "MediaType", "ProblemError"]
