"""Bearer API keys: authentication middleware, role guards and the correlation id."""

from __future__ import annotations

import hmac
import re
import uuid
from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.middleware import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
    DefineMiddleware,
)
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.console import OPEN_PATTERNS as CONSOLE_PATTERNS
from api.keycache import BOOTSTRAP_ADMIN
from infrastructure.keys import Principal

OPEN_PATHS = {"/health/live", "/health/ready"}
_CORRELATION = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class KeyAuthentication(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise NotAuthorizedException("an API key is required: Authorization: Bearer <key>")
        key = key.strip()
        state = connection.app.state
        bootstrap: str | None = state.settings_admin_key
        unrecorded = None
        if bootstrap is not None and hmac.compare_digest(key.encode(), bootstrap.encode()):
            # a key like any other once recorded (see api.keycache): revocable, audited
            unrecorded = Principal(BOOTSTRAP_ADMIN, frozenset({"admin"}))
        principal = await state.key_cache.lookup(key, unrecorded)
        if principal is None:
            raise NotAuthorizedException("the API key is unknown or revoked")
        return AuthenticationResult(principal, key)


def authentication_middleware() -> DefineMiddleware:
    return DefineMiddleware(
        KeyAuthentication, exclude=[*(f"^{p}$" for p in OPEN_PATHS), *CONSOLE_PATTERNS]
    )


def allow(*roles: str) -> Any:
    """A guard letting through callers holding one of ``roles`` (admins always)."""
    allowed = frozenset(roles) | {"admin"}

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if connection.scope.get("method") == "OPTIONS" and "user" not in connection.scope:
            # OPTIONS is answered without authentication (it only lists the methods of a
            # path); a guard of a whole controller must let it through, not fail.
            return
        principal: Principal = connection.user
        if not principal.has_any(allowed):
            raise PermissionDeniedException(
                f"this needs one of the roles {', '.join(sorted(allowed))}; "
                f"the key has {', '.join(sorted(principal.roles)) or 'none'}"
            )

    return guard


# What each kind of operation needs (an admin passes every one): the guards below and
# ``GET /api/v1/me``, which tells a key what it may do, both read this table.
PERMISSIONS: dict[str, frozenset[str]] = {
    "read": frozenset({"viewer", "operator", "auditor"}),
    "write": frozenset({"operator"}),
    "audit": frozenset({"auditor"}),
    # an agent's key: its own agent's memory only (api/controllers/memory.py)
    "read_memory": frozenset({"viewer", "operator", "auditor", "agent"}),
    "write_memory": frozenset({"operator", "agent"}),
    # rules only an admin passes, checked in their handlers: concluding an experiment,
    # moving a protected label
    "admin": frozenset(),
}


def permissions_of(principal: Principal) -> dict[str, bool]:
    """Which of ``PERMISSIONS`` the caller holds."""
    return {name: principal.has_any(roles | {"admin"}) for name, roles in PERMISSIONS.items()}


READ = allow(*PERMISSIONS["read"])
WRITE = allow(*PERMISSIONS["write"])
AUDIT = allow(*PERMISSIONS["audit"])
READ_MEMORY = allow(*PERMISSIONS["read_memory"])
WRITE_MEMORY = allow(*PERMISSIONS["write_memory"])


def correlation_middleware(app: ASGIApp) -> ASGIApp:
    """Take X-Correlation-ID from the request (or make one) and echo it back."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        given = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"x-correlation-id"), ""
        )
        correlation_id = given if _CORRELATION.match(given) else str(uuid.uuid4())
        scope.setdefault("state", {})["correlation_id"] = correlation_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableScopeHeaders.from_message(message)["X-Correlation-ID"] = correlation_id
            await send(message)

        await app(scope, receive, send_with_id)

    return middleware
