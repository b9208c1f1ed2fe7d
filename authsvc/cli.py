"""The ``authsvc`` command: serve, check-config, user ..., client ... (a Flask CLI group)."""

from __future__ import annotations

import atexit
import logging
import logging.config
import os
import sys
from typing import Any

import click
from flask import Flask
from flask.cli import FlaskGroup
from gunicorn.app.base import Application
from redis.exceptions import RedisError

from authsvc import create_app
from authsvc.cli_clients import client_group
from authsvc.cli_common import banner, prefixed_env
from authsvc.cli_device import device_group
from authsvc.cli_keys import keys
from authsvc.cli_users import user
from authsvc.config import ConfigError, Settings, load_settings, unknown_env_names
from authsvc.embedded import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    instance_path,
    prepare_local_mode,
    signing_key_source,
)
from authsvc.factory import make_redis
from authsvc.keys import KeyRingError, build_keyring
from authsvc.logs import logging_config
from authsvc.metrics import (
    default_multiprocess_dir,
    prepare_multiprocess_dir,
    remove_temporary_dirs,
)
from authsvc.redis_tls import check_handshake
from authsvc.service import AuthService
from authsvc.tracing import tracing_problems

log = logging.getLogger("authsvc.cli")


def _create_cli_app() -> Flask:
    server = prepare_local_mode()
    if server is not None:
        atexit.register(server.stop)
    # Admin commands run from anywhere: no key snapshot in the current folder.
    return create_app(remember_keys=False)


cli = FlaskGroup(
    name="authsvc",
    help="authsvc: JWT access and rotating refresh tokens over a Redis revocation store.",
    create_app=_create_cli_app,
    add_default_commands=False,
    add_version_option=False,
    load_dotenv=False,
    set_debug_flag=False,
)


class _Gunicorn(Application):
    """gunicorn run in-process with ``authsvc.gunicorn_conf`` plus command-line overrides."""

    def __init__(self, overrides: dict[str, Any]) -> None:
        self.overrides = overrides
        super().__init__()

    def init(self, parser: Any, opts: Any, args: Any) -> None:  # pragma: no cover - unused
        """Unused: configuration comes from load_config."""

    def load_config(self) -> None:
        """The package's gunicorn settings, then the overrides."""
        self.load_config_from_module_name_or_filename("python:authsvc.gunicorn_conf")
        for name, value in self.overrides.items():
            self.cfg.set(name, value)

    # types-gunicorn has start_response return None; PEP 3333 (and Flask) say it
    # returns the write callable, so a Flask app does not match its WSGI type.
    def load(self) -> Flask:  # type: ignore[override]
        """Each worker builds its own app (and Redis pool) after the fork."""
        return create_app()


def _ensure_demo_user() -> None:
    service: AuthService = create_app().extensions["authsvc"]
    try:
        service.add_user(DEMO_USERNAME, DEMO_PASSWORD)
        created = "created"
    except ValueError:
        created = "kept the existing"
    banner(
        "authsvc QUICK-START MODE (single host, development only)\n"
        f"  Redis: embedded redis-server at {os.environ['AUTHSVC_REDIS_URL']} (AOF on)\n"
        f"  Secret: {signing_key_source()}\n"
        f"  Demo user: {created} '{DEMO_USERNAME}' / '{DEMO_PASSWORD}'\n"
        "  For production set AUTHSVC_REDIS_URL and AUTHSVC_JWT_SECRET: then no embedded\n"
        "  Redis is started and no demo user is created."
    )


@cli.command("serve", with_appcontext=False)
@click.option("--bind", help="host:port to listen on (default AUTHSVC_BIND or 127.0.0.1:8000).")
@click.option("--workers", type=int, help="gunicorn worker processes (default AUTHSVC_WORKERS).")
def serve(bind: str | None, workers: int | None) -> None:
    """Run the service under gunicorn (starts an embedded Redis if AUTHSVC_REDIS_URL is unset)."""
    quick_start = not os.environ.get("AUTHSVC_REDIS_URL")
    server = prepare_local_mode()
    try:
        # Validate before forking workers, so a bad setting is one clear message.
        settings = load_settings(prefixed_env())
        _check_signing_keys(settings)
        _check_tracing()
        # A wrong CA or certificate shows only in a handshake: one line, before forking.
        check_handshake(make_redis, settings)
        if not quick_start:
            _exec_gunicorn(bind, workers)
        # Before create_app imports prometheus_client in this master: every worker counts.
        prepare_multiprocess_dir(default_multiprocess_dir(instance_path()))
        _ensure_demo_user()
        overrides: dict[str, Any] = {}
        if bind:
            overrides["bind"] = [bind]
        if workers:
            overrides["workers"] = workers
        _Gunicorn(overrides).run()
    finally:
        remove_temporary_dirs()
        if server is not None:
            server.stop()


def _exec_gunicorn(bind: str | None, workers: int | None) -> None:
    """Replace this process with a gunicorn master that loads only its settings.

    This process has imported the whole app (Flask, redis-py, cryptography) to check
    the settings; as gunicorn's master it would keep that for nothing, about 35 MiB
    of the server's memory. The new image is the same process (same PID, signals and
    environment), so a supervisor sees no difference. Quick-start mode stays in this
    process: it owns the embedded Redis and stops it on the way out.
    """
    argv = [sys.executable, "-m", "gunicorn", "--config", "python:authsvc.gunicorn_conf"]
    if bind:
        argv += ["--bind", bind]
    if workers:
        argv += ["--workers", str(workers)]
    argv.append("authsvc:create_app()")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)  # noqa: S606 - our own argv, no shell wanted


def _check_signing_keys(settings: Settings) -> None:
    """Load the Redis key ring once in the master, before any worker: one clear line.

    A host that never had good keys (no good ring in Redis, no snapshot in its instance
    folder) must not start; without this, each worker would fail to boot with a
    traceback. With good keys it also writes the snapshot the workers fall back on.
    """
    if settings.jwt_key_store != "redis":
        return
    client = make_redis(settings)
    try:
        build_keyring(settings, client)
    except (KeyRingError, RedisError) as error:
        raise click.ClickException(
            f"cannot start: no good signing keys ({type(error).__name__}: {error}) and no "
            "snapshot of earlier good keys on this host"
        ) from None
    finally:
        client.close()  # before gunicorn forks: each worker opens its own connections


@cli.command("check-config", with_appcontext=False)
def check_config() -> None:
    """Validate the AUTHSVC_* environment and report every problem."""
    for name in unknown_env_names():
        click.echo(f"warning: {name} is not an authsvc setting (typo?)", err=True)
    settings = load_settings(prefixed_env(), require_redis=False)
    _check_tracing()
    check_handshake(make_redis, settings)
    click.echo("configuration OK")


def _check_tracing() -> None:
    problems = tracing_problems(os.environ)
    if problems:
        raise ConfigError(problems)


# The command groups live in their own modules, one per thing they manage.
cli.add_command(keys)
cli.add_command(user)
cli.add_command(client_group)
cli.add_command(device_group)


def main() -> None:
    """Console-script entry point: configuration and lookup errors become one clear line."""
    # Audit events of admin commands (key_rotated, ...) reach stderr as the same JSON
    # lines the server writes; `serve` applies it again through gunicorn's config.
    logging.config.dictConfig(logging_config("INFO"))
    try:
        cli.main(prog_name="authsvc")
    except ConfigError as error:
        click.echo(str(error), err=True)
        sys.exit(2)
    except (LookupError, ValueError, RuntimeError) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
