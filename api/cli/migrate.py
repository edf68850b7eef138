"""``aimm migrate``: create or update the database schema."""

from __future__ import annotations

import asyncio

import click

from api.cli.common import database, load_settings


@click.command()
def migrate() -> None:
    """Create or update the database schema (events tables, key store, read models)."""
    from infrastructure.schema import migrate as run_migrate

    settings = load_settings()
    with database(settings) as url:
        asyncio.run(run_migrate(url))
    click.echo("schema is up to date")
