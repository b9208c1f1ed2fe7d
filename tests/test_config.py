"""Settings: defaults, every validation rule, env parsing and create_app's use of AUTHSVC_*."""

import os
import subprocess
import sys

import fakeredis
import pytest
import redis

from authsvc import create_app
from authsvc.config import ConfigError, load_settings, parse_redis_topology, unknown_env_names
from authsvc.factory import make_redis
from tests.conftest import TEST_SECRET

REDIS_URL = "redis://127.0.0.1:6379/0"
VALID = {"JWT_SECRET": TEST_SECRET, "REDIS_URL": REDIS_URL}


def problems_of(**values):
    """The problems ConfigError lists for VALID updated with ``values``."""
    with pytest.raises(ConfigError) as caught:
        load_settings({**VALID, **values})
    return caught.value.problems


def test_defaults_match_the_specification():
    """Only a secret and a Redis URL given: every other knob has its documented default."""
    settings = load_settings(VALID)
    assert settings.jwt_algorithm == "HS256"
    assert settings.jwt_leeway == 30
    assert settings.access_token_ttl == 15 * 60
    assert settings.refresh_token_ttl == 30 * 24 * 3600
    assert settings.session_idle_timeout == 7 * 24 * 3600
    assert settings.refresh_grace_seconds == 20
    assert settings.login_ipv6_prefix == 64
    assert settings.max_body_bytes == 16 * 1024
    assert settings.envelope_http_status == "mirror"
    assert settings.always_200 is False
    assert settings.argon2_memory_kib >= 19 * 1024
    assert settings.argon2_time_cost >= 2


@pytest.mark.parametrize("prefix", ["31", "129", "-1"])
def test_ipv6_login_prefix_outside_32_to_128_is_refused(prefix):
    """The IPv6 throttle prefix must group at most an ISP allocation (/32), at least one
    address (/128)."""
    assert any("AUTHSVC_LOGIN_IPV6_PREFIX" in p for p in problems_of(LOGIN_IPV6_PREFIX=prefix))
    assert load_settings({**VALID, "LOGIN_IPV6_PREFIX": "48"}).login_ipv6_prefix == 48


def test_secret_shorter_than_32_bytes_is_refused():
    """A 31-byte secret is refused, a 32-byte one accepted."""
    problems = problems_of(JWT_SECRET="x" * 31)
    assert any("AUTHSVC_JWT_SECRET" in p and "32" in p for p in problems)
    assert load_settings({**VALID, "JWT_SECRET": "x" * 32}).jwt_secret == "x" * 32


def test_secret_length_is_counted_in_bytes():
    """Sixteen two-byte characters make 32 bytes; fifteen (30 bytes) are refused."""
    assert load_settings({**VALID, "JWT_SECRET": "é" * 16}).jwt_secret == "é" * 16
    assert any("AUTHSVC_JWT_SECRET" in p for p in problems_of(JWT_SECRET="é" * 15))


@pytest.mark.parametrize("values", [{"REDIS_URL": REDIS_URL}, {**VALID, "JWT_SECRET": ""}])
def test_missing_secret_is_refused_with_a_clear_message(values):
    """No (or an empty) secret: the error names the variable and says how to make one."""
    with pytest.raises(ConfigError) as caught:
        load_settings(values)
    text = str(caught.value)
    assert "AUTHSVC_JWT_SECRET is not set" in text
    assert "secrets.token_urlsafe" in text


def test_leeway_above_60_seconds_is_refused():
    """Leeway 61 is refused; 60 is the largest accepted."""
    assert any("AUTHSVC_JWT_LEEWAY" in p for p in problems_of(JWT_LEEWAY=61))
    assert load_settings({**VALID, "JWT_LEEWAY": 60}).jwt_leeway == 60


def test_negative_leeway_is_refused():
    """A negative leeway makes no sense and is refused."""
    assert any("AUTHSVC_JWT_LEEWAY" in p for p in problems_of(JWT_LEEWAY=-1))


@pytest.mark.parametrize("algorithm", ["none", "None", "PS256", "RS512", "ES384", "hs256", ""])
def test_algorithm_outside_the_allowlist_is_refused(algorithm):
    """Only HS256/384/512, RS256, ES256 and EdDSA are accepted; `none` and others refused."""
    assert any("AUTHSVC_JWT_ALGORITHM" in p for p in problems_of(JWT_ALGORITHM=algorithm))


