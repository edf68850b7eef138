"""What the benchmarks share: a PostgreSQL server and a fresh database to work in, and
aimm's own processes started as ``aimm dev`` starts them (``aimm_services``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from infrastructure.postgres import embedded_server, with_database


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """``AIMM_DATABASE_URL``'s server, or the embedded one in a temporary directory."""
    url = os.environ.get("AIMM_DATABASE_URL")
    if url:
        yield url
        return
    tmp = Path(tempfile.mkdtemp(prefix="aimm-bench-"))
    tmp.chmod(0o755)  # the embedded server may run as its own system user
    try:
        with embedded_server(tmp / "pg") as embedded_url:
            yield embedded_url
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    name = f"aimm_bench_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(with_database(server_url, "postgres"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(server_url, name)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def service_env(url: str, **extra: str) -> dict[str, str]:
    """The environment aimm's processes run with in a benchmark: this one, on the
    benchmark's database, logging warnings only; ``extra`` adds ``AIMM_*`` settings."""
    return {**os.environ, "AIMM_DATABASE_URL": url, "AIMM_LOG_LEVEL": "WARNING", **extra}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """A server process (output discarded), returned once it accepts connections on
    ``port``; killed if it does not within a minute."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server on port {port} did not start")


def stop(procs: Iterable[subprocess.Popen[bytes]], timeout: float = 20) -> None:
    """Terminate each process, waiting ``timeout`` seconds before killing it."""
    for proc in procs:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@dataclass
class Services:
    """``aimm serve`` at ``base`` and the background services beside it."""

    base: str
    port: int
    serve: subprocess.Popen[bytes]
    background: dict[str, subprocess.Popen[bytes]]
    # every process stopped when the block ends: these, and any a benchmark adds (a bare
    # baseline server)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


@contextlib.contextmanager
def aimm_services(
    env: dict[str, str], background: tuple[str, ...] = ("projector",)
) -> Iterator[Services]:
    """``aimm serve`` on a free port and the ``background`` services (``projector``,
    ``worker``), each its own process as ``aimm dev`` runs them, with ``env``; all are
    stopped when the block ends. Yields once the API accepts connections."""
    procs: list[subprocess.Popen[bytes]] = []  # Services.procs: whatever is added is stopped too
    try:
        started = {}
        for service in background:
            started[service] = subprocess.Popen(
                [sys.executable, "-m", "api.cli", service],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            procs.append(started[service])
        port = free_port()
        serve = start(
            [sys.executable, "-m", "api.cli", "serve"], {**env, "AIMM_PORT": str(port)}, port
        )
        procs.append(serve)
        yield Services(f"http://127.0.0.1:{port}", port, serve, started, procs)
    finally:
        stop(procs)
