"""Overload is refused cleanly (``api/overload.py``): a per-key rate limit answers 429 with
``Retry-After``, a body over the limit is 413, and a client that sends its request slowly
is cut off after ``AIMM_REQUEST_TIMEOUT`` while everyone else is served.

The rate limit and the body limit are checked on the real app in process; the slow
clients against ``aimm serve`` as a subprocess (uvicorn, as it runs in production) over
raw loopback sockets, since only a real server reads a request slowly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from infrastructure.settings import Settings, SettingsError
from tests.conftest import free_port
from tests.helpers import ADMIN_KEY, Api

ROOT = Path(__file__).resolve().parents[2]
MODELS = "/api/v1/ai/models"


@contextlib.asynccontextmanager
async def app_with(url: str, **env: str) -> AsyncIterator[Api]:
    settings = Settings.from_env({"AIMM_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY, **env})
    app = create_app(settings, url, run_projector=True)
    async with AsyncTestClient(app, timeout=30) as client:
        api = Api(client, url, {"admin": ADMIN_KEY})
        for role in ("operator", "viewer"):
            api.keys[role] = await api.key_for(role)
        yield api


async def event_count(api: Api) -> int:
    rows = await api.fetch("SELECT count(*) AS n FROM registry_events")
    return int(rows[0]["n"])


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert body["detail"]
    return body


# -- settings -----------------------------------------------------------------------------


def test_limit_settings_default_and_refuse_nonsense() -> None:
    limits = Settings.from_env({}).limits
    assert limits.rate_limit == ("second", 1000)
    assert limits.max_body_bytes == 32 * 1024 * 1024
    assert limits.request_timeout == 60.0
    assert Settings.from_env({"AIMM_RATE_LIMIT": "off"}).limits.rate_limit is None
    assert Settings.from_env({"AIMM_RATE_LIMIT": "30/Minute"}).limits.rate_limit == ("minute", 30)
    for bad in ("0/second", "ten/second", "5/week", "5", "-1/second"):
        with pytest.raises(SettingsError, match="AIMM_RATE_LIMIT"):
            Settings.from_env({"AIMM_RATE_LIMIT": bad})
    with pytest.raises(SettingsError, match="AIMM_MAX_BODY_BYTES"):
        Settings.from_env({"AIMM_MAX_BODY_BYTES": "0"})
    with pytest.raises(SettingsError, match="AIMM_REQUEST_TIMEOUT"):
        Settings.from_env({"AIMM_REQUEST_TIMEOUT": "soon"})


# -- rate limit ---------------------------------------------------------------------------


async def test_a_key_over_its_rate_limit_gets_429_with_retry_after(database_url: str) -> None:
    async with app_with(database_url, AIMM_RATE_LIMIT="3/minute") as api:
        for _ in range(3):
            ok = await api.client.get(MODELS, headers=api.auth("viewer"))
            assert ok.status_code == 200
            assert "RateLimit-Limit" not in ok.headers  # answers within the limit: as before
        refused = await api.client.get(MODELS, headers=api.auth("viewer"))
        body = assert_problem(refused, 429)
        assert body["title"] == "Too Many Requests"
        assert body["instance"] == MODELS
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.headers["RateLimit-Limit"] == "3"
        assert refused.headers["RateLimit-Remaining"] == "0"

        # per key, not per address: another key from the same client is still served
        other = await api.client.get(MODELS, headers=api.auth("operator"))
        assert other.status_code == 200

        # a refused command appends nothing (the operator's key has two calls left)
        for name in ("m-1", "m-2"):
            created = await api.client.post(
                MODELS, json={"name": name, "kind": "ml"}, headers=api.auth("operator")
            )
            assert created.status_code == 201, created.text
        before = await event_count(api)
        over = await api.client.post(
            MODELS, json={"name": "m-refused", "kind": "ml"}, headers=api.auth("operator")
        )
        assert_problem(over, 429)
        assert await event_count(api) == before

        # a request without a valid key is a 401 and does not count against any key
        for _ in range(5):
            assert_problem(await api.client.get(MODELS, headers={"Authorization": "Bearer x"}), 401)
        assert (await api.client.get(MODELS, headers=api.auth("admin"))).status_code == 200
        # the open health endpoints are not limited
        for _ in range(5):
            assert (await api.client.get("/health/live")).status_code == 200


async def test_the_rate_limit_can_be_switched_off(database_url: str) -> None:
    async with app_with(database_url, AIMM_RATE_LIMIT="off") as api:
        for _ in range(20):
            assert (await api.client.get(MODELS, headers=api.auth("viewer"))).status_code == 200


def test_the_openapi_document_names_429_and_413() -> None:
    app = create_app(Settings.from_env({}), "postgresql://unused/unused")
    schema = app.openapi_schema.to_schema()
    create = schema["paths"][MODELS]["post"]["responses"]
    listing = schema["paths"][MODELS]["get"]["responses"]
    for responses in (create, listing):
        assert "429" in responses
        assert "Retry-After" in responses["429"]["description"]
    assert "413" in create


# -- body size ----------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_413_and_appends_nothing(database_url: str) -> None:
    async with app_with(database_url, AIMM_MAX_BODY_BYTES="2048") as api:
        before = await event_count(api)
        big = {"name": "too-big", "kind": "ml", "description": "x" * 4000}
        response = await api.client.post(MODELS, json=big, headers=api.auth("operator"))
        body = assert_problem(response, 413)
        assert body["title"] == "Content Too Large"
        assert await event_count(api) == before
        small = {"name": "fits", "kind": "ml", "description": "x" * 1000}
        created = await api.client.post(MODELS, json=small, headers=api.auth("operator"))
        assert created.status_code == 201, created.text
        assert await event_count(api) > before


# -- slow clients, against the real server --------------------------------------------------


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[int]:
    """``aimm serve`` with a 2 s request deadline and a 64 KiB body limit."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMM_")}
    env.update(
        AIMM_DATABASE_URL=database_url,
        AIMM_PORT=str(port),
        AIMM_BOOTSTRAP_ADMIN_KEY=ADMIN_KEY,
        AIMM_LOG_LEVEL="WARNING",
        AIMM_REQUEST_TIMEOUT="2",
        AIMM_MAX_BODY_BYTES=str(64 * 1024),
    )
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).is_success:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "aimm serve did not become ready"
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (bounded: 30 s)."""
    return await asyncio.wait_for(reader.read(), 30)


async def served(port: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        response = await client.get(MODELS, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert response.status_code == 200


async def test_slow_headers_are_cut_off_while_others_are_served(server: int) -> None:
    # Twenty connections that start a request and never finish its headers, and one that
    # opens and says nothing: none of them holds up anyone else.
    slow = []
    for _ in range(20):
        reader, writer = await asyncio.open_connection("127.0.0.1", server)
        writer.write(b"GET /api/v1/ai/models HTTP/1.1\r\nHost: x\r\nAuthor")
        await writer.drain()
        slow.append((reader, writer))
    silent_reader, silent_writer = await asyncio.open_connection("127.0.0.1", server)
    for _ in range(5):
        await served(server)
    answers = await asyncio.gather(*(read_until_closed(r) for r, _ in slow))
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"application/problem+json" in answer
        assert b'"status": 408' in answer
    assert (await read_until_closed(silent_reader)).startswith(b"HTTP/1.1 408 ")
    for _, writer in [*slow, (silent_reader, silent_writer)]:
        writer.close()
    await served(server)


async def test_a_body_trickle_is_cut_off_and_appends_nothing(
    server: int, database_url: str
) -> None:
    # A complete request line and headers, then a body one byte at a time: the handler is
    # waiting on the body, and the deadline covers the whole request, not each byte.
    before = await registry_events(database_url)
    body = b'{"name": "trickled", "kind": "ml", "description": "' + b"x" * 2000 + b'"}'
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(
        b"POST /api/v1/ai/models HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {ADMIN_KEY}\r\n".encode()
        + b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    answer = asyncio.ensure_future(read_until_closed(reader))
    sent = 0
    while not answer.done() and sent < len(body):
        writer.write(body[sent : sent + 1])
        sent += 1
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        await asyncio.sleep(0.05)  # the trickle itself: 20 bytes a second
    received = await answer
    assert sent < len(body), "the server took the whole trickle"
    assert received.startswith(b"HTTP/1.1 408 "), received[:200]
    writer.close()
    await served(server)
    assert await registry_events(database_url) == before


async def registry_events(url: str) -> int:
    db = await asyncpg.connect(url)
    try:
        # the models' events (the bootstrap key may be recorded on its first use)
        return int(
            await db.fetchval(
                "SELECT count(*) FROM registry_events WHERE topic NOT LIKE 'domain.keys:%'"
            )
        )
    finally:
        await db.close()


async def test_a_streamed_body_over_the_limit_is_413(server: int) -> None:
    # No Content-Length (chunked): the limit is checked on the bytes as they arrive.
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "streamed", "kind": "ml", "description": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server}", timeout=30) as client:
        response = await client.post(
            MODELS,
            content=chunks(),
            headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
        )
    assert_problem(response, 413)
    await served(server)
