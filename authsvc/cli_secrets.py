"""``authsvc client secret`` and ``authsvc client make-public``: confidential clients.

Added to the ``client`` group by :mod:`authsvc.cli`. The secret goes to stdout once (a
script can capture it); the audit line goes to stderr without it.
"""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from authsvc.client_credentials import (
    DEFAULT_OVERLAP_SECONDS,
    MAX_OVERLAP_SECONDS,
    ClientCredentials,
)
from authsvc.events import emit


@click.command("secret")
@click.argument("client_id")
@click.option(
    "--overlap",
    type=click.IntRange(min=0, max=MAX_OVERLAP_SECONDS),
    default=DEFAULT_OVERLAP_SECONDS,
    show_default=True,
    help="Seconds the previous secret stays valid (0: it stops now).",
)
@with_appcontext
def client_secret(client_id: str, overlap: int) -> None:
    """Give a client a new secret (it becomes confidential); printed once, stored hashed."""
    credentials: ClientCredentials = current_app.extensions["authsvc_client_credentials"]
    issued = credentials.issue_secret(client_id, overlap_seconds=overlap)
    emit("client_secret_issued", client_id=client_id, actor="cli")
    click.echo(issued.secret)
    if issued.previous_valid_until is not None:
        click.echo(f"previous secret valid until {issued.previous_valid_until}", err=True)


@click.command("make-public")
@click.argument("client_id")
@with_appcontext
def client_make_public(client_id: str) -> None:
    """Remove a client's secrets: it is public again and its machine tokens stop working."""
    credentials: ClientCredentials = current_app.extensions["authsvc_client_credentials"]
    credentials.remove_secret(client_id)
    emit("client_secret_removed", client_id=client_id, actor="cli")
    click.echo(f"client {client_id} is public")
