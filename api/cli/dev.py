"""``aimm dev``: one command runs everything for a newcomer.

It migrates the database (the embedded one when ``AIMM_DATABASE_URL`` is unset),
creates a first admin key if there is none (printed once), loads the sample market
data, adds the assistant's seed roles and prompts that are missing, then supervises
one process per service — the API (``aimm serve``), the projector, the training worker
(with the registrar) and, when Kafka is configured, the relay — restarting any that
dies (``api.cli.supervisor``). Ctrl-C stops them all, then the embedded database.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import asyncpg
import click

from api.cli.assistant import seed_assistant_data
from api.cli.common import database, load_settings
from api.cli.market_data import read_csv
from api.cli.supervisor import Child, supervise
from infrastructure.settings import Settings

SAMPLE_MARKET_DATA = Path(__file__).resolve().parents[2] / "data" / "sample"


async def _bootstrap_admin_key(url: str, settings: Settings) -> str | None:
    """On first start with no admin key configured or stored, create one."""

    from infrastructure import keys

    if settings.bootstrap_admin_key is not None:
        return None
    conn = await asyncpg.connect(url)
    try:
        if await keys.count_active_admin_keys(conn):
            return None
        key, _ = await keys.create_key(
            conn, roles=["admin"], name="first-admin", created_by="cli:dev (first start)"
        )
        return key
    finally:
        await conn.close()


def load_sample_market_data(url: str) -> None:
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
                outcome = import_csv(contexts.predictions, ticker, read_csv(path))
                if outcome.changed:
                    click.echo(f"sample market data {ticker}: {outcome.new_dates} bars loaded")
    finally:
        contexts.close()


def seed_assistant(url: str, settings: Settings) -> None:
    """The assistant's seed roles and prompts; a failure (the embedded model's weights not
    installed, say) is reported and the rest starts all the same."""
    from domain.errors import DomainError

    try:
        done = seed_assistant_data(url, settings)
    except DomainError as exc:
        click.secho(f"the assistant's seed roles were not added: {exc}", fg="yellow")
        return
    for line in done:
        click.echo(f"assistant seed: {line}")


@click.command()
def dev() -> None:
    """Run everything: database, API, projector, training worker (and relay if Kafka is
    set), restarting a service that dies. Ctrl-C stops all."""
    from infrastructure.schema import migrate as run_migrate

    settings = load_settings()
    with database(settings) as url:
        asyncio.run(run_migrate(url))
        key = asyncio.run(_bootstrap_admin_key(url, settings))
        if key is not None:
            click.secho("A first admin key was created. It is shown once; keep it:", fg="yellow")
            click.secho(f"    {key}", bold=True)
        load_sample_market_data(url)
        seed_assistant(url, settings)
        env = {**os.environ, "AIMM_DATABASE_URL": url}
        exe = [sys.executable, "-m", "api.cli"]
        services = ["projector", "serve", "worker"]
        if settings.kafka_bootstrap is not None:
            services.append("relay")
        children = [Child(name, [*exe, name], env) for name in services]
        click.echo(f"aimm is serving on http://{settings.host}:{settings.port} (Ctrl-C stops)")
        supervise(children)
