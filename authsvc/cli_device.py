"""``authsvc device pending``: the device-flow codes awaiting a decision, for support.

Added to the CLI by :mod:`authsvc.cli`. Shows what a user would see on ``/device``
(client, scope, the asking device's IP and user agent), never the device code.
"""

from __future__ import annotations

import time

import click
from flask import current_app
from flask.cli import with_appcontext

from authsvc.device_flow import DeviceFlow, display_user_code


@click.group("device")
def device_group() -> None:
    """The device authorization grant (RFC 8628)."""


@device_group.command("pending")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@with_appcontext
def device_pending(limit: int) -> None:
    """List codes awaiting approval: user code, client, scope, IP, seconds left, user agent."""
    flow: DeviceFlow = current_app.extensions["authsvc_device"]
    now = time.time()
    for request in flow.pending(limit=limit):
        left = max(0, int(request.expires_ms / 1000 - now))
        click.echo(
            "\t".join(
                (
                    display_user_code(request.user_code),
                    request.client_id,
                    request.scope or "-",
                    request.ip or "-",
                    str(left),
                    request.user_agent or "-",
                )
            )
        )
