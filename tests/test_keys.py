"""Signing keys: asymmetric algorithms, kid, JWKS, rotation without downtime."""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from authsvc import create_app
from authsvc.cli import cli
from authsvc.keys import MANIFEST, KeyDirectory
from authsvc.keys import ring as keys
from tests.conftest import PASSWORD, USERNAME, bearer, login_pair

ASYMMETRIC = ["RS256", "ES256", "EdDSA"]
ME = "/api/v1/user/me"
JWKS = "/.well-known/jwks.json"


@pytest.fixture(autouse=True)
def _reload_keys_at_once(monkeypatch):
    """Workers look at the key directory at most once a second; tests need no wait."""
    monkeypatch.setattr(keys, "_RELOAD_INTERVAL_SECONDS", 0)


def make_keyed_app(redis_client, key_dir, algorithm, **overrides):
    settings = {"JWT_ALGORITHM": algorithm, "JWT_KEY_DIR": str(key_dir), **overrides}
    app = create_app(settings, redis_client=redis_client)
    app.extensions["authsvc"].add_user(USERNAME, PASSWORD)
    return app


def header_of(token):
    return jwt.get_unverified_header(token)


def set_retired_at(key_dir, kid, retired_at):
    manifest = json.loads((key_dir / MANIFEST).read_text())
    manifest["retired"][kid] = retired_at
    (key_dir / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
def test_asymmetric_tokens_carry_kid_and_verify_with_the_published_jwk(
    redis_client, tmp_path, algorithm
):
    """Tokens name their key; a resource server verifies them from the JWKS alone."""
    kid = KeyDirectory(tmp_path, algorithm).generate(activate=True)
    client = make_keyed_app(redis_client, tmp_path, algorithm).test_client()
    pair = login_pair(client)
    assert header_of(pair["access_token"])["kid"] == kid
    assert header_of(pair["access_token"])["alg"] == algorithm
    assert client.get(ME, headers=bearer(pair["access_token"])).status_code == 200
    jwks = client.get(JWKS).get_json()
    (jwk,) = jwks["keys"]
    assert jwk["kid"] == kid
    assert "d" not in jwk  # the private part never leaves
    public_key = jwt.PyJWK(jwk).key
    claims = jwt.decode(
        pair["access_token"], public_key, algorithms=[algorithm], audience="authsvc"
    )
    assert claims["type"] == "access"


def test_jwks_is_cacheable_and_never_publishes_an_hmac_secret(client):
    """With HS256 the JWKS is empty; it is served with a public Cache-Control."""
    response = client.get(JWKS)
    assert response.get_json() == {"keys": []}
    assert response.headers["Cache-Control"].startswith("public, max-age=")


def test_a_token_signed_before_a_rotation_still_verifies_after_it(redis_client, tmp_path):
    """Rotation: the new key signs, the old one keeps verifying its tokens, both in JWKS."""
    directory = KeyDirectory(tmp_path, "ES256")
    old_kid = directory.generate(activate=True)
    client = make_keyed_app(redis_client, tmp_path, "ES256").test_client()
    before = login_pair(client)
    time.sleep(0.01)  # a distinct manifest mtime
    new_kid, _, pruned, _ = directory.rotate(keep_seconds=3600)
    assert pruned == []
    after = login_pair(client)
    assert header_of(after["access_token"])["kid"] == new_kid != old_kid
    assert client.get(ME, headers=bearer(before["access_token"])).status_code == 200
    assert client.get(ME, headers=bearer(after["access_token"])).status_code == 200
    refreshed = client.get("/api/v1/user/refresh", headers=bearer(before["refresh_token"]))
    assert refreshed.status_code == 200
    assert {k["kid"] for k in client.get(JWKS).get_json()["keys"]} == {old_kid, new_kid}


def test_a_retired_key_leaves_once_its_last_token_has_expired(redis_client, tmp_path):
    """Past retirement + refresh lifetime the old key drops out of JWKS and verification."""
    directory = KeyDirectory(tmp_path, "EdDSA")
    old_kid = directory.generate(activate=True)
    app = make_keyed_app(redis_client, tmp_path, "EdDSA")
    client = app.test_client()
    before = login_pair(client)
    directory.rotate(keep_seconds=3600)
    keep = app.extensions["authsvc"].settings.key_retention_seconds
    time.sleep(0.01)
    set_retired_at(tmp_path, old_kid, int(time.time()) - keep - 1)
    assert old_kid not in {k["kid"] for k in client.get(JWKS).get_json()["keys"]}
    response = client.get(ME, headers=bearer(before["access_token"]))
    assert response.get_json()["data"]["error"] == "token_invalid"
    assert directory.prune(keep_seconds=keep) == [old_kid]
    assert not (tmp_path / f"{old_kid}.pem").exists()


def test_a_token_under_an_unknown_kid_is_401(redis_client, tmp_path):
    """A token whose kid is not in the key ring is token_invalid, even if well signed."""
    KeyDirectory(tmp_path, "RS256").generate(activate=True)
    client = make_keyed_app(redis_client, tmp_path, "RS256").test_client()
    pair = login_pair(client)
    other_dir = tmp_path / "other"
    stranger = KeyDirectory(other_dir, "RS256")
    stranger_kid = stranger.generate(activate=True)
    signing_key = (other_dir / f"{stranger_kid}.pem").read_text()
    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    forged = jwt.encode(
        claims, signing_key, algorithm="RS256", headers={"kid": stranger_kid, "typ": "at+jwt"}
    )
    response = client.get(ME, headers=bearer(forged))
    assert response.status_code == 401
    assert response.get_json()["data"]["error"] == "token_invalid"


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_hs256_signed_with_the_rsa_public_key_is_refused(redis_client, tmp_path):
    """Algorithm confusion: an HS256 token keyed with the published RSA key is refused."""
    kid = KeyDirectory(tmp_path, "RS256").generate(activate=True)
    client = make_keyed_app(redis_client, tmp_path, "RS256").test_client()
    pair = login_pair(client)
    public_pem = jwt.PyJWK(client.get(JWKS).get_json()["keys"][0]).key.public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url(json.dumps({"alg": "HS256", "kid": kid, "typ": "at+jwt"}).encode())
    payload = pair["access_token"].split(".")[1]
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}.{b64url(signature)}"
    response = client.get(ME, headers=bearer(forged))
    assert response.get_json()["data"]["error"] == "token_invalid"


