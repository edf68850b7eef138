"""The ``aimm`` command line: run the service, manage keys and projections, replay logs."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import click

from infrastructure.settings import Settings, SettingsError

T = TypeVar("T")


def load_settings() -> Settings:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(f"invalid configuration: {exc}") from None
    settings.configure_logging()
    return settings


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The configured server's URL, or the embedded server's while the block runs."""
    if settings.database_url is not None:
        yield settings.database_url
        return
    from infrastructure.postgres import embedded_server

    with embedded_server(settings.pgdata) as url:
        yield url


def on_connection(
    settings: Settings,
    work: Callable[[asyncpg.Connection], Awaitable[T]],
    *,
    migrated: bool = False,
) -> T:
    """Run ``work`` on one connection to the database (migrating it first if asked)."""

    async def run(url: str) -> T:
        if migrated:
            from infrastructure.schema import migrate as run_migrate

            await run_migrate(url)
        conn = await asyncpg.connect(url)
        try:
            return await work(conn)
        finally:
            await conn.close()

    with database(settings) as url:
        return asyncio.run(run(url))


def run_until_signalled(
    settings: Settings,
    pool_size: int,
    follow: Callable[[asyncpg.Pool, asyncio.Event], Awaitable[None]],
) -> None:
    """Migrate, then run a log follower (projector, relay) until SIGINT or SIGTERM."""
    from infrastructure.postgres import create_pool
    from infrastructure.schema import migrate as run_migrate

    async def run(url: str) -> None:
        await run_migrate(url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        pool = await create_pool(url, max_size=pool_size)
        try:
            await follow(pool, stop)
        finally:
            await pool.close()

    with database(settings) as url:
        asyncio.run(run(url))


def parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        raise click.BadParameter("the timestamp needs a time zone, e.g. 2026-11-27T10:00:00Z")
    return parsed


@click.group()
def main() -> None:
    """aimm: AI Model & Memory Management."""


@main.command()
def migrate() -> None:
    """Create or update the database schema (events tables, key store, read models)."""
    from infrastructure.schema import migrate as run_migrate

    settings = load_settings()
    with database(settings) as url:
        asyncio.run(run_migrate(url))
    click.echo("schema is up to date")


@main.command()
@click.option(
    "--projector/--no-projector", default=False, help="Also run the projector in-process."
)
def serve(projector: bool) -> None:
    """Run the HTTP API (uvicorn)."""
    import uvicorn

    from api.app import create_app

    settings = load_settings()
    with database(settings) as url:
        app = create_app(settings, url, run_projector=projector)
        uvicorn.run(
            app, host=settings.host, port=settings.port, log_level=settings.log_level.lower()
        )


@main.command("projector")
@click.option(
    "--batch-size", "batch_size", default=None, type=click.IntRange(min=1),
    help="Events per transaction (default: the engine's DEFAULT_BATCH).",
)  # fmt: skip
def run_projector(batch_size: int | None) -> None:
    """Keep the read models up to date with the event logs until stopped."""
    from projections.catalog import all_projections
    from projections.projector import DEFAULT_BATCH, Projector

    run_until_signalled(
        load_settings(),
        4,
        lambda pool, stop: Projector(pool, all_projections(), batch_size or DEFAULT_BATCH).run(
            stop
        ),
    )


@main.command("relay")
def run_relay() -> None:
    """Publish every event to Kafka (topics aimm.<context>) until stopped."""
    settings = load_settings()
    if settings.kafka_bootstrap is None:
        raise click.ClickException(
            "AIMM_KAFKA_BOOTSTRAP is not set: the relay needs a Kafka broker "
            "(AIMM_KAFKA_BOOTSTRAP=host:port[,host:port])"
        )
    bootstrap = settings.kafka_bootstrap
    from infrastructure.kafka_relay import KafkaRelay

    # One connection holds the leader lock and LISTENs; the others read and record.
    run_until_signalled(settings, 3, lambda pool, stop: KafkaRelay(pool, bootstrap).run(stop))


@main.command("worker")
@click.option(
    "--lease-seconds",
    default=15.0,
    type=click.FloatRange(min=1.0),
    envvar="AIMM_WORKER_LEASE_SECONDS",
    show_default=True,
    help="How long a claimed job stays leased without a heartbeat.",
)
@click.option(
    "--max-attempts",
    default=3,
    type=click.IntRange(min=1),
    envvar="AIMM_WORKER_MAX_ATTEMPTS",
    show_default=True,
    help="Attempts of a job before a lost lease fails it.",
)
@click.option(
    "--registrar/--no-registrar", default=True, show_default=True,
    help="Also run the process manager registering finished runs in the registry.",
)  # fmt: skip
def run_worker(lease_seconds: float, max_attempts: int, registrar: bool) -> None:
    """Train queued jobs (JAX) until stopped; more workers train more jobs at once."""
    import threading

    from application.registrar import run_registrar
    from application.training import TrainingApplication
    from application.worker import TrainingWorker, tune_process
    from infrastructure.postgres import eventsourcing_env
    from infrastructure.schema import migrate as run_migrate
    from infrastructure.wiring import jax_trainer, job_queue, postgres_ports

    settings = load_settings()
    tune_process()
    with database(settings) as url:
        asyncio.run(run_migrate(url))
        env = eventsourcing_env(url, pool_size=2)
        stopping = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.set())
        threads = []
        if registrar:
            threads.append(
                threading.Thread(target=run_registrar, args=(env, stopping), name="registrar")
            )
        training = TrainingApplication(env, postgres_ports())
        try:
            queue = job_queue(training, lease_seconds)
            worker = TrainingWorker(training, queue, jax_trainer, max_attempts=max_attempts)
            for thread in threads:
                thread.start()
            click.echo(f"worker {worker.name} is waiting for training jobs")
            worker.run(stopping)
        finally:
            stopping.set()
            for thread in threads:
                thread.join()
            training.close()