@pytest.mark.parametrize(("algorithm", "key_bytes"), [("HS256", 32), ("HS384", 48), ("HS512", 64)])
def test_allowlisted_algorithms_are_accepted(algorithm, key_bytes):
    """Each HMAC algorithm of the allowlist is accepted with a key as long as its hash."""
    settings = load_settings({**VALID, "JWT_ALGORITHM": algorithm, "JWT_SECRET": "k" * key_bytes})
    assert settings.jwt_algorithm == algorithm


@pytest.mark.parametrize(("algorithm", "key_bytes"), [("HS384", 47), ("HS512", 63), ("HS512", 48)])
def test_secret_shorter_than_the_hash_output_is_refused(algorithm, key_bytes):
    """RFC 7518 section 3.2: an HS384 key needs 48 bytes and an HS512 key 64 bytes."""
    problems = problems_of(JWT_ALGORITHM=algorithm, JWT_SECRET="k" * key_bytes)
    assert any("AUTHSVC_JWT_SECRET" in p for p in problems)


@pytest.mark.parametrize(
    ("name", "value"),
    [("ARGON2_TIME_COST", 1), ("ARGON2_MEMORY_KIB", 19 * 1024 - 1), ("ARGON2_PARALLELISM", 0)],
)
def test_argon2_parameters_below_owasp_minimum_are_refused(name, value):
    """argon2id with t < 2, m < 19 MiB or p < 1 is refused."""
    assert any(f"AUTHSVC_{name}" in p for p in problems_of(**{name: value}))


@pytest.mark.parametrize("mode", ["always_200", "ALWAYS200", "200", "", "mirrored"])
def test_unknown_envelope_http_status_mode_is_refused(mode):
    """ENVELOPE_HTTP_STATUS accepts exactly 'mirror' and 'always200'."""
    problems = problems_of(ENVELOPE_HTTP_STATUS=mode)
    assert any("AUTHSVC_ENVELOPE_HTTP_STATUS" in p for p in problems)


@pytest.mark.parametrize("language", ["fr", "ZH", "zh-CN", ""])
def test_unsupported_default_language_is_refused(language):
    """DEFAULT_LANGUAGE accepts exactly the catalogue's languages (en, zh)."""
    problems = problems_of(DEFAULT_LANGUAGE=language)
    assert any("AUTHSVC_DEFAULT_LANGUAGE must be one of en, zh" in p for p in problems)


def test_always200_mode_is_accepted():
    """ENVELOPE_HTTP_STATUS=always200 switches the legacy mode on."""
    assert load_settings({**VALID, "ENVELOPE_HTTP_STATUS": "always200"}).always_200 is True


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://cache.example:6380/1", "unix:///run/r.sock"]
)
def test_redis_url_with_a_redis_scheme_is_accepted(url):
    """redis://, rediss:// and unix:// URLs are accepted."""
    assert load_settings({**VALID, "REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "", "tcp://x:1"])
def test_redis_url_with_another_scheme_is_refused(url):
    """Anything but redis://, rediss:// or unix:// is refused when Redis is required."""
    assert any("AUTHSVC_REDIS_URL" in p for p in problems_of(REDIS_URL=url))


def test_a_cluster_url_names_its_seed_nodes():
    """redis+cluster://[user:password@]host:port,... lists the seed nodes (IPv6 too)."""
    url = "redis+cluster://app:s%40cret@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002"
    topology = parse_redis_topology(load_settings({**VALID, "REDIS_URL": url}).redis_url)
    assert topology.kind == "cluster"
    assert topology.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002))
    assert (topology.username, topology.password) == ("app", "s@cret")
    assert "s@cret" not in repr(topology)


def test_a_sentinel_url_names_the_sentinels_the_master_and_the_passwords():
    """redis+sentinel://[:password@]host:port,.../<master>[/<db>][?sentinel_password=]."""
    url = "redis+sentinel://:pw@s1:26379,s2:26380/mymaster/2?sentinel_password=spw"
    topology = parse_redis_topology(load_settings({**VALID, "REDIS_URL": url}).redis_url)
    assert topology.kind == "sentinel"
    assert topology.nodes == (("s1", 26379), ("s2", 26380))
    assert (topology.master_name, topology.db) == ("mymaster", 2)
    assert (topology.username, topology.password, topology.sentinel_password) == (
        None,
        "pw",
        "spw",
    )