def test_a_single_pem_file_signs_with_a_thumbprint_kid(redis_client, tmp_path):
    """AUTHSVC_JWT_PRIVATE_KEY_FILE: one PEM, kid = its public key thumbprint."""
    kid = KeyDirectory(tmp_path, "ES256").generate(activate=True)
    pem_file = tmp_path / f"{kid}.pem"
    app = create_app(
        {"JWT_ALGORITHM": "ES256", "JWT_PRIVATE_KEY_FILE": str(pem_file)}, redis_client=redis_client
    )
    app.extensions["authsvc"].add_user(USERNAME, PASSWORD)
    client = app.test_client()
    pair = login_pair(client)
    assert header_of(pair["access_token"])["kid"] == keys.thumbprint_kid(pem_file.read_bytes())
    assert client.get(ME, headers=bearer(pair["access_token"])).status_code == 200


def test_keys_cli_generates_rotates_and_lists(tmp_path, monkeypatch):
    """`authsvc keys generate|rotate|list` manage the directory; rotate keeps the old key."""
    monkeypatch.setenv("AUTHSVC_JWT_ALGORITHM", "EdDSA")
    monkeypatch.setenv("AUTHSVC_JWT_KEY_DIR", str(tmp_path))
    runner = CliRunner()
    first = runner.invoke(cli, ["keys", "generate"])
    assert first.exit_code == 0, first.output
    rotated = runner.invoke(cli, ["keys", "rotate"])
    assert rotated.exit_code == 0, rotated.output
    assert "signs from" in rotated.output
    listing = runner.invoke(cli, ["keys", "list"]).output.splitlines()
    states = sorted(line.split("\t")[2].split()[0] for line in listing)
    assert states == ["active", "signs-from"]  # published, not signing for 330 s
    again = runner.invoke(cli, ["keys", "rotate"])
    assert again.exit_code != 0
    assert "rotate after" in str(again.exception)  # main() prints it as one line
    monkeypatch.delenv("FLASK_RUN_FROM_CLI", raising=False)


def test_keys_cli_refuses_an_hmac_configuration(monkeypatch):
    """Key commands only manage asymmetric key directories."""
    monkeypatch.setenv("AUTHSVC_JWT_SECRET", "s" * 40)
    result = CliRunner().invoke(cli, ["keys", "rotate"])
    assert result.exit_code != 0
    assert "RS256, ES256 or EdDSA" in result.output
    monkeypatch.delenv("FLASK_RUN_FROM_CLI", raising=False)


