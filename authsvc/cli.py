"""The ``authsvc`` command: serve, check-config, user ..., client ... (a Flask CLI group)."""

from __future__ import annotations

import atexit
import logging
import logging.config
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext
from gunicorn.app.base import Application
from redis.exceptions import RedisError

from authsvc import create_app
from authsvc.cli_device import device_group
from authsvc.cli_secrets import client_make_public, client_secret
from authsvc.clients import DPOP_MODES, GRANTS, TRANSPORTS, ClientRegistry
from authsvc.config import (
    ENV_PREFIX,
    MAX_KEY_PROPAGATION_DELAY,
    ConfigError,
    Settings,
    load_settings,
    unknown_env_names,
)
from authsvc.embedded import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    instance_path,
    prepare_local_mode,
    signing_key_source,
)
from authsvc.events import emit
from authsvc.factory import make_redis
from authsvc.keys import (
    KeyDirectory,
    KeyRingError,
    RedisKeys,
    Rotated,
    build_keyring,
    new_key_encryption_key,
    redis_key_source,
    ring_at,
    utc_text,
)
from authsvc.logs import logging_config
from authsvc.metrics import (
    default_multiprocess_dir,
    prepare_multiprocess_dir,
    remove_temporary_dirs,
)
from authsvc.redis_tls import check_handshake
from authsvc.service import AuthService
from authsvc.store import RegisteredClient
from authsvc.tracing import tracing_problems

log = logging.getLogger("authsvc.cli")


def _create_cli_app() -> Flask:
    server = prepare_local_mode()
    if server is not None:
        atexit.register(server.stop)
    # Admin commands run from anywhere: no key snapshot in the current folder.
    return create_app(remember_keys=False)


def _service() -> AuthService:
    return current_app.extensions["authsvc"]


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


def _banner(message: str) -> None:
    line = "!" * 78
    click.echo(f"{line}\n{message}\n{line}", err=True)


