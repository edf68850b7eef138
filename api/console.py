"""The web console: its built files (``console/dist``) served at ``/`` without a key.

The page itself asks for the API key and sends it on every API call; the files hold no
data. ``/`` is the page, ``/assets/*`` its content-hashed files (cached for a year),
both gzip-compressed for a client that accepts it.
Every answer carries a Content-Security-Policy that lets the page load and connect only
to aimm itself: the console works offline and cannot be made to talk to another host.
Without a built console, ``/`` says how to build it and the API works as ever.
``index.html`` (under a kilobyte) is read on each request, so a console built or rebuilt
while the service runs is served at the next reload, without a restart.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from litestar import Response, Router, get
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router

# uPlot, Cytoscape.js and CodeMirror set inline styles on the elements they draw
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'self'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# paths the authentication middleware lets through (the page asks for the key itself)
OPEN_PATTERNS = ("^/$", "^/assets/")
# everything but the console is sent as it is (the compression middleware skips these)
UNCOMPRESSED = ("^/api/", "^/health/", "^/metrics", "^/schema")

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>aimm console</title></head>
<body><main><h1>The aimm console is not built</h1>
<p>The API runs: see <a href="/schema/openapi.json">/schema/openapi.json</a>.</p>
<p>The console needs Node.js 20 or newer and npm. With them, <code>make console</code>
(or <code>make run</code>) builds it into <code>{dist}</code>; reload this page.</p>
</main></body></html>
"""


def console_routes(dist: Path) -> list[Any]:
    """The handlers serving the console built into ``dist`` (a missing build is explained)."""

    @get("/", include_in_schema=False, sync_to_thread=False)
    def index() -> Response[bytes]:
        page = dist / "index.html"
        if page.is_file():
            body = page.read_bytes()
            status = 200
        else:
            body = NOT_BUILT.format(dist=html.escape(str(dist))).encode()
            status = 503
        return Response(
            body,
            status_code=status,
            media_type="text/html; charset=utf-8",
            headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
        )

    assets: Router = create_static_files_router(
        path="/assets",
        directories=[dist / "assets"],
        name="console-assets",
        include_in_schema=False,
        cache_control=CacheControlHeader(public=True, max_age=31536000, immutable=True),
    )
    return [index, assets]
