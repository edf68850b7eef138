"""The HTTP contract every endpoint shares, declared once and used by every controller.

A client learns these rules once (DESIGN.md, "One contract, everywhere"); a new endpoint
copies them from here, not from its neighbour:

- **Errors** are RFC 9457 ``application/problem+json`` (:class:`Problem`). Every operation
  declares what it can answer with ``responses=problems(...)``: the statuses any
  authenticated operation can give (400 malformed, 401 no or unknown key, 403 role not
  allowed, 413 a body over the limit, 429 over the key's rate limit, 503 the database or
  the read models are not there in time) plus the ones it
  names (404 unknown id, 409 stale version or taken name, 422 a domain rule refused it,
  415 a body type it does not read). A 500 is a bug and is not part of the contract.
- **Request headers** are declared as handler parameters, so the framework validates them
  (a malformed one is a 400 naming the header) and the OpenAPI document lists them:
  ``if_match: IfMatch = None`` on every command that changes an existing aggregate,
  ``idempotency_key: IdempotencyKey = None`` on every POST, PUT, PATCH and DELETE command.
- **Response headers** are declared with ``response_headers=``: :data:`COMMAND_HEADERS` on
  commands (``Aimm-Position``, ``ETag``, ``Idempotent-Replayed``; plus ``Location`` with
  :data:`CREATED_HEADERS`), :data:`ONE_AGGREGATE_HEADERS` on reads of one aggregate.
  ``ETag`` is always the aggregate's version (never a version *number* of a model), as a
  strong entity tag: ``"7"``.
- **Reads** of several read-model tables for one response run in one read-only,
  repeatable-read transaction (:func:`snapshot`), so a response is never torn between
  two projector commits. Reads never append events.
- **Readable at once**: a ``Location`` (or an id) a command returns can be followed at once.
  A read by id that finds nothing in its read model, but whose aggregate is in the log,
  waits (bounded, :data:`WAIT_TIMEOUT`) for the projection of that aggregate's last event
  instead of answering 404 (:func:`read_one`). Only an id that is in neither is a 404.

Why not Litestar's ``ProblemDetailsPlugin``: its exception mappers see the exception but
not the request, so they cannot fill ``instance`` or the request's ``correlation_id``,
and they cannot set headers per error (``ETag`` with the current version on a 409,
``Retry-After`` on a 503). ``api/errors.py`` maps every error in one place instead, and
this module declares the same shapes in the OpenAPI document.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

import asyncpg
import msgspec
from litestar import Request
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.datastructures import MutableScopeHeaders, ResponseHeader
from litestar.enums import ScopeType
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import HeaderParameter, Parameter
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from litestar.typing import FieldDefinition
from msgspec import Struct

from api.consistency import WAIT_TIMEOUT, reached
from api.errors import PROBLEM_JSON, TITLES, ProblemError, path_field

T = TypeVar("T")

POSITION_HEADER = "Aimm-Position"

# -- problem+json -------------------------------------------------------------------------


class FieldError(Struct):
    """One offending input: where it was (body, query, path, header) and what is wrong."""

    field: str
    source: str
    message: str


class Problem(Struct, kw_only=True):
    """An RFC 9457 problem document; members beyond these may follow for some errors."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str
    correlation_id: str | None = None
    errors: list[FieldError] | None = None
    current_version: int | None = None
    expected_version: int | None = None