@pytest.mark.parametrize(
    ("written", "password"),
    [
        ("a+b", "a+b"),  # parse_qs would read the query's + as a space
        ("a%2Bb", "a+b"),
        ("a%20b", "a b"),
        ("p%26q%3Dr%40s%2Ft", "p&q=r@s/t"),
        ("%E2%82%AC+", "\u20ac+"),
    ],
)
def test_both_sentinel_url_passwords_are_percent_decoded_the_same_way(written, password):
    """The data password (before @) and sentinel_password (in the query) decode alike:
    percent-decoding only, + stays +; the clients make_redis builds get exactly them."""
    url = f"redis+sentinel://:{written}@127.0.0.1:26379/m?sentinel_password={written}"
    settings = load_settings({**VALID, "REDIS_URL": url})
    topology = parse_redis_topology(settings.redis_url)
    assert (topology.password, topology.sentinel_password) == (password, password)
    client = make_redis(settings)  # connects lazily
    [sentinel] = client.connection_pool.sentinel_manager.sentinels
    assert client.connection_pool.connection_kwargs["password"] == password
    assert sentinel.connection_pool.connection_kwargs["password"] == password


@pytest.mark.parametrize(
    ("query", "sentinel_password"),
    [("", None), ("?", None), ("?sentinel_password=", None), ("?sentinel_password=x&", "x")],
)
def test_an_empty_sentinel_password_is_none(query, sentinel_password):
    """No query, an empty query or an empty value: the sentinels get no password."""
    topology = parse_redis_topology(f"redis+sentinel://s1:26379/m{query}")
    assert topology.sentinel_password == sentinel_password


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis+cluster://", "no host:port"),
        ("redis+cluster://node-a", "not host:port"),
        ("redis+cluster://a:7000,b:notaport", "'b:notaport' is not host:port"),
        ("redis+cluster://a:7000/3", "no database"),
        ("redis+cluster://a:7000?db=1", "no query"),
        ("redis+sentinel://s1:26379", "/<master-name>"),
        ("redis+sentinel://s1:26379/m/x", "/<master-name>"),
        ("redis+sentinel://s1:26379/m?password=x", "sentinel_password"),
    ],
)
def test_a_malformed_cluster_or_sentinel_url_is_one_clear_problem(url, reason):
    """A bad redis+cluster:// or redis+sentinel:// URL says what is wrong and the formats."""
    [problem] = problems_of(REDIS_URL=url)
    assert problem.startswith("AUTHSVC_REDIS_URL: ")
    assert reason in problem
    assert "redis+cluster://" in problem
    assert "redis+sentinel://" in problem


def test_make_redis_gives_a_sentinel_master_the_same_timeouts_and_retry():
    """redis+sentinel://: a master_for client with the socket timeout, one retry only on a
    refused connection, the db and password; the sentinels get their own password."""
    settings = load_settings(
        {
            **VALID,
            "REDIS_URL": "redis+sentinel://:pw@127.0.0.1:26379/mymaster/2?sentinel_password=spw",
            "REDIS_SOCKET_TIMEOUT": "0.25",
        }
    )
    client = make_redis(settings)  # connects lazily
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.25, 0.25)
    assert (kwargs["db"], kwargs["password"]) == (2, "pw")
    assert kwargs["retry"].get_retries() == 1
    assert redis.exceptions.TimeoutError not in kwargs["retry"]._supported_errors
    [sentinel] = client.connection_pool.sentinel_manager.sentinels
    sentinel_kwargs = sentinel.connection_pool.connection_kwargs
    assert (sentinel_kwargs["password"], sentinel_kwargs["socket_timeout"]) == ("spw", 0.25)


def test_redis_url_is_optional_when_an_embedded_redis_will_be_started():
    """require_redis=False (the embedded-Redis CLI path) accepts a missing URL."""
    assert load_settings({"JWT_SECRET": TEST_SECRET}, require_redis=False).redis_url == ""


def test_several_problems_are_reported_together():
    """One ConfigError lists every problem, each on its own line, not just the first."""
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                "JWT_SECRET": "short",
                "JWT_LEEWAY": 600,
                "JWT_ALGORITHM": "none",
                "REDIS_URL": "http://x",
                "ENVELOPE_HTTP_STATUS": "sometimes",
            }
        )
    problems = caught.value.problems
    for name in (
        "JWT_SECRET",
        "JWT_LEEWAY",
        "JWT_ALGORITHM",
        "REDIS_URL",
        "ENVELOPE_HTTP_STATUS",
    ):
        assert sum(f"AUTHSVC_{name}" in p for p in problems) == 1, (name, problems)
    assert len(str(caught.value).splitlines()) == 1 + len(problems)


