"""`aimm dev` on the embedded default: one command runs it all, Ctrl-C stops it all.

This drives the real command line in a subprocess, with no AIMM_DATABASE_URL, so the
embedded PostgreSQL is initialised under a temporary data directory, used, stopped
on Ctrl-C, and found again with its data on the next start. A child killed with
SIGKILL is restarted by the supervisor, and the system works again.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from tests.conftest import free_port, server_home, wait_for_port


def start_dev(data_dir: Path, port: int) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIMM_")}
    env.update(
        {"AIMM_DATA_DIR": str(data_dir), "AIMM_PORT": str(port), "AIMM_LOG_LEVEL": "WARNING"}
    )
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "dev"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(proc: subprocess.Popen[str], pattern: str, timeout: float = 120) -> tuple[str, str]:
    """Lines printed until one matches ``pattern``; returns (all output, the match)."""
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return "".join(seen), match.group(0)
    raise AssertionError(f"{pattern!r} never printed; output was:\n{''.join(seen)}")


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_dev_runs_everything_on_the_embedded_database_and_keeps_data() -> None:
    with server_home() as home:
        run_dev_twice(home)


def run_dev_twice(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_dev(tmp_path / "data", port)
    try:
        _, key = read_until(proc, r"aimm_[A-Za-z0-9_-]{20,}")
        output, _ = read_until(proc, r"serving on")
        assert "assistant seed: role trading-assistant added" in output
        wait_for_port(port, timeout=60)
        headers = {"Authorization": f"Bearer {key}"}
        # the last seed role is read once projected (a read by id waits for it, bounded)
        last = httpx.get(
            f"{base}/api/v1/ai-assistant/roles/support-agent", headers=headers, timeout=30
        )
        assert last.status_code == 200, last.text
        config = httpx.get(f"{base}/api/v1/ai-assistant/config", headers=headers, timeout=30)
        assert len(config.json()["roles"]) == 4, config.text
        created = httpx.post(
            f"{base}/api/v1/ai/models",
            json={"name": "dev-model", "kind": "llm"},
            headers=headers,
            timeout=30,
        )
        assert created.status_code == 201, created.text
        position = created.headers["aimm-position"]
        listed = httpx.get(
            f"{base}/api/v1/ai/models?wait_for={position}", headers=headers, timeout=30
        )
        assert [m["name"] for m in listed.json()["items"]] == ["dev-model"]
    finally:
        code = stop(proc)
    assert code == 0
    pgdata = tmp_path / "data" / "pg"
    assert (pgdata / "PG_VERSION").exists()
    assert not (pgdata / "postmaster.pid").exists(), "Ctrl-C left the database running"

    proc = start_dev(tmp_path / "data", port)
    try:
        output, _ = read_until(proc, r"serving on")
        assert "admin key was created" not in output
        assert "assistant seed:" not in output  # the seed is there: nothing added again
        wait_for_port(port, timeout=60)
        listed = httpx.get(f"{base}/api/v1/ai/models", headers=headers, timeout=30)
        assert [m["name"] for m in listed.json()["items"]] == ["dev-model"]
    finally:
        assert stop(proc) == 0


def started_pids(output: str) -> dict[str, int]:
    """The services' pids from the supervisor's "<name> started (pid N)" lines."""
    return {m[1]: int(m[2]) for m in re.finditer(r"aimm dev: (\w+) started \(pid (\d+)\)", output)}


def test_dev_restarts_a_killed_child_and_ctrl_c_still_stops_all() -> None:
    with server_home() as home:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_dev(home / "data", port)
        pids: list[int] = []
        try:
            _, key = read_until(proc, r"aimm_[A-Za-z0-9_-]{20,}")
            output, _ = read_until(proc, r"worker started \(pid \d+\)")
            first = started_pids(output)
            assert set(first) == {"projector", "serve", "worker"}
            pids.extend(first.values())
            wait_for_port(port, timeout=60)
            headers = {"Authorization": f"Bearer {key}"}

            os.kill(first["projector"], signal.SIGKILL)
            _, line = read_until(
                proc, rf"projector \(pid {first['projector']}\) exited with code -9.*", 30
            )
            assert "restarting it in" in line
            _, restarted = read_until(proc, r"projector restarted \(pid \d+\)", 30)
            new_pid = int(re.findall(r"\d+", restarted)[-1])
            assert new_pid != first["projector"]
            pids.append(new_pid)
            # the other services were left running
            assert all(psutil.pid_exists(first[name]) for name in ("serve", "worker"))

            # the system works again: a command's position is reached by the new projector
            created = httpx.post(
                f"{base}/api/v1/ai/models",
                json={"name": "after-restart", "kind": "llm"},
                headers=headers,
                timeout=30,
            )
            assert created.status_code == 201, created.text
            # (each request waits server-side; a 503 says "not yet", and a client asks again
            # while the new projector starts)
            for _ in range(12):
                listed = httpx.get(
                    f"{base}/api/v1/ai/models",
                    params={"wait_for": created.headers["aimm-position"]},
                    headers=headers,
                    timeout=30,
                )
                if listed.status_code != 503:
                    break
            assert listed.status_code == 200, listed.text
            assert [m["name"] for m in listed.json()["items"]] == ["after-restart"]
        finally:
            code = stop(proc)
        assert code == 0
        assert not any(psutil.pid_exists(pid) for pid in pids), "a service outlived Ctrl-C"
        assert not (home / "data" / "pg" / "postmaster.pid").exists()
