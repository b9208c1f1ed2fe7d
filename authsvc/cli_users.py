"""``authsvc user ...``: accounts (add, list, disable, enable, set-password, delete, reindex).

Added to the ``authsvc`` group by :mod:`authsvc.cli`. Passwords are read from a prompt or
standard input, never from the command line.
"""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup, with_appcontext

from authsvc.cli_common import current_service


@click.group("user", cls=AppGroup)
def user() -> None:
    """Manage accounts (in the embedded Redis when AUTHSVC_REDIS_URL is unset)."""


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@user.command("add")
@click.argument("username")
@click.option("--role", "roles", multiple=True, help="A role to grant (repeatable).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def user_add(username: str, roles: tuple[str, ...], password_stdin: bool) -> None:
    """Create an account."""
    created = current_service().add_user(username, _read_password(password_stdin), roles)
    click.echo(f"created {created.username} ({created.id})")


@user.command("list")
@with_appcontext
def user_list() -> None:
    """List accounts."""
    for account in current_service().users():
        state = "disabled" if account.disabled else "enabled"
        click.echo(f"{account.username}\t{account.id}\t{state}\t{','.join(account.roles)}")


@user.command("disable")
@click.argument("username")
@with_appcontext
def user_disable(username: str) -> None:
    """Disable an account and end all its sessions."""
    current_service().set_disabled(username, True)
    click.echo(f"disabled {username}; its sessions have ended")


@user.command("enable")
@click.argument("username")
@with_appcontext
def user_enable(username: str) -> None:
    """Re-enable an account (ended sessions stay ended)."""
    current_service().set_disabled(username, False)
    click.echo(f"enabled {username}")


@user.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def user_set_password(username: str, password_stdin: bool) -> None:
    """Set a new password and end all the account's sessions."""
    current_service().reset_password(username, _read_password(password_stdin))
    click.echo(f"password of {username} changed; its sessions have ended")


@user.command("delete")
@click.argument("username")
@with_appcontext
def user_delete(username: str) -> None:
    """Delete an account; its sessions end with it."""
    current_service().delete_user(username)
    click.echo(f"deleted {username}")


@user.command("reindex")
@with_appcontext
def user_reindex() -> None:
    """Add every account to the username index of the admin listing (idempotent)."""
    count = current_service().store.rebuild_username_index()
    click.echo(f"indexed {count} accounts")
