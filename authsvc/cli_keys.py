"""``authsvc keys ...``: the signing keys (RS256, ES256, EdDSA) in Redis or in a key directory.

Added to the ``authsvc`` group by :mod:`authsvc.cli`. Runs without an app: it reads the
AUTHSVC_* settings and talks to the key source directly.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
from flask.cli import AppGroup

from authsvc.cli_common import banner, prefixed_env
from authsvc.config import MAX_KEY_PROPAGATION_DELAY, Settings, load_settings
from authsvc.events import emit
from authsvc.factory import make_redis
from authsvc.keys import (
    KeyDirectory,
    RedisKeys,
    Rotated,
    new_key_encryption_key,
    redis_key_source,
    ring_at,
    utc_text,
)


def _key_source() -> tuple[KeyDirectory | RedisKeys, Settings]:
    settings = load_settings(prefixed_env(), require_redis=False)
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


@click.group("keys", cls=AppGroup)
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
    banner(
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
