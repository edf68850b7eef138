"""The auditor's commands: ``aimm replay`` prints a log, ``aimm audit verify`` checks
its hash chain."""

from __future__ import annotations

import asyncio
import sys

import click

from api.cli.common import database, load_settings, on_connection, parse_time


@click.command()
@click.option(
    "--context",
    "context",
    required=True,
    help="registry, training, predictions, memory or assistant.",
)
@click.option(
    "--until", default=None, help="Stop after events stamped later than this ISO timestamp."
)
@click.option("--after", default=0, type=int, help="Start after this notification id.")
def replay(context: str, until: str | None, after: int) -> None:
    """Print a context's log as JSON lines, in log order."""
    from application.contexts import CONTEXTS
    from projections.events import replay_lines

    if context not in CONTEXTS:
        raise click.BadParameter(f"context must be one of {', '.join(CONTEXTS)}")
    settings = load_settings()
    cutoff = parse_time(until)
    with database(settings) as url:
        asyncio.run(replay_lines(url, context, after, cutoff, sys.stdout.buffer))


@click.group()
def audit() -> None:
    """Check the event logs against their tamper-evident hash chains."""


@audit.command("verify")
@click.option("--context", "context", default=None, help="Only this context (default: all five).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def audit_verify(context: str | None, as_json: bool) -> None:
    """Recompute each log's hash chain; exit 1 at the first changed, removed or reordered event."""
    import dataclasses

    import msgspec

    from application.contexts import CONTEXTS
    from projections.audit_chain import verify

    if context is not None and context not in CONTEXTS:
        raise click.BadParameter(f"context must be one of {', '.join(CONTEXTS)}")
    try:
        report = on_connection(load_settings(), lambda conn: verify(conn, context))
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        contexts = [{**dataclasses.asdict(c), "ok": c.ok} for c in report.contexts]
        click.echo(msgspec.json.encode({"ok": report.ok, "contexts": contexts}))
    else:
        for c in report.contexts:
            if c.broken is None:
                head = f"head {c.head_position} {c.head_hash}" if c.head_hash else "empty chain"
                click.echo(
                    f"{c.context:12} ok      {c.verified} verified, "
                    f"{c.unchained} not chained yet, {head}"
                )
            else:
                click.echo(
                    f"{c.context:12} BROKEN  at position {c.broken.position} "
                    f"({c.broken.kind}): {c.broken.detail}"
                )
    if not report.ok:
        click.echo("the audit chain is broken", err=True)
        raise SystemExit(1)