def _ensure_demo_user() -> None:
    service: AuthService = create_app().extensions["authsvc"]
    try:
        service.add_user(DEMO_USERNAME, DEMO_PASSWORD)
        created = "created"
    except ValueError:
        created = "kept the existing"
    _banner(
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
        settings = load_settings(_prefixed_env())
        _check_signing_keys(settings)
        _check_tracing()
        # A wrong CA or certificate shows only in a handshake: one line, before forking.
        check_handshake(make_redis, settings)
        # Before create_app imports prometheus_client in this master: every worker counts.
        prepare_multiprocess_dir(default_multiprocess_dir(instance_path() if quick_start else None))
        if quick_start:
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


def _prefixed_env() -> dict[str, str]:
    return {k[len(ENV_PREFIX) :]: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}


@cli.command("check-config", with_appcontext=False)
def check_config() -> None:
    """Validate the AUTHSVC_* environment and report every problem."""
    for name in unknown_env_names():
        click.echo(f"warning: {name} is not an authsvc setting (typo?)", err=True)
    settings = load_settings(_prefixed_env(), require_redis=False)
    _check_tracing()
    check_handshake(make_redis, settings)
    click.echo("configuration OK")


def _check_tracing() -> None:
    problems = tracing_problems(os.environ)
    if problems:
        raise ConfigError(problems)


def _key_source() -> tuple[KeyDirectory | RedisKeys, Settings]:
    settings = load_settings(_prefixed_env(), require_redis=False)
    if settings.jwt_key_store == "redis":
        if not settings.redis_url:
            raise click.UsageError("AUTHSVC_JWT_KEY_STORE=redis needs AUTHSVC_REDIS_URL")
        client = make_redis(settings)
        # Closed with the command: no socket left for the garbage collector to find.
        click.get_current_context().call_on_close(client.close)
        source = redis_key_source(settings, client)
        assert source is not None  # noqa: S101 - jwt_key_store is redis
        return source, settings
    if not settings.asymmetric or not settings.jwt_key_dir:
        raise click.UsageError(
            "key commands manage AUTHSVC_JWT_KEY_STORE=redis or AUTHSVC_JWT_KEY_DIR for "
            f"RS256, ES256 or EdDSA; the configured algorithm is {settings.jwt_algorithm}"
        )
    return KeyDirectory(Path(settings.jwt_key_dir), settings.jwt_algorithm), settings


@cli.group("keys")
def keys() -> None:
    """Manage the signing keys (RS256, ES256, EdDSA) in Redis or in AUTHSVC_JWT_KEY_DIR."""


@keys.command("generate", with_appcontext=False)
@click.option(
    "--activate", is_flag=True, help="Key directory only: sign with the new key from now on."
)
def keys_generate(activate: bool) -> None:
    """Add the first key (in a directory: a key that signs only with --activate)."""
    source, _ = _key_source()
    kid = source.generate() if isinstance(source, RedisKeys) else source.generate(activate=activate)
    click.echo(f"generated {kid} ({source.algorithm}) in {source.describe()}")


@keys.command("rotate", with_appcontext=False)
@click.option(
    "--delay",
    type=click.IntRange(0, MAX_KEY_PROPAGATION_DELAY),
    help="Seconds between publishing the new key and its first signature "
    "(default AUTHSVC_KEY_PROPAGATION_DELAY).",
)
@click.option(
    "--now",
    "immediate",
    is_flag=True,
    help="Emergency: the new key signs at once, with no propagation delay, even while "
    "another key waits for its turn. Resource servers with a cached JWKS refuse its "
    "tokens until they refetch.",
)
def keys_rotate(delay: int | None, immediate: bool) -> None:
    """Publish a new key now; it signs after the propagation delay.

    Older keys verify until their last token expires, then go. With the Redis ring
    the activation time is Redis's clock plus the delay, never this host's clock.
    """
    if immediate and delay is not None:
        raise click.UsageError("--now and --delay exclude each other")
    source, settings = _key_source()
    skipped = settings.key_propagation_delay if delay is None else delay
    delay = 0 if immediate else skipped
    if isinstance(source, RedisKeys):
        rotated = source.rotate(
            keep_seconds=settings.key_retention_seconds, delay=delay, immediate=immediate
        )
    else:
        rotated = source.rotate(keep_seconds=settings.key_retention_seconds, delay=delay)
    pruned = ", ".join(rotated.pruned) or "none"
    emit(
        "key_rotated",
        kid=rotated.kid,
        algorithm=source.algorithm,
        activates_at=rotated.activates_at,
        pruned=",".join(rotated.pruned) or None,
        emergency=True if immediate else None,
    )
    if immediate:
        _emergency_banner(rotated, skipped)
    click.echo(
        f"published {rotated.kid}; it signs from {utc_text(rotated.activates_at)} "
        + ("(at once: --now)" if immediate else f"(in {delay} s, once every verifier has it)")
        + f"; pruned: {pruned}"
    )


def _emergency_banner(rotated: Rotated, skipped: int) -> None:
    pending = "".join(
        f"\n  {kid} was already waiting for its turn: it still takes over at its own time."
        for kid in rotated.still_pending
    )
    _banner(
        f"EMERGENCY ROTATION (--now): {rotated.kid} signs NOW; the propagation delay "
        f"({skipped} s) was skipped.\n"
        "  Skipped: resource servers that cached the JWKS (max-age 300 s) do not know this\n"
        "  kid yet and REFUSE its tokens (401, unknown kid) until they refetch the JWKS;\n"
        "  authsvc's own workers reread the ring at once. The previous key stops signing\n"
        "  now and still VERIFIES the tokens it signed until they expire: if it leaked,\n"
        "  end the sessions those tokens belong to." + pending
    )


@keys.command("list", with_appcontext=False)
@click.option(
    "--unsealed",
    is_flag=True,
    help="Redis ring: every record that authenticates on its own, whatever the manifest "
    "says (to inspect a ring the workers refuse).",
)
def keys_list(unsealed: bool) -> None:
    """Show the active key, the keys waiting to sign and the retired keys still verifying."""
    source, settings = _key_source()
    refused: dict[str, str] = {}
    if isinstance(source, RedisKeys):
        now = source.server_time()
        records, refused = source.unsealed() if unsealed else (source.records(), {})
    else:
        now, records = time.time(), source.records()
    for kid, reason in refused.items():
        click.echo(f"{kid}\t-\trefused: {reason}")
    if not records:
        return
    state = ring_at(records, now, settings.key_retention_seconds)
    for key in state.verifying:
        if key is state.active:
            status = "active"
        elif key.retired_at is not None:
            status = f"retired {key.retired_at}"
        else:
            status = f"signs-from {key.activates_at} ({utc_text(key.activates_at)})"
        click.echo(f"{key.kid}\t{key.algorithm}\t{status}")


@keys.command("reseal", with_appcontext=False)
@click.option(
    "--above",
    type=click.IntRange(0),
    default=0,
    help="Give the new manifest a generation above this one (after restoring an older "
    "ring from a backup: the generation the workers' log line names).",
)
def keys_reseal(above: int) -> None:
    """Bless the Redis ring's records as they are with a new manifest.

    For a ring written by an older authsvc (no manifest), or after a deliberate restore.
    Every record must authenticate; check `keys list --unsealed` first: whatever the
    ring holds is trusted from now on.
    """
    source, _ = _key_source()
    if not isinstance(source, RedisKeys):
        raise click.UsageError("reseal needs AUTHSVC_JWT_KEY_STORE=redis")
    manifest = source.reseal(above=above)
    listed = ", ".join(f"{kid} (from {utc_text(at)})" for kid, at in sorted(manifest.keys.items()))
    click.echo(f"sealed generation {manifest.generation}: {listed}")


@keys.command("import", with_appcontext=False)
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
def keys_import(directory: Path) -> None:
    """Copy a key directory's live keys (same kids and times) into the empty Redis ring."""
    source, settings = _key_source()
    if not isinstance(source, RedisKeys):
        raise click.UsageError("import needs AUTHSVC_JWT_KEY_STORE=redis")
    imported = source.import_from(
        KeyDirectory(directory, settings.jwt_algorithm),
        keep_seconds=settings.key_retention_seconds,
    )
    click.echo(f"imported {', '.join(imported)} into {source.describe()}")


@keys.command("new-kek", with_appcontext=False)
def keys_new_kek() -> None:
    """Print a fresh AUTHSVC_KEY_ENCRYPTION_KEY (32 random bytes, URL-safe base64)."""
    click.echo(new_key_encryption_key())


@cli.group("user")
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
    created = _service().add_user(username, _read_password(password_stdin), roles)
    click.echo(f"created {created.username} ({created.id})")


@user.command("list")
@with_appcontext
def user_list() -> None:
    """List accounts."""
    for account in _service().users():
        state = "disabled" if account.disabled else "enabled"
        click.echo(f"{account.username}\t{account.id}\t{state}\t{','.join(account.roles)}")


@user.command("disable")
@click.argument("username")
@with_appcontext
def user_disable(username: str) -> None:
    """Disable an account and end all its sessions."""
    _service().set_disabled(username, True)
    click.echo(f"disabled {username}; its sessions have ended")


@user.command("enable")
@click.argument("username")
@with_appcontext
def user_enable(username: str) -> None:
    """Re-enable an account (ended sessions stay ended)."""
    _service().set_disabled(username, False)
    click.echo(f"enabled {username}")


@user.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def user_set_password(username: str, password_stdin: bool) -> None:
    """Set a new password and end all the account's sessions."""
    _service().reset_password(username, _read_password(password_stdin))
    click.echo(f"password of {username} changed; its sessions have ended")


@user.command("delete")
@click.argument("username")
@with_appcontext
def user_delete(username: str) -> None:
    """Delete an account; its sessions end with it."""
    _service().delete_user(username)
    click.echo(f"deleted {username}")


@user.command("reindex")
@with_appcontext
def user_reindex() -> None:
    """Add every account to the username index of the admin listing (idempotent)."""
    count = _service().store.rebuild_username_index()
    click.echo(f"indexed {count} accounts")


@cli.group("client")
def client_group() -> None:
    """Manage registered clients (applications that log users in) and their scopes."""


def _clients() -> ClientRegistry:
    return _service().clients


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
    service = _service().settings
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
client_group.add_command(client_secret)
client_group.add_command(client_make_public)
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
