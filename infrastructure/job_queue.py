"""The job queue in PostgreSQL: leases claimed with ``FOR UPDATE SKIP LOCKED``.

One queue for every kind of long work (``kind``: ``training`` runs, ``prediction``
jobs, ``prompt_test`` jobs), so one worker process serves them all and more workers scale them out.
Which jobs exist and whether they are queued is the log's business; the queue only
holds *who works on what until when*. Workers fill it from the jobs read models
(``rm_training_jobs``, ``rm_prediction_jobs``, ``rm_prompt_test_jobs``: jobs still
queued or running, ``ON CONFLICT DO NOTHING``), so a job is enqueued even if the
process that requested it died right after saving its event, and the table can be
dropped at any time without losing a job. It is not a projection (rebuilding the read
models must not forget leases), so it lives beside the key store.

A claim takes the oldest row that is queued or whose lease has expired, skipping rows
another worker is claiming at that moment, and sets a lease of ``lease_seconds``; the
holder renews it on each heartbeat. A killed worker stops renewing, its lease
expires, and the next claim takes the run over with the attempt count raised, naming
the previous holder, so the run is restarted or, past ``max_attempts``, failed.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from application.ports import Lease

DDL = """
CREATE TABLE IF NOT EXISTS aimm_job_queue (
    run_id uuid PRIMARY KEY,
    state text NOT NULL DEFAULT 'queued',
    owner text,
    previous_owner text,
    lease_expires_at timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    enqueued_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE aimm_job_queue ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'training';
CREATE INDEX IF NOT EXISTS aimm_job_queue_claimable
    ON aimm_job_queue (enqueued_at) WHERE state <> 'done';
"""

# kind -> (the read model of its jobs, its context's events table)
KINDS: dict[str, tuple[str, str]] = {
    "training": ("rm_training_jobs", "training_events"),
    "prediction": ("rm_prediction_jobs", "predictions_events"),
    "prompt_test": ("rm_prompt_test_jobs", "assistant_events"),
}


class PostgresJobQueue:
    """The ``application.ports.JobQueue`` of PostgreSQL: claim, renew and release jobs of
    every kind (synchronous: the worker is a thread world)."""

    def __init__(self, datastore: Any, lease_seconds: float) -> None:
        self.datastore = datastore
        self.lease_seconds = lease_seconds
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SELECT pg_advisory_xact_lock(hashtextextended('aimm.job_queue', 0))")
            curs.execute(DDL)

    def sync(self) -> int:
        """Enqueue jobs the read models show as queued or running and the queue lacks."""
        added = 0
        with self.datastore.transaction(commit=True) as curs:
            for kind, (jobs_table, _) in KINDS.items():
                curs.execute("SELECT to_regclass(%s) AS t", (jobs_table,))
                row = curs.fetchone()
                if row is None or row["t"] is None:
                    continue
                curs.execute(
                    "INSERT INTO aimm_job_queue (run_id, kind, enqueued_at) "
                    f"SELECT id, %s, requested_at FROM {jobs_table} "
                    "WHERE status IN ('queued', 'running') ON CONFLICT (run_id) DO NOTHING",
                    (kind,),
                )
                added += int(curs.rowcount or 0)
        return added

    def claim(self, owner: str, kinds: tuple[str, ...] = ("training",)) -> Lease | None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "WITH next AS ("
                "  SELECT run_id, state = 'leased' AS expired FROM aimm_job_queue"
                "  WHERE (state = 'queued' OR (state = 'leased' AND lease_expires_at < now()))"
                "  AND kind = ANY(%s)"
                "  ORDER BY enqueued_at, run_id LIMIT 1 FOR UPDATE SKIP LOCKED) "
                "UPDATE aimm_job_queue q SET state = 'leased', owner = %s, "
                "previous_owner = q.owner, attempts = q.attempts + 1, updated_at = now(), "
                "lease_expires_at = now() + make_interval(secs => %s) "
                "FROM next WHERE q.run_id = next.run_id "
                "RETURNING q.run_id, q.kind, q.attempts, q.previous_owner, q.lease_expires_at, "
                "next.expired",
                (list(kinds), owner, self.lease_seconds),
            )
            row = curs.fetchone()
        if row is None:
            return None
        return Lease(
            run_id=row["run_id"],
            owner=owner,
            attempt=row["attempts"],
            previous_owner=row["previous_owner"],
            expires_at=row["lease_expires_at"],
            expired_before=bool(row["expired"]),
            kind=row["kind"],
        )

    def renew(self, lease: Lease) -> bool:
        """Extend the lease; False when it was lost (expired and taken over)."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "UPDATE aimm_job_queue SET lease_expires_at = now() + make_interval(secs => %s),"
                " updated_at = now() WHERE run_id = %s AND owner = %s AND attempts = %s "
                "AND state = 'leased'",
                (self.lease_seconds, lease.run_id, lease.owner, lease.attempt),
            )
            return bool(curs.rowcount)

    def release(self, lease: Lease) -> None:
        """The run has ended: nobody needs to claim it again."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "UPDATE aimm_job_queue SET state = 'done', lease_expires_at = NULL, "
                "updated_at = now() WHERE run_id = %s AND owner = %s AND attempts = %s",
                (lease.run_id, lease.owner, lease.attempt),
            )

    def version_of(self, run_id: UUID, kind: str = "training") -> int:
        """The job's latest stored version: cheap, for a heartbeat to notice a stop."""
        events_table = KINDS[kind][1]
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                f"SELECT max(originator_version) AS v FROM {events_table} WHERE originator_id = %s",
                (run_id,),
            )
            row = curs.fetchone()
        return int(row["v"] or 0) if row else 0
