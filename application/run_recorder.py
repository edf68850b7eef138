"""The event recorder of a training run: saves its events in order, off the training loop.

See ``RunRecorder``. ``Abandon`` is what it raises in the training loop when this
worker may no longer write for the run.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from eventsourcing.persistence import IntegrityError

from application.lease_heartbeat import LeaseHeartbeat
from application.training import TrainingApplication
from domain.ml.runs import STOPPED, TrainingRun


class Abandon(Exception):
    """This worker may no longer write for the run (lease lost or attempt superseded)."""


class RunRecorder:
    """Saves a run's events in a thread of its own, in order, while training goes on.

    Saving an event costs about as much as a small epoch of training. Done here, the
    next chunk of steps runs meanwhile (JAX releases the GIL), and points that arrive
    within ``FLUSH_SECONDS`` of the last save are saved together in one transaction
    (each stays its own event, stamped when it was recorded), so short epochs do not
    pay a transaction each; a point is stored at most ``FLUSH_SECONDS`` after the
    trainer produced it. This thread is the only one touching the run aggregate after
    its start: it notices (from a refused save, or the heartbeat) a version it did not
    write, reloads, re-applies what was not saved yet, and raises the ``stop_requested``
    or ``abandoned`` flag the training loop checks at every chunk.
    """

    FLUSH_SECONDS = 0.2

    def __init__(
        self, training: TrainingApplication, run: TrainingRun, attempt: int, beat: LeaseHeartbeat
    ) -> None:
        self.training, self.run, self.attempt, self.beat = training, run, attempt, beat
        self.items: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.stop_requested = run.stop_requested
        self.abandoned: str | None = None
        self.error: BaseException | None = None
        self.unsaved: list[tuple[str, Any]] = []
        self.last_flush = time.monotonic()
        self._thread = threading.Thread(target=self._work, name="event-recorder", daemon=True)

    def __enter__(self) -> RunRecorder:
        self.beat.known_version = self.run.version
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.items.put(("exit", None))
        self._thread.join()

    def put(self, point: dict[str, Any]) -> None:
        self.items.put(("point", point))

    def check(self) -> None:
        """Raise in the training loop what the recorder has found."""
        if self.error is not None:
            raise self.error
        if self.abandoned is not None:
            raise Abandon(self.abandoned)
        if self.beat.lost.is_set():
            raise Abandon("the lease was lost")

    def drain(self) -> None:
        """Wait until every point put so far is saved."""
        self.items.put(("flush", None))
        self.items.join()
        self.check()

    def end(self, ending: str, fields: dict[str, Any]) -> None:
        self.items.put(("end", (ending, fields)))
        self.items.put(("flush", None))
        self.items.join()
        self.check()

    def _work(self) -> None:
        while True:
            # Sleep until the next flush is due, or a while when nothing waits (a stop
            # request is still noticed through the heartbeat within that while).
            wait = self.FLUSH_SECONDS if self.unsaved else 0.5
            try:
                kind, payload = self.items.get(timeout=wait)
            except queue.Empty:
                kind, payload = "idle", None
            try:
                if self.abandoned is None and self.error is None:
                    if self.beat.changed.is_set() and not self.unsaved:
                        self._reload()
                    if kind in ("point", "end"):
                        self.unsaved.append((kind, payload))
                        self._act(kind, payload)
                    due = time.monotonic() - self.last_flush >= self.FLUSH_SECONDS
                    if self.unsaved and (due or kind in ("flush", "exit")):
                        self._flush()
            except Abandon as exc:
                self.abandoned = str(exc)
            except BaseException as exc:  # noqa: BLE001 - handed to the training loop
                self.error = exc
            finally:
                if kind != "idle":
                    self.items.task_done()
            if kind == "exit":
                return

    def _act(self, kind: str, payload: Any) -> None:
        run = self.run
        if kind == "point":
            run.record(self.attempt, payload)
            return
        ending, fields = payload
        if run.stop_requested:  # also a stop that arrived while the ending was prepared
            fields = {k: v for k, v in fields.items() if k != "decision"}
            ending, fields["reason"] = STOPPED, run.stop_reason
        run.end(ending, self.attempt, **fields)

    def _reload(self) -> None:
        self.beat.changed.clear()
        self.run = self.training.get_run(self.run.id)
        self.beat.known_version = self.run.version
        if self.run.attempt != self.attempt or self.run.finished:
            raise Abandon(f"the run moved on (attempt {self.run.attempt}, {self.run.status})")
        self.stop_requested = self.run.stop_requested

    def _flush(self) -> None:
        """Save the unsaved events in one transaction; on a conflict, reload and redo."""
        for _ in range(20):
            try:
                self.training.save(self.run)
            except IntegrityError:  # another writer (a stop request) came first
                self._reload()
                for kind, payload in self.unsaved:
                    self._act(kind, payload)
                continue
            self.unsaved.clear()
            self.last_flush = time.monotonic()
            self.beat.known_version = self.run.version
            return
        raise Abandon("the run kept changing under this worker")
