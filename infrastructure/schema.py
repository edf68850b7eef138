"""Bring a database up to what this version of aimm needs (idempotent, safe to rerun)."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import asyncpg
from eventsourcing.projection import EventSourcedProjection

from application.registrar import ModelRegistrar
from application.scorer import PredictionScorer
from infrastructure import job_queue, kafka_relay, keys
from infrastructure.postgres import ensure_database, eventsourcing_env
from infrastructure.wiring import build_contexts
from projections import projector
from projections.catalog import all_projections


async def migrate(url: str) -> None:
    """Create the database, the events tables (and, with them, the payload, artifact and
    memory-key stores), the API key store, relay positions, the job queue and the read
    models.

    Several processes migrate when they start (API, projector, worker, relay). All of
    it runs under one session advisory lock, taken before anything is created: two
    sessions creating the same new table at once can fail (PostgreSQL's catalog refuses
    the second ``CREATE TABLE IF NOT EXISTS``), so they must not overlap. The stores that
    create their own table on construction use other lock keys, so building the
    applications under this lock cannot wait on it.
    """
    await ensure_database(url)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SELECT pg_advisory_lock(hashtextextended('aimm.migrate', 0))")
        # The event store creates its tables (one per context) when the applications start.
        contexts = await asyncio.to_thread(build_contexts, eventsourcing_env(url, pool_size=1))
        contexts.close()
        # ...and the process managers' tracking tables (registry_tracking,
        # predictions_tracking): the services build everything without creating tables
        await asyncio.to_thread(_create_tracking_tables, eventsourcing_env(url, pool_size=1))
        # API keys are events now; an older version's key table becomes events below.
        await keys.set_aside_legacy_table(conn)
        # The relay's positions (and its dead letters, kafka_dead_letters) exist from the
        # start, like every other table: nothing that reads them has to race a relay's first start.
        await kafka_relay.setup(conn)
        await conn.execute(job_queue.DDL)
        # trigram matching for memory search (a trusted extension: the owner may create it)
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        await projector.setup(conn, all_projections())
        await keys.import_legacy_keys(conn)
    finally:
        await conn.close()


class _TrackingTables(EventSourcedProjection[UUID]):
    """A process manager's recorder and nothing else: constructing it creates the log's
    tracking table, as the process manager would at its first start."""

    def policy(self, domain_event: Any, processing_event: Any) -> None:
        """Never runs: nothing is followed."""


def _create_tracking_tables(env: dict[str, str]) -> None:
    for manager in (ModelRegistrar, PredictionScorer):
        tables = type(f"{manager.__name__}Tables", (_TrackingTables,), {"name": manager.name})
        tables(env=env).close()
