"""How the API refuses overload: a rate limit per API key, a body size limit, and a
deadline for receiving a request, so that a slow client holds nothing.

**Rate limit** (``AIMM_RATE_LIMIT``, default ``1000/second``, ``off`` to disable):
Litestar's own ``RateLimitMiddleware``, keyed on the authenticated key (its id; the
bootstrap admin key by its principal), not on the client's address — many agents may
share an address, and one key is one caller. It runs after authentication, so a
request without a valid key is a 401 and counts for nothing. Past the limit the answer
is ``429`` problem+json with ``Retry-After`` (whole seconds until the window resets,
at least 1) and the ``RateLimit-Limit``/``-Remaining``/``-Reset``/``-Policy`` headers;
answers within the limit carry no extra headers. The window is Litestar's: a fixed
window of the configured unit. The count lives in the process (Litestar's memory
store), so with N API replicas a key gets up to N times the limit in all: the limit
guards each replica from one caller, it is not a global quota (that would need a
shared store). The default is generous on purpose: one replica here serves well under
1,000 requests a second, so the default only stops a runaway client on a bigger
machine; set a lower one per deployment.

**Body size** (``AIMM_MAX_BODY_BYTES``, default 32 MiB, the market-data import's
documented limit and so the largest body any operation takes): Litestar's
``request_max_body_size``; a larger body is a ``413`` problem+json — at once when
``Content-Length`` announces it, else as soon as the bytes received pass it.

**Request deadline** (``AIMM_REQUEST_TIMEOUT``, default 60 s): uvicorn serves every
connection on one event loop, so a slow client never holds a thread; but it has no
deadline for *receiving* a request: a client that opens a connection and sends
nothing, or trickles its headers or its body a byte at a time ("slowloris"), keeps its
socket, its buffers and — once its headers are in — a handler waiting on the body, for
as long as it likes. :class:`DeadlineProtocol` adds that deadline to uvicorn's
httptools protocol (the one ``aimm serve`` uses): from the moment a connection opens or
a request's first byte arrives, the whole request (headers and body) must be in within
the timeout. Past it the server answers ``408 Request Timeout`` (problem+json, unless a
response was already started) and closes the connection; a handler waiting on the body
sees the client disconnect. The clock stops when the request is complete, so a slow
*response* (a read-your-writes wait, a Server-Sent Events stream) is never cut. An idle
keep-alive connection between requests is closed by uvicorn's own
``timeout_keep_alive`` (5 s), as before. This leans on uvicorn's protocol callbacks
(``connection_made``, ``on_message_begin``, ``on_headers_complete``,
``on_message_complete``, ``connection_lost``); uvicorn is pinned and
``tests/e2e/test_overload.py`` pins the behaviour.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from litestar.connection import Request
from litestar.middleware.rate_limit import CacheObject, RateLimitConfig, RateLimitMiddleware
from litestar.types import Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from infrastructure.keys import Principal

# -- rate limit ---------------------------------------------------------------------------


class KeyRateLimit(RateLimitMiddleware):
    """Litestar's rate limit, with ``Retry-After`` on the 429 and no headers otherwise."""

    def create_send_wrapper(self, send: Send, cache_object: CacheObject) -> Send:
        return send  # answers within the limit are left as they are

    def create_response_headers(self, cache_object: CacheObject) -> dict[str, str]:
        headers = super().create_response_headers(cache_object)  # only the 429 uses them
        headers["Retry-After"] = str(max(1, cache_object.reset - int(time.time())))
        return headers


def _key_of(request: Request[Any, Any, Any]) -> str:
    principal: Principal = request.scope["user"]
    return principal.key_id or f"principal:{principal.name}"


def _authenticated(request: Request[Any, Any, Any]) -> bool:
    return isinstance(request.scope.get("user"), Principal)


def rate_limit(limit: tuple[str, int]) -> RateLimitConfig:
    """The per-key rate limit as Litestar middleware (place it after authentication)."""
    unit, count = limit
    return RateLimitConfig(
        rate_limit=(unit, count),  # type: ignore[arg-type]
        identifier_for_request=_key_of,
        check_throttle_handler=_authenticated,
        middleware_class=KeyRateLimit,
        store="aimm_rate_limit",
    )


# -- request deadline ---------------------------------------------------------------------

PROBLEM_JSON = b"application/problem+json"


def _timeout_response(seconds: float) -> bytes:
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Request Timeout",
            "status": 408,
            "detail": f"the request was not received in full within {seconds:g} seconds",
        }
    ).encode()
    return b"".join(
        [
            b"HTTP/1.1 408 Request Timeout\r\n",
            b"content-type: " + PROBLEM_JSON + b"\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for receiving each request."""

    request_timeout: float = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._in_headers = True  # no request cycle of this request exists yet

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.request_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._arm()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._in_headers or not self.cycle.response_started:
            self.transport.write(_timeout_response(self.request_timeout))
        self.logger.info("closed a connection whose request took over %gs", self.request_timeout)
        self.transport.close()


def deadline_protocol(request_timeout: float) -> type[DeadlineProtocol]:
    """A :class:`DeadlineProtocol` class with ``request_timeout`` seconds (uvicorn builds
    one protocol object per connection from the class it is given as ``http``)."""
    return type("DeadlineProtocol", (DeadlineProtocol,), {"request_timeout": request_timeout})
