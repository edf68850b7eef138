"""The lease heartbeat of a training worker: renew the lease, notice foreign writes.

While a worker trains a run, this thread renews the run's lease every ``interval``
seconds (``application.ports.JobQueue.renew``) and compares the run's stored version
with the last one the worker wrote (``known_version``, kept up to date by the
``RunRecorder``): a higher one means another writer (a ``StopRequested``, a takeover)
— ``changed`` is set and the recorder reloads. A renewal refused (the lease expired and
was taken over) sets ``lost``: the worker stops writing at once. While the database is
away the renewal is retried with backoff (``application.retry``).
"""

from __future__ import annotations

import logging
import threading

from application.ports import JobQueue, Lease
from application.retry import run_until_stopped

log = logging.getLogger(__name__)


class LeaseHeartbeat:
    """Renews the lease and notices versions of the run that another writer stored (see
    the module)."""

    def __init__(self, queue: JobQueue, lease: Lease, interval: float) -> None:
        self.queue, self.lease, self.interval = queue, lease, interval
        self.known_version = 0
        self.lost = threading.Event()
        self.changed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)

    def __enter__(self) -> LeaseHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        what = f"lease heartbeat for {self.lease.run_id}"
        while not self._stop.wait(self.interval):
            # While the database is away, retried with backoff (application.retry); a
            # lease that expired meanwhile and was taken over is lost when it is back.
            renewed = run_until_stopped(log, what, self._stop, self._renew)
            if renewed is False:
                self.lost.set()
                return

    def _renew(self) -> bool:
        if not self.queue.renew(self.lease):
            return False
        if self.queue.version_of(self.lease.run_id, self.lease.kind) > self.known_version:
            self.changed.set()
        return True
