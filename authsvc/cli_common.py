"""What every ``authsvc`` command group shares: the service of the app, the banner, the env."""

from __future__ import annotations

import os

import click
from flask import current_app

from authsvc.config import ENV_PREFIX
from authsvc.service import AuthService


def current_service() -> AuthService:
    """The :class:`AuthService` of the current app (commands run in its app context)."""
    return current_app.extensions["authsvc"]


def banner(message: str) -> None:
    """Print ``message`` to stderr between two rules of ``!``: what an operator must read."""
    line = "!" * 78
    click.echo(f"{line}\n{message}\n{line}", err=True)


def prefixed_env() -> dict[str, str]:
    """The AUTHSVC_* environment without the prefix, as `load_settings` takes it."""
    return {k[len(ENV_PREFIX) :]: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
