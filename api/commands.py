"""How a handler runs a command: off the event loop, stamped with who and why.

The eventsourcing recorder is synchronous, so commands run in worker threads. Every
event they append carries the caller's principal and the request's correlation id.
The response carries the position of the command's last event (``Aimm-Position``)
for read-your-writes, and an idempotent retry is marked ``Idempotent-Replayed``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import anyio.to_thread
import msgspec
from litestar import Request, Response

from api.contract import POSITION_HEADER
from api.errors import ProblemError
from application.base import CommandResult, Idempotency, StoredResponse
from domain.claims import request_fingerprint
from domain.metadata import acting_as
from infrastructure.keys import Principal

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_IF_MATCH = re.compile(r'^(?:W/)?"?(\d{1,18})"?$')


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    user: Principal = request.user
    return user


async def idempotency(
    request: Request[Any, Any, Any], key: str | None = None
) -> Idempotency | None:
    """The request's Idempotency-Key: declare it on the handler as
    ``idempotency_key: api.contract.IdempotencyKey = None`` and pass it here."""
    if key is None:
        key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not _KEY.match(key):
        raise ProblemError(
            400,
            "Idempotency-Key must be 1-255 visible ASCII characters",
            errors=[{"field": "Idempotency-Key", "source": "header", "message": "invalid"}],
        )
    body = await request.body()
    return Idempotency(
        principal=principal_of(request).name,
        key=key,
        fingerprint=request_fingerprint(request.method, _target(request), body),
    )


def _target(request: Request[Any, Any, Any]) -> str:
    """The path and the query in a canonical order: ``DELETE …?erase=true`` is not the
    same request as ``DELETE …`` for an Idempotency-Key, whatever the parameters' order."""
    query = sorted(request.query_params.multi_items())
    return f"{request.url.path}?{urlencode(query)}" if query else request.url.path


def expected_version(request: Request[Any, Any, Any], in_body: int | None) -> int | None:
    """The version the caller expects, from If-Match or the body (they must agree)."""
    header = request.headers.get("if-match")
    from_header: int | None = None
    if header is not None and header.strip() != "*":
        match = _IF_MATCH.match(header.strip())
        if match is None:
            raise ProblemError(
                400,
                'If-Match must be an ETag this API returned, such as "3"',
                errors=[{"field": "If-Match", "source": "header", "message": "invalid"}],
            )
        from_header = int(match.group(1))
    if from_header is not None and in_body is not None and from_header != in_body:
        # Two different versions cannot both be the current one: at least one is stale.
        raise ProblemError(
            409,
            f"If-Match names version {from_header} and expected_version {in_body}: at most "
            "one of them is current; read the resource again and send one version",
            expected_version=in_body,
        )
    return from_header if from_header is not None else in_body


async def run_command(
    request: Request[Any, Any, Any],
    command: Callable[[], CommandResult[StoredResponse]],
    location: Callable[[Any], str] | None = None,
    etag: Callable[[Any], int | None] | None = None,
) -> Response[Any]:
    """Run ``command`` in a worker thread as the caller; answer with its stored response.

    ``ETag`` is the changed aggregate's version: ``etag(body)`` when given, else the body's
    ``version`` (a body whose ``version`` is something else must pass ``etag``).
    """
    principal = principal_of(request)
    correlation_id = request.scope["state"]["correlation_id"]

    def call() -> CommandResult[StoredResponse]:
        with acting_as(principal.name, correlation_id):
            return command()

    result = await anyio.to_thread.run_sync(call)
    headers = {POSITION_HEADER: f"{result.context}:{result.position}"}
    body = result.value.body
    if isinstance(body, dict):
        version = etag(body) if etag is not None else body.get("version")
        if isinstance(version, int):
            headers["ETag"] = f'"{version}"'
    if location is not None and result.value.status_code in (201, 202):
        headers["Location"] = location(body)
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(body, status_code=result.value.status_code, headers=headers)


def to_builtins(value: Any) -> Any:
    return msgspec.to_builtins(value)