_DESCRIPTIONS = {
    400: "Malformed request: the offending fields are named in `errors`.",
    401: "No API key, or an unknown or revoked one.",
    403: "The key's roles do not allow this operation.",
    404: "No such resource.",
    409: "Conflict: a stale `If-Match`/`expected_version` (the body names "
    "`current_version`) or a value that must be unique is taken.",
    413: "The request body is larger than the server takes (`AIMM_MAX_BODY_BYTES`).",
    415: "The request body's content type is not one this operation reads.",
    422: "A domain rule refused the command; nothing was appended.",
    429: "The API key is over its rate limit (`AIMM_RATE_LIMIT`); retry after "
    "`Retry-After` seconds.",
    503: "The database or the read models did not answer in time; retry after "
    "`Retry-After` seconds.",
}
# 413 and 429 can answer any operation: a body over the limit is refused before the
# handler runs (a bodiless GET never reaches it), the rate limit counts every call.
BASE_STATUSES = (400, 401, 403, 413, 429, 503)


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """The problem+json responses of an operation: the base ones and ``statuses``."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            description=_DESCRIPTIONS.get(status, TITLES.get(status, "Error")),
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
        for status in sorted({*BASE_STATUSES, *statuses})
    }


# -- OPTIONS ------------------------------------------------------------------------------


def allow_middleware(app: ASGIApp) -> ASGIApp:
    """``OPTIONS`` answers ``Allow`` with every method of the path.

    Litestar 2.25 builds a path's OPTIONS handler with the first handler registered for
    that path and keeps it when more handlers join the path, so its ``Allow`` lists only
    the methods known then (``GET, OPTIONS`` for a path that also has DELETE). This sets
    ``Allow`` from the routes of the finished app instead.
    """
    methods: dict[str, str] = {}

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope.get("method") != "OPTIONS":
            await app(scope, receive, send)
            return
        if not methods:
            for route in scope["litestar_app"].routes:
                known = getattr(route, "methods", None)
                if known:
                    methods[route.path_format] = ", ".join(sorted(known))
        allow = methods.get(scope.get("path_template", ""))

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and allow is not None:
                MutableScopeHeaders.from_message(message)["Allow"] = allow
            await send(message)

        await app(scope, receive, send_with_allow)

    return middleware


# -- request bodies -----------------------------------------------------------------------


class ClosedStructs(StructSchemaPlugin):
    """Request structs are ``forbid_unknown_fields`` (a typo is a 400 naming the field, not
    a silently ignored setting); this says so in their schema, ``additionalProperties:
    false``, which Litestar's own struct plugin leaves out. Registered on the app, it is
    consulted before the built-in one."""

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        if field_definition.type_.__struct_config__.forbid_unknown_fields:
            schema.additional_properties = False
        _restore_constraints(field_definition.type_, schema)
        return schema


_KEYWORDS = {
    "minLength": "min_length",
    "maxLength": "max_length",
    "pattern": "pattern",
    "minimum": "minimum",
    "maximum": "maximum",
    "exclusiveMinimum": "exclusive_minimum",
    "exclusiveMaximum": "exclusive_maximum",
    "minItems": "min_items",
    "maxItems": "max_items",
    "uniqueItems": "unique_items",
    "minProperties": "min_properties",
    "maxProperties": "max_properties",
}


def _restore_constraints(struct: type[Struct], schema: Schema) -> None:
    """Put back the constraints msgspec enforces that Litestar's schema of a struct lost.

    Litestar drops a bound of 0 on an optional field (it tests the bound's truth, not its
    presence), the constraints of list items (``list[Annotated[str, Meta(min_length=1)]]``)
    and every constraint of a ``dict`` (its size, its keys). msgspec's own JSON Schema of the
    struct is what its decoder enforces, so each property is completed from it.
    """
    _, components = msgspec.json.schema_components([struct])
    properties = components[struct.__name__].get("properties", {})
    for name, prop in (schema.properties or {}).items():
        if isinstance(prop, Schema) and name in properties:
            _complete(prop, properties[name])


def _complete(target: Schema, source: dict[str, Any]) -> None:
    members = [m for m in source.get("anyOf", []) if m.get("type") != "null"]
    if len(members) == 1:  # an optional field: the constraints of its one real type
        source = members[0]
    if "$ref" in source:
        return  # another struct: its own schema is completed when it is generated
    inner = [m for m in target.one_of or [] if isinstance(m, Schema) and m.type != "null"]
    for keyword, attribute in _KEYWORDS.items():
        if keyword in source and getattr(target, attribute) is None:
            # Litestar puts an optional field's constraints beside its oneOf: so do we
            setattr(target, attribute, source[keyword])
    node = inner[0] if len(inner) == 1 else target
    if isinstance(source.get("items"), dict) and isinstance(node.items, Schema):
        _complete(node.items, source["items"])
    values = source.get("additionalProperties")
    if isinstance(values, dict) and isinstance(node.additional_properties, Schema):
        _complete(node.additional_properties, values)
    if isinstance(source.get("propertyNames"), dict) and node.property_names is None:
        node.property_names = Schema(
            type=OpenAPIType.STRING, **_attributes(source["propertyNames"])
        )


def _attributes(source: dict[str, Any]) -> dict[str, Any]:
    return {attr: source[key] for key, attr in _KEYWORDS.items() if key in source}


# -- request headers ----------------------------------------------------------------------

IF_MATCH_PATTERN = r'^(\*|(W/)?"?[0-9]{1,18}"?)$'
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"

IfMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-Match",
        required=False,
        pattern=IF_MATCH_PATTERN,
        schema_extra={"type": "string", "one_of": None},  # absent or text, never null
        description='The aggregate version the change is based on, as its ETag ("3"). '
        "A stale one is a 409 naming the current version; `*` or none: no check.",
    ),
]
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        schema_extra={"type": "string", "one_of": None},
        description="1-255 visible ASCII characters, unique per caller and request: a retry "
        "with the same key and body returns the first response (`Idempotent-Replayed: "
        "true`) and appends nothing; the same key with another request is a 422.",
    ),
]

# -- response headers ---------------------------------------------------------------------

ETAG = ResponseHeader(
    name="ETag",
    description='The aggregate\'s version as a strong entity tag ("7"): send it back as '
    "`If-Match`.",
    documentation_only=True,
)
POSITION = ResponseHeader(
    name=POSITION_HEADER,
    description="`CONTEXT:POSITION` of the command's last event in its log: pass it as "
    "`wait_for` to a query to read your own write.",
    documentation_only=True,
)
REPLAYED = ResponseHeader(
    name="Idempotent-Replayed",
    description="`true` when this is the stored first response to an Idempotency-Key.",
    documentation_only=True,
)
LOCATION = ResponseHeader(
    name="Location",
    description="Where the created resource (or the accepted job) can be read, at once.",
    documentation_only=True,
)
COMMAND_HEADERS = [POSITION, ETAG, REPLAYED]
CREATED_HEADERS = [*COMMAND_HEADERS, LOCATION]
ONE_AGGREGATE_HEADERS = [ETAG]


def etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


# -- reads --------------------------------------------------------------------------------


def jsonb(value: Any) -> Any:
    """A ``jsonb`` column as asyncpg returns it (text) decoded; None and values already
    decoded pass through."""
    return msgspec.json.decode(value) if isinstance(value, str | bytes) else value


@contextlib.asynccontextmanager
async def snapshot(request: Request[Any, Any, Any]) -> AsyncIterator[asyncpg.Connection]:
    """A connection in a read-only, repeatable-read transaction: one consistent view of
    every read-model table the response is built from."""
    async with request.app.state.pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            yield conn


async def last_position_of(
    conn: asyncpg.Connection, context: str, aggregate_id: UUID
) -> int | None:
    """The log position of the aggregate's last stored event, or None if it has none."""
    position: int | None = await conn.fetchval(
        f"SELECT max(notification_id) FROM {context}_events WHERE originator_id = $1",
        aggregate_id,
    )
    return position


