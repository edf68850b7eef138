"""``aimm seed``: the assistant's first roles and prompts (idempotent; ``aimm dev`` runs it)."""

from __future__ import annotations

import asyncio

import click

from api.cli.common import database, load_settings
from infrastructure.settings import Settings


def seed_assistant_data(url: str, settings: Settings) -> list[str]:
    """Add the seed roles and prompts missing from the database at ``url``."""
    from application.assistant_seed import seed_assistant
    from infrastructure.postgres import eventsourcing_env
    from infrastructure.wiring import build_contexts, llm_providers

    contexts = build_contexts(eventsourcing_env(url, pool_size=1), llm_providers(settings))
    try:
        return seed_assistant(contexts.assistant, contexts.registry)
    finally:
        contexts.close()


@click.command()
def seed() -> None:
    """Add the assistant's seed roles (trading assistant, risk analyst, research
    summariser, support agent) and their prompts where missing; changes nothing else."""
    from domain.errors import DomainError
    from infrastructure.schema import migrate as run_migrate

    settings = load_settings()
    with database(settings) as url:
        asyncio.run(run_migrate(url))
        try:
            done = seed_assistant_data(url, settings)
        except DomainError as exc:
            raise click.ClickException(f"the assistant could not be seeded: {exc}") from None
    for line in done or ["the assistant's seed roles and prompts are all there"]:
        click.echo(line)
