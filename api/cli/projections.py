"""``aimm projections``: each read model's position and lag, and rebuilds (as of a time too)."""

from __future__ import annotations

import asyncio

import click

from api.cli.common import database, load_settings, on_connection, parse_time


@click.group()
def projections() -> None:
    """Inspect and rebuild the read models."""


@projections.command("status")
def projections_status() -> None:
    """Each projection's position, the log head and the lag in events."""
    from rich.console import Console
    from rich.table import Table

    from projections.positions import status

    rows = on_connection(load_settings(), status)
    table = Table("projection", "context", "position", "head", "lag", "updated")
    for r in rows:
        table.add_row(
            r.projection,
            r.context,
            str(r.position),
            str(r.head),
            str(r.lag),
            f"{r.updated_at:%Y-%m-%d %H:%M:%S}",
        )
    Console().print(table)


@projections.command("rebuild")
@click.option(
    "--as-of",
    "as_of",
    default=None,
    help="Only events up to this ISO timestamp, into a separate asof_* schema.",
)
@click.option(
    "--projection",
    "names",
    multiple=True,
    help="Rebuild only these (default: all but the audit chain).",
)
def projections_rebuild(as_of: str | None, names: tuple[str, ...]) -> None:
    """Rebuild read models from the logs into fresh tables, then switch to them.

    The audit chain is rebuilt only when named, and only while it still verifies:
    rehashing a tampered log would erase the evidence the chain exists to keep.
    """
    from rich.progress import Progress

    from infrastructure.postgres import create_pool
    from infrastructure.schema import migrate as run_migrate
    from projections.audit_chain import AuditChain, verify
    from projections.catalog import all_projections
    from projections.events import UnreadableEventError
    from projections.rebuild import rebuild_many

    settings = load_settings()
    cutoff = parse_time(as_of)
    chosen = [
        p for p in all_projections() if (p.name in names if names else p.name != AuditChain.name)
    ]
    unknown = set(names) - {p.name for p in chosen}
    if unknown:
        raise click.BadParameter(f"unknown projection(s): {', '.join(sorted(unknown))}")

    async def run(url: str) -> None:
        await run_migrate(url)
        # One connection per read model, and one to read the logs ahead on.
        pool = await create_pool(url, max_size=len(chosen) + 1)
        try:
            if cutoff is None and any(p.name == AuditChain.name for p in chosen):
                async with pool.acquire() as conn:
                    verification = await verify(conn)
                if not verification.ok:
                    raise click.ClickException(
                        "the audit chain does not verify (see `aimm audit verify`); "
                        "rebuilding it would erase that evidence, so it was not rebuilt"
                    )
            with Progress() as progress:
                # All of them in one pass over each log: every batch is read once.
                task = progress.add_task(", ".join(p.name for p in chosen), total=None)

                def report(done: int, total: int) -> None:
                    progress.update(task, completed=done, total=total)

                try:
                    results = await rebuild_many(pool, chosen, as_of=cutoff, progress=report)
                except UnreadableEventError as exc:  # the live read models stay as they were
                    raise click.ClickException(
                        f"{exc}: repair or restore that row (docs/reliability.md, "
                        "'Unreadable events and artifacts'); the read models in use were "
                        "left as they were"
                    ) from None
                done = max((r.events for r in results), default=0)
                progress.update(task, completed=done, total=max(done, 1))
                for result in results:
                    where = ", ".join(result.tables.values())
                    line = f"{result.projection}: {result.events} events -> {where}"
                    progress.console.print(line)
        finally:
            await pool.close()

    with database(settings) as url:
        asyncio.run(run(url))