def test_string_values_are_parsed_to_numbers():
    """Environment values arrive as strings and become ints and floats."""
    settings = load_settings(
        {
            **VALID,
            "JWT_LEEWAY": "45",
            "ACCESS_TOKEN_TTL": " 600 ",
            "MAX_BODY_BYTES": "2048",
            "REDIS_SOCKET_TIMEOUT": "0.5",
        }
    )
    assert settings.jwt_leeway == 45
    assert isinstance(settings.jwt_leeway, int)
    assert settings.access_token_ttl == 600
    assert settings.max_body_bytes == 2048
    assert settings.redis_socket_timeout == 0.5


@pytest.mark.parametrize("value", ["abc", "4.5", "", True])
def test_unparsable_number_is_refused_with_its_name(value):
    """A value that is not an integer is reported with the variable's name."""
    assert any("AUTHSVC_JWT_LEEWAY" in p for p in problems_of(JWT_LEEWAY=value))


def test_unknown_env_names_flags_typos_only():
    """A misspelt AUTHSVC_ name is flagged; real settings, test knobs and others are not."""
    environ = {
        "AUTHSVC_JWT_SECRT": "typo",
        "AUTHSVC_JWT_SECRET": TEST_SECRET,
        "AUTHSVC_REDIS_URL": REDIS_URL,
        "AUTHSVC_TEST_REDIS_URL": "redis://127.0.0.1:6379/11",
        "AUTHSVC_TEST_ANYTHING": "1",
        "PATH": "/usr/bin",
        "REDIS_URL": "redis://elsewhere",
    }
    assert unknown_env_names(environ) == ["AUTHSVC_JWT_SECRT"]


def test_unknown_env_names_reads_the_process_environment(monkeypatch):
    """Without an argument it inspects os.environ."""
    monkeypatch.setenv("AUTHSVC_WORKER", "4")
    assert "AUTHSVC_WORKER" in unknown_env_names()


def test_create_app_reads_settings_from_the_environment(monkeypatch):
    """AUTHSVC_* variables configure the app and the JWT layer."""
    monkeypatch.setenv("AUTHSVC_JWT_SECRET", TEST_SECRET)
    monkeypatch.setenv("AUTHSVC_REDIS_URL", "redis://127.0.0.1:6379/11")
    monkeypatch.setenv("AUTHSVC_JWT_LEEWAY", "45")
    monkeypatch.setenv("AUTHSVC_ENVELOPE_HTTP_STATUS", "always200")
    monkeypatch.setenv("AUTHSVC_MAX_BODY_BYTES", "4096")
    app = create_app()
    settings = app.extensions["authsvc"].settings
    assert settings.jwt_secret == TEST_SECRET
    assert settings.redis_url == "redis://127.0.0.1:6379/11"
    assert settings.jwt_leeway == 45
    assert settings.always_200 is True
    assert app.config["JWT_DECODE_LEEWAY"] == 45
    assert app.config["MAX_CONTENT_LENGTH"] == 4096


def test_create_app_overrides_win_over_the_environment(monkeypatch):
    """An explicit override beats the environment variable of the same setting."""
    monkeypatch.setenv("AUTHSVC_JWT_SECRET", TEST_SECRET)
    monkeypatch.setenv("AUTHSVC_JWT_LEEWAY", "45")
    app = create_app({"JWT_LEEWAY": 5}, redis_client=fakeredis.FakeRedis())
    assert app.extensions["authsvc"].settings.jwt_leeway == 5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUTHSVC_JWT_LEEWAY", "120"),
        ("AUTHSVC_JWT_SECRET", "too-short"),
        ("AUTHSVC_REDIS_URL", "http://127.0.0.1:6379"),
        ("AUTHSVC_ENVELOPE_HTTP_STATUS", "never"),
        ("AUTHSVC_ARGON2_TIME_COST", "1"),
    ],
)
def test_create_app_refuses_to_start_with_a_bad_environment_value(monkeypatch, name, value):
    """A bad AUTHSVC_* value stops create_app with a ConfigError naming it."""
    monkeypatch.setenv("AUTHSVC_JWT_SECRET", TEST_SECRET)
    monkeypatch.setenv("AUTHSVC_REDIS_URL", REDIS_URL)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        create_app()
    assert name in str(caught.value)


