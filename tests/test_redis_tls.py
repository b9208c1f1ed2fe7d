"""TLS to Redis: a real TLS Redis Cluster (3 masters) and a TLS Sentinel group.

Every redis-server here is Debian's, started by the test on loopback ports with a TLS
port only (no plain port), TLS replication and cluster bus, and client certificates
required; the certificates are made by `cryptography` in the test (tests/tls_certs.py).
Both deployments are shared by the module and stopped by PID.
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from authsvc import create_app
from authsvc.config import ConfigError, load_settings, parse_redis_topology
from authsvc.factory import make_redis
from authsvc.redis_tls import RedisTLSError, check_handshake, handshake_failure
from tests.cluster import (
    HOST,
    Cluster,
    Node,
    SentinelGroup,
    free_port_pair,
    redis_server_binary,
    tls_client_kwargs,
    wait_until,
)
from tests.conftest import PASSWORD, TEST_SECRET, USERNAME, bearer, login_pair
from tests.test_cli import assert_one_clear_line, run_authsvc
from tests.test_e2e import API, HTTP_TIMEOUT, ServeProcess, add_user_with_cli, serve_env
from tests.tls_certs import TlsFiles, make_tls_files


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for the module's certificates and servers."""
    return Path(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def certs(tls_dir: Path) -> TlsFiles:
    """The CA every server's certificate comes from, with a client certificate."""
    return make_tls_files(tls_dir / "certs")


@pytest.fixture(scope="module")
def other_ca(tls_dir: Path) -> TlsFiles:
    """Another CA with its own client certificate: not the one the servers trust."""
    return make_tls_files(tls_dir / "other", ca_name="some other CA")


@pytest.fixture(scope="module")
def tls_cluster(tls_dir: Path, certs: TlsFiles) -> Iterator[Cluster]:
    """A 3-master Redis Cluster speaking TLS only (client port, bus and all)."""
    cluster = Cluster(tls_dir / "cluster", replicas=False, tls=certs)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def tls_sentinel(tls_dir: Path, certs: TlsFiles) -> Iterator[SentinelGroup]:
    """A master, a replica and a sentinel, all speaking TLS only."""
    group = SentinelGroup(tls_dir / "sentinel", tls=certs)
    group.start()
    try:
        yield group
    finally:
        group.stop()


def tls_settings(files: TlsFiles, *, client_certificate: bool = True) -> dict[str, str]:
    """AUTHSVC_REDIS_TLS_* settings (without the prefix) for ``files``."""
    settings = {"REDIS_TLS_CA_FILE": str(files.ca)}
    if client_certificate:
        settings.update(
            REDIS_TLS_CERT_FILE=str(files.client_cert), REDIS_TLS_KEY_FILE=str(files.client_key)
        )
    return settings


def url_parameters(files: TlsFiles) -> str:
    """The same options as URL query parameters."""
    return (
        f"ssl_ca_certs={files.ca}&ssl_certfile={files.client_cert}&ssl_keyfile={files.client_key}"
    )


def test_the_test_redis_server_speaks_tls():
    """Debian's redis-server was built with TLS (else nothing below would be real)."""
    version = subprocess.run(
        [redis_server_binary(), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert "Redis server" in version
    libraries = subprocess.run(
        ["ldd", redis_server_binary()], capture_output=True, text=True, check=True
    ).stdout
    assert "libssl" in libraries


def _token_life(app: Any) -> None:
    """Login, /me, refresh, logout on ``app``: the whole token life through Redis."""
    app.extensions["authsvc"].add_user(USERNAME, PASSWORD)
    client = app.test_client()
    pair = login_pair(client)
    assert client.get(f"{API}/me", headers=bearer(pair["access_token"])).status_code == 200
    rotated = client.get(f"{API}/refresh", headers=bearer(pair["refresh_token"]))
    assert rotated.status_code == 200, rotated.get_json()
    access = rotated.get_json()["data"]["access_token"]
    assert client.post(f"{API}/logout", headers=bearer(access)).status_code == 200
    assert client.get(f"{API}/me", headers=bearer(access)).status_code == 401


def test_serve_on_a_tls_cluster_with_settings(tls_cluster, certs, tmp_path):
    """`authsvc serve` on rediss+cluster:// with the AUTHSVC_REDIS_TLS_* settings."""
    tls_cluster.flush()
    env = serve_env(REDIS_URL=tls_cluster.url, JWT_SECRET=TEST_SECRET, **tls_settings(certs))
    add_user_with_cli(env, USERNAME, PASSWORD)
    serve = ServeProcess(env, tmp_path)
    try:
        serve.wait_ready()
        assert requests.get(f"{serve.url}/readyz", timeout=HTTP_TIMEOUT).status_code == 200
        body = {"username": USERNAME, "password": PASSWORD}
        login = requests.post(f"{serve.url}{API}/login", json=body, timeout=HTTP_TIMEOUT)
        assert login.status_code == 200, login.text
        pair = login.json()["data"]
        me = requests.get(
            f"{serve.url}{API}/me", headers=bearer(pair["access_token"]), timeout=HTTP_TIMEOUT
        )
        assert me.status_code == 200
        refresh = requests.get(
            f"{serve.url}{API}/refresh", headers=bearer(pair["refresh_token"]), timeout=HTTP_TIMEOUT
        )
        assert refresh.status_code == 200, refresh.text
    finally:
        survivors = serve.stop()
    assert not survivors
    # The sessions are in the cluster, which has no plain-text port at all.
    with tls_cluster.client() as admin:
        assert any(True for _ in admin.scan_iter("authsvc:*", target_nodes="all"))


def test_a_tls_cluster_with_url_parameters(tls_cluster, certs):
    """rediss+cluster://...?ssl_ca_certs=&ssl_certfile=&ssl_keyfile= works alone."""
    tls_cluster.flush()
    url = f"{tls_cluster.url}?{url_parameters(certs)}"
    _token_life(create_app({"JWT_SECRET": TEST_SECRET, "REDIS_URL": url}))
    tls_cluster.flush()


def test_a_tls_sentinel_group_with_url_parameters(tls_sentinel, certs):
    """rediss+sentinel:// with the options as URL parameters: TLS to sentinel and master."""
    url = f"{tls_sentinel.url}?{url_parameters(certs)}"
    app = create_app({"JWT_SECRET": TEST_SECRET, "REDIS_URL": url})
    try:
        _token_life(app)
        with tls_sentinel.master.admin() as master:
            assert master.dbsize() > 0
    finally:
        with tls_sentinel.master.admin() as master:
            master.flushdb()


def test_a_tls_sentinel_group_with_settings(tls_sentinel, certs):
    """rediss+sentinel:// with the AUTHSVC_REDIS_TLS_* settings."""
    app = create_app(
        {"JWT_SECRET": TEST_SECRET, "REDIS_URL": tls_sentinel.url, **tls_settings(certs)}
    )
    try:
        _token_life(app)
    finally:
        with tls_sentinel.master.admin() as master:
            master.flushdb()


@pytest.mark.parametrize("deployment", ["cluster", "sentinel"])
@pytest.mark.parametrize("command", ["serve", "check-config"])
def test_a_wrong_ca_refuses_to_start_with_one_clear_line(
    deployment, command, tls_cluster, tls_sentinel, other_ca, certs
):
    """A CA that did not sign the servers' certificates (a man in the middle's view):
    `serve` and `check-config` refuse with one line naming the CA setting."""
    url = tls_cluster.url if deployment == "cluster" else tls_sentinel.url
    settings = {**tls_settings(certs), "REDIS_TLS_CA_FILE": str(other_ca.ca)}
    env = serve_env(REDIS_URL=url, JWT_SECRET=TEST_SECRET, **settings)
    result = run_authsvc(env, command, timeout=60)
    assert result.returncode != 0
    assert_one_clear_line(
        result.stderr,
        "TLS with Redis at 127.0.0.1:",
        "self-signed certificate in certificate chain",
        "AUTHSVC_REDIS_TLS_CA_FILE",
    )


def test_without_a_client_certificate_the_servers_refuse(tls_cluster, certs):
    """The servers require client certificates: without one, one clear line says so."""
    settings = load_settings(
        {
            "JWT_SECRET": TEST_SECRET,
            "REDIS_URL": tls_cluster.url,
            **tls_settings(certs, client_certificate=False),
        }
    )
    with pytest.raises(RedisTLSError, match="client certificate"):
        check_handshake(make_redis, settings)


@pytest.mark.parametrize(
    "refusal",
    [
        # TLS 1.3: the server's alert, when the client reads it before the socket closes ...
        ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert (_ssl.c:2580)"),
        # ... or only the closed socket (which of the two depends on timing).
        ssl.SSLEOFError(8, "EOF occurred in violation of protocol (_ssl.c:2427)"),
    ],
)
def test_a_missing_client_certificate_is_named_whichever_way_the_refusal_arrives(refusal):
    """Both shapes of the same refusal give the one line naming the client certificate."""
    error = redis.exceptions.ConnectionError("Error connecting")
    error.__cause__ = refusal
    failure = handshake_failure(error, "127.0.0.1:6380")
    assert failure is not None
    assert "client certificate" in str(failure)
    assert "AUTHSVC_REDIS_TLS_CERT_FILE" in str(failure)


def test_the_server_name_is_checked_unless_turned_off(tls_dir):
    """A certificate for another name is refused; ssl_check_hostname=false accepts it
    (the CA is still checked)."""
    files = make_tls_files(tls_dir / "elsewhere", server_names=("redis.internal",))
    node = Node(tls_dir / "elsewhere-node", free_port_pair(), tls=files)
    try:
        # Node.answers checks the name; this node's certificate names another host.
        node.start(wait=False)

        def answers() -> bool:
            kwargs = {**tls_client_kwargs(files), "ssl_check_hostname": False}
            with redis.Redis(host=HOST, port=node.port, **kwargs) as client:
                return bool(client.ping())

        wait_until(answers, "the TLS node")
        url = f"rediss://127.0.0.1:{node.port}/0"
        checked = load_settings(
            {"JWT_SECRET": TEST_SECRET, "REDIS_URL": url, **tls_settings(files)}
        )
        with pytest.raises(RedisTLSError, match="mismatch"):
            check_handshake(make_redis, checked)
        for unchecked in (
            load_settings(
                {
                    "JWT_SECRET": TEST_SECRET,
                    "REDIS_URL": url,
                    **tls_settings(files),
                    "REDIS_TLS_CHECK_HOSTNAME": "false",
                }
            ),
            load_settings(
                {
                    "JWT_SECRET": TEST_SECRET,
                    "REDIS_URL": f"{url}?{url_parameters(files)}&ssl_check_hostname=false",
                }
            ),
        ):
            check_handshake(make_redis, unchecked)
            client = make_redis(unchecked)
            assert client.ping()
            client.close()
    finally:
        node.stop()


def test_a_missing_file_refuses_with_one_clear_line(tls_cluster, tmp_path):
    """A CA file that does not exist: check-config (and serve) say so in one line."""
    missing = tmp_path / "no-such-ca.pem"
    env = serve_env(
        REDIS_URL=tls_cluster.url, JWT_SECRET=TEST_SECRET, REDIS_TLS_CA_FILE=str(missing)
    )
    for command in ("check-config", "serve"):
        result = run_authsvc(env, command)
        assert result.returncode == 2
        assert_one_clear_line(
            result.stderr, "invalid authsvc configuration", f"{missing} does not exist"
        )


def test_files_are_validated_when_the_settings_load(certs, other_ca, tmp_path):
    """Not PEM, a certificate without its key, a key of another certificate: refused."""
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("hello")
    base = {"JWT_SECRET": TEST_SECRET, "REDIS_URL": "rediss+cluster://127.0.0.1:7000"}
    cases = [
        ({"REDIS_TLS_CA_FILE": str(not_pem)}, "holds no PEM certificate"),
        ({"REDIS_TLS_CERT_FILE": str(certs.client_cert)}, "go together"),
        (
            {
                "REDIS_TLS_CERT_FILE": str(certs.client_cert),
                "REDIS_TLS_KEY_FILE": str(other_ca.client_key),
            },
            "is not the key of the certificate",
        ),
        (
            {"REDIS_TLS_KEY_FILE": str(not_pem), "REDIS_TLS_CERT_FILE": str(certs.client_cert)},
            "not an unencrypted PEM private key",
        ),
        ({"REDIS_TLS_CHECK_HOSTNAME": "maybe"}, "is not true or false"),
    ]
    for settings, message in cases:
        with pytest.raises(ConfigError, match=message):
            load_settings({**base, **settings})


def test_tls_settings_with_a_plain_url_are_refused(certs):
    """TLS files on a redis:// URL would silently be ignored: refused instead."""
    with pytest.raises(ConfigError, match="does not use TLS"):
        load_settings(
            {
                "JWT_SECRET": TEST_SECRET,
                "REDIS_URL": "redis+cluster://127.0.0.1:7000",
                **tls_settings(certs),
            }
        )


def test_tls_topology_urls_parse():
    """rediss+cluster:// and rediss+sentinel:// take the TLS parameters; redis+ ones do not."""
    cluster = parse_redis_topology("rediss+cluster://a:7000,b:7001?ssl_ca_certs=/ca.pem")
    assert cluster is not None
    assert (cluster.kind, cluster.tls, cluster.nodes) == (
        "cluster",
        True,
        (("a", 7000), ("b", 7001)),
    )
    sentinel = parse_redis_topology(
        "rediss+sentinel://:pw@s1:26379/m/1?sentinel_password=x&ssl_check_hostname=false"
    )
    assert sentinel is not None
    assert (sentinel.kind, sentinel.tls, sentinel.master_name, sentinel.db) == (
        "sentinel",
        True,
        "m",
        1,
    )
    assert sentinel.sentinel_password == "x"
    with pytest.raises(ValueError, match="no query"):
        parse_redis_topology("redis+cluster://a:7000?ssl_ca_certs=/ca.pem")
    with pytest.raises(ValueError, match="sentinel_password"):
        parse_redis_topology("rediss+sentinel://s1:26379/m?ssl_bogus=1")
