"""The auditor's commands: ``aimm replay`` prints a log, ``aimm audit verify`` checks
its hash chain (and, with ``--checkpoint``, that the chain still passes through heads
signed earlier), ``aimm audit keygen`` and ``aimm audit checkpoint`` make those signed
heads (see ``infrastructure.audit_checkpoint``)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

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
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A signed checkpoint (aimm audit checkpoint): the chain must still pass its heads.",
)
@click.option(
    "--public-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The public key (PEM) the checkpoint must be signed with; needed with --checkpoint.",
)
def audit_verify(  # noqa: PLR0912 - one report, text or JSON, with or without a checkpoint
    context: str | None, as_json: bool, checkpoint: Path | None, public_key: Path | None
) -> None:
    """Recompute each log's hash chain; exit 1 at the first changed, removed or reordered
    event, or (with --checkpoint) when the log and chain no longer extend signed heads."""
    import dataclasses

    import msgspec

    from application.contexts import CONTEXTS
    from infrastructure import audit_checkpoint
    from projections.audit_chain import verify

    if context is not None and context not in CONTEXTS:
        raise click.BadParameter(f"context must be one of {', '.join(CONTEXTS)}")
    if (checkpoint is None) != (public_key is None):
        raise click.UsageError("--checkpoint and --public-key go together")
    heads: list[audit_checkpoint.HeadCheck] = []
    try:
        if checkpoint is not None and public_key is not None:
            body = audit_checkpoint.read(checkpoint, public_key)
            checked = on_connection(
                load_settings(), lambda conn: audit_checkpoint.check(conn, body, context)
            )
            report, heads = checked.verification, checked.heads
        else:
            report = on_connection(load_settings(), lambda conn: verify(conn, context))
    except (LookupError, audit_checkpoint.CheckpointError) as exc:
        raise click.ClickException(str(exc)) from None
    heads_ok = all(h.ok for h in heads)
    if as_json:
        contexts = [{**dataclasses.asdict(c), "ok": c.ok} for c in report.contexts]
        document: dict[str, object] = {"ok": report.ok and heads_ok, "contexts": contexts}
        if checkpoint is not None:
            document["checkpoint"] = [{**dataclasses.asdict(h), "ok": h.ok} for h in heads]
        click.echo(msgspec.json.encode(document))
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
        for h in heads:
            if h.ok:
                click.echo(f"{h.context:12} ok      passes the checkpointed head {h.position}")
            else:
                now = "no link there" if h.found is None else f"hash {h.found}"
                click.echo(
                    f"{h.context:12} REWRITTEN  the checkpointed head {h.position} "
                    f"{h.expected} is now {now}"
                )
    if not report.ok:
        click.echo("the audit chain is broken", err=True)
        raise SystemExit(1)
    if not heads_ok:
        click.echo(
            "the log and its chain were rewritten after the checkpoint (they no longer "
            "pass through its signed heads)",
            err=True,
        )
        raise SystemExit(1)


@audit.command("keygen")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the private key (PEM, mode 0600); the public key goes to OUT.pub.",
)
def audit_keygen(out: Path) -> None:
    """Make an Ed25519 key pair for signing checkpoints (keep it away from the database)."""
    from infrastructure import audit_checkpoint

    try:
        public = audit_checkpoint.generate_key(out)
    except audit_checkpoint.CheckpointError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"private key {out}, public key {public}")


@audit.command("checkpoint")
@click.option(
    "--key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The Ed25519 private key (PEM) to sign with (aimm audit keygen).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the signed checkpoint (JSON).",
)
def audit_checkpoint_cmd(key_file: Path, out: Path) -> None:
    """Verify the chain, then write each log's head, signed, to OUT."""
    from infrastructure import audit_checkpoint

    try:
        private = audit_checkpoint.load_signing_key(key_file)
        document = on_connection(
            load_settings(), lambda conn: audit_checkpoint.sign_heads(conn, private)
        )
    except (LookupError, audit_checkpoint.CheckpointError) as exc:
        raise click.ClickException(str(exc)) from None
    audit_checkpoint.save(document, out)
    for head in document["heads"]:
        click.echo(f"{head['context']:12} head {head['position']} {head['hash']}")
    click.echo(f"signed checkpoint written to {out}")