def test_create_app_without_a_secret_refuses_to_start():
    """No AUTHSVC_JWT_SECRET at all: create_app refuses, naming the variable."""
    with pytest.raises(ConfigError, match="AUTHSVC_JWT_SECRET is not set"):
        create_app(redis_client=fakeredis.FakeRedis())


@pytest.mark.parametrize("value", ["0", "65"])
def test_threads_outside_1_to_64_are_refused(value):
    """AUTHSVC_THREADS (gthread threads per worker) must be 1 to 64."""
    assert any("AUTHSVC_THREADS" in p for p in problems_of(THREADS=value))


@pytest.mark.parametrize("value", ["-1", "257", "two"])
def test_hash_concurrency_outside_0_to_256_is_refused_with_what_it_means(value):
    """AUTHSVC_HASH_CONCURRENCY is 0 (automatic) or 1 to 256 hashes; junk says so."""
    problems = problems_of(HASH_CONCURRENCY=value)
    assert len(problems) == 1
    if value == "two":
        assert problems == ["AUTHSVC_HASH_CONCURRENCY must be of type int"]
    else:
        assert problems == [
            "AUTHSVC_HASH_CONCURRENCY must be 0 (each worker's share of the CPU cores) "
            "or a number of argon2 hashes per worker from 1 to 256"
        ]


def test_hash_concurrency_is_automatic_by_default_and_read_from_the_environment(monkeypatch):
    """0 by default (the cores shared among the workers); a number is taken as given,
    and create_app sizes the process's hashing threads with it."""
    from authsvc.passwords import hashing_threads

    assert load_settings(VALID).hash_concurrency == 0
    assert load_settings({**VALID, "HASH_CONCURRENCY": "3"}).hash_concurrency == 3
    monkeypatch.setenv("AUTHSVC_HASH_CONCURRENCY", "3")
    monkeypatch.setenv("AUTHSVC_JWT_SECRET", TEST_SECRET)
    try:
        create_app(redis_client=fakeredis.FakeRedis())
        assert hashing_threads.size == 3
    finally:
        hashing_threads.configure(limit=0)


def test_gunicorn_reads_threads_and_refuses_junk_in_one_line():
    """The gunicorn config takes AUTHSVC_THREADS; junk is one clear line, not a traceback."""
    code = "import authsvc.gunicorn_conf as c; print(c.threads)"
    run = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "AUTHSVC_THREADS": "8"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.stdout.strip() == "8", run.stderr
    bad = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "AUTHSVC_THREADS": "eight"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode != 0
    assert bad.stderr.strip() == "AUTHSVC_THREADS must be a whole number from 1 to 64, not 'eight'"


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"DPOP_PROOF_WINDOW": 0}, "AUTHSVC_DPOP_PROOF_WINDOW"),
        ({"DPOP_PROOF_WINDOW": 301}, "AUTHSVC_DPOP_PROOF_WINDOW"),
        ({"DPOP_NONCE_SECRET": "short"}, "AUTHSVC_DPOP_NONCE_SECRET"),
        ({"DPOP_NONCE_LIFETIME": 5}, "AUTHSVC_DPOP_NONCE_LIFETIME"),
        ({"DPOP_NONCE_LIFETIME": "soon"}, "AUTHSVC_DPOP_NONCE_LIFETIME"),
    ],
)
def test_dpop_settings_out_of_range_are_reported(values, named):
    """The proof window, the nonce secret and the nonce slot are checked at startup."""
    assert any(named in problem for problem in problems_of(**values))


def test_dpop_settings_default_to_a_minute_and_no_nonces():
    """Defaults: a 60 s proof window, server nonces off; a 32-byte secret turns them on."""
    settings = load_settings(VALID)
    assert (settings.dpop_proof_window, settings.dpop_nonce_secret) == (60, "")
    assert load_settings({**VALID, "DPOP_NONCE_SECRET": "n" * 32}).dpop_nonce_secret


def test_gunicorn_parses_http_with_its_c_parser():
    """gunicorn_h1c is installed and authsvc's gunicorn settings let gunicorn take it
    (http_parser auto, none of the compatibility flags the C parser refuses)."""
    from gunicorn.config import Config
    from gunicorn.http.message import _check_fast_parser

    import authsvc.gunicorn_conf as conf

    cfg = Config()
    for name in cfg.settings:
        if hasattr(conf, name):
            cfg.set(name, getattr(conf, name))
    assert _check_fast_parser(cfg) is True
