"""``aimm keys``: create, list and revoke API keys."""

from __future__ import annotations

import click

from api.cli.common import load_settings, on_connection


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
