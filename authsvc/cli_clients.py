"""``authsvc client ...``: registered clients (applications that log users in) and their scopes.

Added to the ``authsvc`` group by :mod:`authsvc.cli`; ``client secret`` and
``client make-public`` come from :mod:`authsvc.cli_secrets`.
"""

from __future__ import annotations

import click
from flask.cli import AppGroup, with_appcontext

from authsvc.cli_common import current_service
from authsvc.cli_secrets import client_make_public, client_secret
from authsvc.clients import DPOP_MODES, GRANTS, TRANSPORTS, ClientRegistry
from authsvc.store import RegisteredClient


@click.group("client", cls=AppGroup)
def client_group() -> None:
    """Manage registered clients (applications that log users in) and their scopes."""


def _clients() -> ClientRegistry:
    return current_service().clients


def _client_line(client: RegisteredClient) -> str:
    # Tab-separated like `user list`: id, name, scopes, transports, access s, refresh s
    # ("-" for the service's lifetime).
    return "\t".join(
        (
            client.id,
            client.name,
            " ".join(client.scopes),
            ",".join(client.transports),
            str(client.access_ttl or "-"),
            str(client.refresh_ttl or "-"),
        )
    )


_SCOPE_OPTION = click.option(
    "--scope", "scopes", multiple=True, help="An allowed scope (repeatable; replaces all)."
)
_TRANSPORT_OPTION = click.option(
    "--transport",
    "transports",
    multiple=True,
    type=click.Choice(TRANSPORTS),
    help="An allowed transport (repeatable; default both).",
)
_GRANT_OPTION = click.option(
    "--grant",
    "grants",
    multiple=True,
    type=click.Choice(GRANTS),
    help="An extra grant it may use, e.g. device_code (repeatable; replaces all).",
)
_NO_GRANTS_OPTION = click.option("--no-grants", is_flag=True, help="Remove every extra grant.")
_ACCESS_TTL_OPTION = click.option(
    "--access-ttl", type=click.IntRange(min=0), help="Access-token lifetime (s); 0: the service's."
)
_REFRESH_TTL_OPTION = click.option(
    "--refresh-ttl",
    type=click.IntRange(min=0),
    help="Refresh-token (session) lifetime (s); 0: the service's.",
)

_DPOP_OPTION = click.option(
    "--dpop",
    type=click.Choice(DPOP_MODES),
    help="required: every login must bind its session to a device key (DPoP proof).",
)


@client_group.command("add")
@click.argument("client_id")
@click.option("--name", required=True, help="Display name.")
@_SCOPE_OPTION
@_TRANSPORT_OPTION
@_GRANT_OPTION
@_ACCESS_TTL_OPTION
@_REFRESH_TTL_OPTION
@_DPOP_OPTION
@with_appcontext
def client_add(
    client_id: str,
    name: str,
    scopes: tuple[str, ...],
    transports: tuple[str, ...],
    grants: tuple[str, ...],
    access_ttl: int | None,
    refresh_ttl: int | None,
    dpop: str | None,
) -> None:
    """Register a client (default scope: profile; transports: both; DPoP: optional)."""
    created = _clients().add(
        client_id,
        name,
        scopes or ("profile",),
        transports or TRANSPORTS,
        access_ttl or None,
        refresh_ttl or None,
        dpop=dpop or "optional",
        grants=grants,
    )
    click.echo(f"created client {created.id}")


@client_group.command("list")
@with_appcontext
def client_list() -> None:
    """List clients: id, name, scopes, transports, access and refresh lifetimes."""
    for registered in _clients().list():
        click.echo(_client_line(registered))


@client_group.command("show")
@click.argument("client_id")
@with_appcontext
def client_show(client_id: str) -> None:
    """Show one client's settings."""
    registered = _clients().get(client_id)
    service = current_service().settings
    click.echo(f"id: {registered.id}")
    click.echo(f"name: {registered.name}")
    click.echo(f"scopes: {' '.join(registered.scopes)}")
    click.echo(f"transports: {' '.join(registered.transports)}")
    click.echo(f"grants: {' '.join(registered.grants) or '-'}")
    click.echo(f"access_ttl: {registered.access_ttl or f'{service.access_token_ttl} (service)'}")
    click.echo(f"refresh_ttl: {registered.refresh_ttl or f'{service.refresh_token_ttl} (service)'}")
    click.echo(f"dpop: {registered.dpop}")


@client_group.command("update")
@click.argument("client_id")
@click.option("--name", help="Display name.")
@_SCOPE_OPTION
@_TRANSPORT_OPTION
@_GRANT_OPTION
@_NO_GRANTS_OPTION
@_ACCESS_TTL_OPTION
@_REFRESH_TTL_OPTION
@_DPOP_OPTION
@with_appcontext
def client_update(
    client_id: str,
    name: str | None,
    scopes: tuple[str, ...],
    transports: tuple[str, ...],
    grants: tuple[str, ...],
    no_grants: bool,
    access_ttl: int | None,
    refresh_ttl: int | None,
    dpop: str | None,
) -> None:
    """Change a client's settings (options not given stay); applies to new logins."""
    _clients().update(
        client_id,
        name=name,
        scopes=scopes or None,
        transports=transports or None,
        grants=() if no_grants else (grants or None),
        access_ttl=access_ttl,
        refresh_ttl=refresh_ttl,
        dpop=dpop,
    )
    click.echo(f"updated client {client_id}")


@client_group.command("delete")
@click.argument("client_id")
@with_appcontext
def client_delete(client_id: str) -> None:
    """Delete a client: it can no longer log in (live sessions run out)."""
    _clients().delete(client_id)
    click.echo(f"deleted client {client_id}")


# `client secret` / `client make-public` (confidential clients) live in cli_secrets.py.
# `client secret` / `client make-public` (confidential clients) live in cli_secrets.py.
client_group.add_command(client_secret)
client_group.add_command(client_make_public)