async def read_one(
    request: Request[Any, Any, Any],
    context: str,
    aggregate_id: UUID,
    fetch: Callable[[asyncpg.Connection], Awaitable[T | None]],
) -> T | None:
    """``fetch`` in a snapshot; if it finds nothing but the aggregate is in the log, wait
    (bounded) for the projections to reach its last event and fetch again.

    None means the id is unknown to the log as well: the caller answers 404.
    """
    async with snapshot(request) as conn:
        found = await fetch(conn)
        if found is not None:
            return found
        position = await last_position_of(conn, context, aggregate_id)
    if position is None:
        return None
    if not await reached(request, context, position):
        raise ProblemError(
            503,
            f"{aggregate_id} is in the {context} log at position {position}, but the read "
            f"models have not reached it within {WAIT_TIMEOUT:g}s",
            headers={"Retry-After": "1"},
        )
    async with snapshot(request) as conn:
        return await fetch(conn)


S = TypeVar("S")

# Query-string timestamps: RFC 3339 only (the framework would take "0.5" as a number).
Instant = Annotated[
    datetime | None,
    Parameter(description="an RFC 3339 timestamp, e.g. 2026-03-02T09:00:00Z (no zone: UTC)"),
]


def instants(request: Request[Any, Any, Any], *names: str) -> None:
    """Refuse a query timestamp that is not RFC 3339 text (a 400 naming it)."""
    for name in names:
        raw = request.query_params.get(name)
        if raw is None:
            continue
        try:
            msgspec.convert(raw, datetime)
        except msgspec.ValidationError:
            raise ProblemError(
                400,
                f"{name} must be an RFC 3339 timestamp such as 2026-03-02T09:00:00Z",
                errors=[{"field": name, "source": "query", "message": "not RFC 3339"}],
            ) from None


def _integral(value: Any) -> Any:
    """``value`` with every float that has no fractional part made an int (a float field
    still takes an int; an int field refuses a float, even ``3.0``, when strict)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    return value


async def strict_body(request: Request[Any, Any, Any], kind: type[S]) -> S | None:
    """The body decoded strictly as ``kind`` (None when there is none): the framework's
    own decoding converts "true" to a boolean and "0.5" to a number. A number with no
    fractional part (``3.0``) is an integer, as JSON Schema has it."""
    raw = await request.body()
    if not raw.strip() or raw.strip() == b"null":  # an optional body may be JSON null
        return None
    try:
        return msgspec.convert(_integral(msgspec.json.decode(raw)), kind, strict=True)
    except msgspec.ValidationError as exc:
        text = str(exc)
        field = path_field(text) or "body"
        raise ProblemError(
            400,
            f"the body is malformed: {text}",
            errors=[{"field": field, "source": "body", "message": text}],
        ) from None
    except msgspec.DecodeError as exc:
        raise ProblemError(400, f"the body is not JSON: {exc}") from None
