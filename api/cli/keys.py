"""``aimm keys``: create, list and revoke API keys.

Creating and revoking a key are events in the registry log (see ``infrastructure.keys``),
recorded as done by ``cli:<os user>``: the operating-system user running the command,
which is who the database trusts to run it.
"""

from __future__ import annotations

import getpass
import uuid

import click

from api.cli.common import load_settings, on_connection


def cli_principal() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = "unknown"
    return f"cli:{user}"


@click.group()
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

    from domain.metadata import acting_as
    from infrastructure import keys as key_store

    settings = load_settings()
    try:
        with acting_as(cli_principal(), f"cli:{uuid.uuid4()}"):
            key, info = on_connection(
                settings,
                lambda conn: key_store.create_key(
                    conn, roles=list(roles), name=name, agent_id=agent_id
                ),
                migrated=True,
            )
    except key_store.InvalidKeyRequestError as exc:
        raise click.UsageError(str(exc)) from None
    except key_store.DuplicateKeyError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"key id {info.key_id} for {info.principal} with roles {', '.join(info.roles)}", err=True
    )
    click.echo(key)


@keys.command("revoke")
@click.argument("key_id")
@click.option("--reason", default="", help="Why (recorded on the event).")
def keys_revoke(key_id: str, reason: str) -> None:
    """Revoke a key by its id (as printed by create and list); revocation is final."""

    from domain.metadata import acting_as
    from infrastructure import keys as key_store

    with acting_as(cli_principal(), f"cli:{uuid.uuid4()}"):
        revoked = on_connection(
            load_settings(),
            lambda conn: key_store.revoke_key(conn, key_id, reason=reason),
            migrated=True,
        )
    if not revoked:
        raise click.ClickException(f"no active key with id {key_id}")
    click.echo(f"revoked {key_id}")


@keys.command("list")
def keys_list() -> None:
    """List keys (never their secrets)."""

    from infrastructure import keys as key_store

    for info in on_connection(load_settings(), key_store.list_keys, migrated=True):
        state = (
            f"revoked {info.revoked_at:%Y-%m-%d} by {info.revoked_by}"
            if info.revoked_at
            else "active"
        )
        agent = f" agent={info.agent_id}" if info.agent_id else ""
        roles = ",".join(info.roles)
        click.echo(
            f"{info.key_id}  {info.principal:20} {roles:20}{agent} "
            f"created by {info.created_by}, {state}"
        )