async def _bootstrap_admin_key(url: str, settings: Settings) -> str | None:
    """On first start with no admin key configured or stored, create one."""

    from infrastructure import keys

    if settings.bootstrap_admin_key is not None:
        return None
    conn = await asyncpg.connect(url)
    try:
        if await keys.count_active_admin_keys(conn):
            return None
        key, _ = await keys.create_key(conn, roles=["admin"], name="first-admin")
        return key
    finally:
        await conn.close()


@main.command()
def dev() -> None:
    """Run everything: database, API, projector, training worker (and relay if Kafka is
    set). Ctrl-C stops all."""
    from infrastructure.schema import migrate as run_migrate

    settings = load_settings()
    with database(settings) as url:
        asyncio.run(run_migrate(url))
        key = asyncio.run(_bootstrap_admin_key(url, settings))
        if key is not None:
            click.secho("A first admin key was created. It is shown once; keep it:", fg="yellow")
            click.secho(f"    {key}", bold=True)
        _load_sample_market_data(url)
        env = {**os.environ, "AIMM_DATABASE_URL": url}
        exe = [sys.executable, "-m", "api.cli"]
        children = [
            subprocess.Popen([*exe, "projector"], env=env),  # noqa: S603
            subprocess.Popen([*exe, "serve"], env=env),  # noqa: S603
            subprocess.Popen([*exe, "worker"], env=env),  # noqa: S603
        ]
        if settings.kafka_bootstrap is not None:
            children.append(subprocess.Popen([*exe, "relay"], env=env))  # noqa: S603
        click.echo(f"aimm is serving on http://{settings.host}:{settings.port} (Ctrl-C stops)")
        _supervise(children)


SAMPLE_MARKET_DATA = Path(__file__).resolve().parent.parent / "data" / "sample"


def _read_csv(path: Path) -> str:
    raw = path.read_bytes()
    return (gzip.decompress(raw) if path.name.endswith(".gz") else raw).decode("utf-8-sig")