def test_keys_rotate_writes_a_key_rotated_audit_line_as_json(tmp_path):
    """`authsvc keys rotate` logs the key_rotated audit event as a JSON line on stderr."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AUTHSVC_")},
        "AUTHSVC_JWT_ALGORITHM": "ES256",
        "AUTHSVC_JWT_KEY_DIR": str(tmp_path),
    }
    authsvc = str(Path(sys.executable).parent / "authsvc")
    subprocess.run([authsvc, "keys", "generate"], env=env, check=True, capture_output=True)
    rotated = subprocess.run(
        [authsvc, "keys", "rotate"], env=env, check=True, capture_output=True, text=True
    )
    events = [json.loads(line) for line in rotated.stderr.splitlines() if line.startswith("{")]
    (audit,) = [e for e in events if e.get("event") == "key_rotated"]
    assert audit["algorithm"] == "ES256"
    assert audit["kid"] in rotated.stdout


def bump_mtime(path: Path) -> None:
    """A manifest mtime the worker has not loaded yet (writes within one tick look equal)."""
    stamp = path.stat().st_mtime + 5
    os.utime(path, (stamp, stamp))


def keys_status(client) -> dict:
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]["keys"]


def key_errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "authsvc.keys" and r.levelno >= 40]


def metric(client, name: str, **labels: str) -> float:
    from tests.test_observability import sample

    return sample(client.get("/metrics").get_data(as_text=True), name, **labels)


@pytest.mark.parametrize("fault", ["truncated_manifest", "missing_active_key", "unreadable_key"])
def test_a_bad_key_reload_keeps_serving_with_the_last_good_keys(
    redis_client, tmp_path, caplog, fault
):
    """After startup the manifest is truncated, or names a missing or unreadable key:
    every request still works with the last good keys (old tokens verify, new ones are
    signed), /readyz stays 200 and says keys "stale", authsvc_keys_stale is 1, and the
    error is logged once however many requests follow; repaired, it all recovers."""
    directory = KeyDirectory(tmp_path, "ES256")
    kid = directory.generate(activate=True)
    manifest = tmp_path / MANIFEST
    good_manifest = manifest.read_text()
    client = make_keyed_app(redis_client, tmp_path, "ES256").test_client()
    before = login_pair(client)
    assert keys_status(client) == {"status": "ok"}

    key_file = tmp_path / f"{kid}.pem"
    good_key = key_file.read_bytes()
    if fault == "truncated_manifest":
        manifest.write_text(good_manifest[: len(good_manifest) // 2])
    elif fault == "missing_active_key":
        key_file.rename(tmp_path / "moved-away.pem")
    else:
        key_file.write_text("-----BEGIN PRIVATE KEY-----\ntruncated\n")
    bump_mtime(manifest)

    caplog.set_level("INFO", logger="authsvc.keys")
    for _ in range(5):
        assert client.get("/healthz").status_code == 200
        assert client.get(ME, headers=bearer(before["access_token"])).status_code == 200
    during = login_pair(client)
    assert header_of(during["access_token"])["kid"] == kid
    assert client.get(ME, headers=bearer(during["access_token"])).status_code == 200
    assert client.get(JWKS).status_code == 200
    stale = keys_status(client)
    assert stale["status"] == "stale"
    assert stale["error"] in {"JSONDecodeError", "FileNotFoundError", "ValueError"}
    assert str(tmp_path) not in json.dumps(stale)  # no path on an unauthenticated probe
    assert metric(client, "authsvc_keys_stale") == 1
    assert metric(client, "authsvc_key_reload_failures_total", reason=stale["error"]) >= 5
    assert len(key_errors(caplog)) == 1

    key_file.write_bytes(good_key)
    manifest.write_text(good_manifest)
    bump_mtime(manifest)

    assert keys_status(client) == {"status": "ok"}
    assert metric(client, "authsvc_keys_stale") == 0
    assert client.get(ME, headers=bearer(before["access_token"])).status_code == 200
    assert len(key_errors(caplog)) == 1
    assert any("resolved" in r.getMessage() for r in caplog.records if r.name == "authsvc.keys")


def test_a_different_reload_failure_is_logged_again(redis_client, tmp_path, caplog):
    """One error line per distinct failure: a second, different fault logs once more."""
    KeyDirectory(tmp_path, "ES256").generate(activate=True)
    manifest = tmp_path / MANIFEST
    client = make_keyed_app(redis_client, tmp_path, "ES256").test_client()
    caplog.set_level("INFO", logger="authsvc.keys")

    manifest.write_text("{")
    bump_mtime(manifest)
    for _ in range(3):
        client.get("/healthz")
    manifest.write_text(json.dumps({"active": "no-such-kid", "retired": {}}))
    bump_mtime(manifest)
    for _ in range(3):
        client.get("/healthz")

    assert len(key_errors(caplog)) == 2
    assert keys_status(client)["error"] == "FileNotFoundError"


def test_no_good_keys_at_startup_refuses_to_start(redis_client, tmp_path):
    """With no good key ring ever loaded (a truncated manifest), the app does not start."""
    KeyDirectory(tmp_path, "ES256").generate(activate=True)
    (tmp_path / MANIFEST).write_text('{"active": ')
    with pytest.raises(ValueError, match="Expecting value"):
        make_keyed_app(redis_client, tmp_path, "ES256")
