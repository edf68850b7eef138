"""``aimm market-data import``: daily bars from a CSV (gzipped too) or Parquet file."""

from __future__ import annotations

import asyncio
import gzip
import os
from pathlib import Path

import click

from api.cli.common import database, load_settings


def read_csv(path: Path) -> str:
    """A CSV file's text (gunzipped when it ends in .gz; a BOM is dropped)."""
    raw = path.read_bytes()
    return (gzip.decompress(raw) if path.name.endswith(".gz") else raw).decode("utf-8-sig")


@click.group("market-data")
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
                    else parse_csv(read_csv(file))
                )
                outcome = import_rows(contexts.predictions, ticker, rows, replace=replace)
        except DomainError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            contexts.close()
    click.echo(msgspec.json.encode(outcome))
