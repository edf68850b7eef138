"""The supervisor of ``aimm dev``: it starts one process per service and keeps them up.

A child that exits while ``aimm dev`` is not stopping is started again, after one line
naming it, its pid and its exit code (``-9`` is a kill by signal 9). The delay before
the restart is capped exponential backoff: ``INITIAL`` seconds, doubling with each exit
in a row to at most ``CAP``; a child that stayed up ``STABLE`` seconds starts the count
afresh. So a child that keeps dying at once (a bad configuration, the database away)
does not spin, and a child that dies once after a long run is back at once. The delay
is never zero, which also keeps a terminal's Ctrl-C (delivered to every child as well
as to ``aimm dev``) from being mistaken for a crash.

The restart is the fallback, not how services live through a database outage: their
loops retry inside the process (``application.retry``) and reconnect by themselves, so a
restart of PostgreSQL of any length exits no child (``tests/faults/
test_database_restart.py``; docs/reliability.md, "Database outage"). A child that starts
while the database is away exits when it cannot migrate, and is started again here.

SIGINT or SIGTERM stops the supervisor: every running child gets SIGTERM, is waited
for (``STOP_SECONDS``), and killed if it does not exit.

Decision: a small loop here rather than a process manager (supervisord, circus,
honcho): those want their own configuration files or daemon, or do not restart, and
``aimm dev`` is one command for a newcomer. The restart policy is the same shape as
``application.retry``'s for the loops inside each process.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import click

INITIAL = 0.5  # seconds before the first restart
CAP = 30.0  # the longest wait before a restart
STABLE = 60.0  # up this long, a child's next exit counts as the first again
STOP_SECONDS = 15.0  # how long a child has to exit after SIGTERM
POLL_SECONDS = 0.2  # how often the children are looked at


def say(message: str) -> None:
    click.echo(f"aimm dev: {message}")


@dataclass
class Child:
    """One supervised service: its name, its command line, and its current process."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    proc: subprocess.Popen[Any] | None = None
    started: float = 0.0
    exits_in_a_row: int = 0
    restart_at: float | None = None
    pids: list[int] = field(default_factory=list)

    def start(self) -> None:
        self.proc = subprocess.Popen(list(self.argv), env=dict(self.env))  # noqa: S603
        self.started = time.monotonic()
        self.restart_at = None
        self.pids.append(self.proc.pid)

    def delay(self) -> float:
        """The wait before the next restart; counts this exit."""
        if time.monotonic() - self.started >= STABLE:
            self.exits_in_a_row = 0
        wait = min(CAP, INITIAL * 2**self.exits_in_a_row)
        self.exits_in_a_row += 1
        return wait


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    stopping = threading.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in signals}
    try:
        yield stopping
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def supervise(children: Sequence[Child]) -> None:
    """Start the children and keep them running until SIGINT or SIGTERM; then stop all."""
    with _stop_on_signals() as stopping:
        try:
            for child in children:
                child.start()
                assert child.proc is not None
                say(f"{child.name} started (pid {child.proc.pid})")
            while not stopping.wait(POLL_SECONDS):
                for child in children:
                    _look_after(child, stopping)
        finally:
            _stop_all(children)


def _look_after(child: Child, stopping: threading.Event) -> None:
    now = time.monotonic()
    if child.proc is not None and child.proc.poll() is not None:
        wait = child.delay()
        say(
            f"{child.name} (pid {child.proc.pid}) exited with code {child.proc.returncode}; "
            f"restarting it in {wait:.1f}s"
        )
        child.proc, child.restart_at = None, now + wait
    if child.proc is None and child.restart_at is not None and now >= child.restart_at:
        if stopping.is_set():
            return
        child.start()
        assert child.proc is not None
        say(f"{child.name} restarted (pid {child.proc.pid})")


def _stop_all(children: Sequence[Child]) -> None:
    running = [c.proc for c in children if c.proc is not None]
    for proc in running:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in running:
        try:
            proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