def _load_sample_market_data(url: str) -> None:
    """Import data/sample/<TICKER>.csv.gz; identical rows already stored change nothing."""
    from application.market_data import import_csv
    from domain.metadata import acting_as
    from infrastructure.postgres import eventsourcing_env
    from infrastructure.wiring import build_contexts

    files = sorted(SAMPLE_MARKET_DATA.glob("*.csv.gz"))
    if not files:
        return
    contexts = build_contexts(eventsourcing_env(url, pool_size=1))
    try:
        with acting_as("system:sample-data", "sample-data-load"):
            for path in files:
                ticker = path.name.removesuffix(".csv.gz")
                outcome = import_csv(contexts.predictions, ticker, _read_csv(path))
                if outcome.changed:
                    click.echo(f"sample market data {ticker}: {outcome.new_dates} bars loaded")
    finally:
        contexts.close()


def _supervise(children: list[subprocess.Popen[Any]]) -> None:
    """Wait until a child exits or we are told to stop; then stop every child."""
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stopping and all(child.poll() is None for child in children):
            with contextlib.suppress(subprocess.TimeoutExpired):
                children[0].wait(timeout=0.5)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    failed = [c.args for c in children if c.returncode not in (0, -signal.SIGTERM, None)]
    if failed and not stopping:
        raise click.ClickException(f"a service exited unexpectedly: {failed}")


@main.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    help="admin, operator, viewer, auditor or agent (repeatable).",
)
@click.option("--agent", "agent_id", default=None, help="The agent id an agent key is bound to.")
@click.option("--name", default="", help="A name for the key's principal (recorded on events).")
def keys_create(roles: tuple[str, ...], agent_id: str | None, name: str) -> None:
    """Create a key and print it once."""

    from infrastructure import keys as key_store

    settings = load_settings()
    try:
        key, info = on_connection(
            settings,
            lambda conn: key_store.create_key(
                conn, roles=list(roles), name=name, agent_id=agent_id
            ),
            migrated=True,
        )
    except key_store.InvalidKeyRequestError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(
        f"key id {info.key_id} for {info.principal} with roles {', '.join(info.roles)}", err=True
    )
    click.echo(key)


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by its id (as printed by create and list)."""

    from infrastructure import keys as key_store

    if not on_connection(load_settings(), lambda conn: key_store.revoke_key(conn, key_id)):
        raise click.ClickException(f"no active key with id {key_id}")
    click.echo(f"revoked {key_id}")


@keys.command("list")
def keys_list() -> None:
    """List keys (never their secrets)."""

    from infrastructure import keys as key_store

    for info in on_connection(load_settings(), key_store.list_keys):
        state = f"revoked {info.revoked_at:%Y-%m-%d}" if info.revoked_at else "active"
        agent = f" agent={info.agent_id}" if info.agent_id else ""
        roles = ",".join(info.roles)
        click.echo(f"{info.key_id}  {info.principal:20} {roles:20}{agent} {state}")


@main.group()
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

                results = await rebuild_many(pool, chosen, as_of=cutoff, progress=report)
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


@main.command()
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


@main.group("market-data")
def market_data() -> None:
    """Daily bars per ticker."""


@market_data.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--ticker", required=True, help="The ticker the bars belong to.")
@click.option("--replace", is_flag=True, help="Correct stored dates the file contradicts.")
def market_data_import(file: Path, ticker: str, replace: bool) -> None:
    """Import a CSV (date,open,high,low,close,volume; .gz too) or a Parquet file
    (.parquet, same columns) as one import event."""
    import msgspec

    from application.market_data import import_rows
    from domain.errors import DomainError
    from domain.market_data import parse_csv, parse_parquet
    from domain.metadata import acting_as
    from infrastructure.postgres import eventsourcing_env
    from infrastructure.schema import migrate as run_migrate
    from infrastructure.wiring import build_contexts

    settings = load_settings()
    with database(settings) as url:
        asyncio.run(run_migrate(url))
        contexts = build_contexts(eventsourcing_env(url, pool_size=1))
        try:
            with acting_as(f"cli:{os.environ.get('USER', 'unknown')}", f"cli-{os.getpid()}"):
                rows = (
                    parse_parquet(file.read_bytes())
                    if file.suffix in (".parquet", ".pq")
                    else parse_csv(_read_csv(file))
                )
                outcome = import_rows(contexts.predictions, ticker, rows, replace=replace)
        except DomainError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            contexts.close()
    click.echo(msgspec.json.encode(outcome))


@main.group()
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


if __name__ == "__main__":
    main()
