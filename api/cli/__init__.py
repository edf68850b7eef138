"""The ``aimm`` command line: run the service, manage keys and projections, replay logs.

One module per command group, each defining plain click commands that ``main`` adds:

- ``common``: shared helpers (settings, the configured or embedded database, one
  connection, a log follower run until signalled, timestamps);
- ``dev``: ``aimm dev`` (migrate, first admin key, sample data, then every service);
- ``supervisor``: how ``aimm dev`` keeps its children up (restart with backoff);
- ``processes``: ``serve``, ``projector``, ``relay``, ``worker``;
- ``migrate``: ``migrate``;
- ``keys``: ``keys create|list|revoke``;
- ``projections``: ``projections status|rebuild``;
- ``audit``: ``replay``, ``audit verify``;
- ``market_data``: ``market-data import``;
- ``kafka``: ``kafka dead-letters [--retry]`` (what the relay could not publish);
- ``assistant``: ``seed`` (the assistant's first roles and prompts).

The entry point is ``aimm = "api.cli:main"``; ``python -m api.cli`` runs the same.
Modules import heavy dependencies inside the commands, so ``aimm --help`` stays quick.
"""

from __future__ import annotations

import click

from api.cli.assistant import seed
from api.cli.audit import audit, replay
from api.cli.dev import dev
from api.cli.kafka import kafka
from api.cli.keys import keys
from api.cli.market_data import market_data
from api.cli.migrate import migrate
from api.cli.processes import run_projector, run_relay, run_worker, serve
from api.cli.projections import projections


@click.group()
def main() -> None:
    """aimm: AI Model & Memory Management."""


for command in (
    migrate, serve, run_projector, run_relay, run_worker, dev,
    keys, projections, replay, market_data, audit, seed, kafka,
):  # fmt: skip
    main.add_command(command)

__all__ = ["main"]
