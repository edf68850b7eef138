"""``aimm kafka dead-letters``: the records the relay could not publish, and their retry.

The relay (``infrastructure.kafka_relay``) moves past a record the broker refuses for
good (too large, invalid for the topic's schema) or a stored event that cannot be
decoded, and keeps it in ``kafka_dead_letters``. This lists the unresolved ones (all
with ``--all``); ``--retry`` sends each again, alone, from the log as stored now, and
marks it resolved once the broker acknowledges it (it then reaches its topic after the
later events of its aggregate). The command exits 1 while dead letters stay unresolved,
so a script or a health check can tell.
"""

from __future__ import annotations

import asyncio

import click

from api.cli.common import database, load_settings


@click.group()
def kafka() -> None:
    """Inspect and retry what the Kafka relay could not publish."""


@kafka.command("dead-letters")
@click.option("--context", default=None, help="Only this context's log.")
@click.option("--all", "include_resolved", is_flag=True, help="Also list resolved ones.")
@click.option(
    "--retry", is_flag=True, help="Send the unresolved ones again (needs AIMM_KAFKA_BOOTSTRAP)."
)
def dead_letters_command(context: str | None, include_resolved: bool, retry: bool) -> None:
    """List the relay's dead letters; with --retry, send them again."""
    import asyncpg
    from rich.console import Console
    from rich.table import Table

    from application.contexts import CONTEXTS
    from infrastructure.kafka_relay import (
        KafkaPublisher,
        dead_letters,
        retry_dead_letters,
        setup,
    )
    from infrastructure.postgres import create_pool
    from infrastructure.schema import migrate

    if context is not None and context not in CONTEXTS:
        raise click.BadParameter(f"context must be one of {', '.join(CONTEXTS)}")
    settings = load_settings()
    if retry and settings.kafka_bootstrap is None:
        raise click.ClickException(
            "AIMM_KAFKA_BOOTSTRAP is not set: --retry needs the Kafka broker to send to"
        )

    async def run(url: str) -> int:
        await migrate(url)
        if retry:
            assert settings.kafka_bootstrap is not None
            publisher = KafkaPublisher(settings.kafka_bootstrap)
            pool = await create_pool(url, max_size=2)
            try:
                outcome = await retry_dead_letters(pool, publisher, context=context)
            finally:
                await asyncio.to_thread(publisher.close)
                await pool.close()
            click.echo(
                f"republished {len(outcome.republished)}, "
                f"still failing {len(outcome.still_failing)}"
            )
        conn = await asyncpg.connect(url)
        try:
            await setup(conn)
            letters = await dead_letters(conn, context=context, include_resolved=include_resolved)
            unresolved = len(await dead_letters(conn, context=context))
        finally:
            await conn.close()
        table = Table(
            "context", "position", "aggregate", "version", "type", "topic", "reason",
            "failed at", "attempts", "resolved at",
        )  # fmt: skip
        for d in letters:
            resolved = "-" if d.resolved_at is None else f"{d.resolved_at:%Y-%m-%d %H:%M:%S}"
            table.add_row(
                d.context, str(d.position), str(d.aggregate_id), str(d.aggregate_version),
                d.type or "-", d.topic, d.reason, f"{d.failed_at:%Y-%m-%d %H:%M:%S}",
                str(d.attempts), resolved,
            )  # fmt: skip
        Console(width=200).print(table)
        return unresolved

    with database(settings) as url:
        unresolved = asyncio.run(run(url))
    if unresolved:
        raise SystemExit(1)
