"""The xdist arrangement (tests/workers.py, tests/scheduling.py): what each worker owns."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import redis
from xdist.scheduler import LoadScopeScheduling

from tests import workers
from tests.scheduling import ModuleGroupScheduling, defines_a_shared_fixture, unit_of_work


@pytest.mark.parametrize(
    ("url", "index", "expected"),
    [
        ("redis://127.0.0.1:6379/15", 0, "redis://127.0.0.1:6379/15"),
        ("redis://127.0.0.1:6379/15", 3, "redis://127.0.0.1:6379/12"),
        ("redis://127.0.0.1:6379", 0, "redis://127.0.0.1:6379/0"),
        (
            "rediss://:pw@cache:6380/9?ssl_cert_reqs=none",
            1,
            "rediss://:pw@cache:6380/8?ssl_cert_reqs=none",
        ),
        ("unix:///run/redis.sock?db=5", 2, "unix:///run/redis.sock?db=3"),
        ("redis://127.0.0.1:6379/2", 3, None),  # below 0: the worker runs its own server
    ],
)
def test_each_worker_gets_the_configured_database_minus_its_number(url, index, expected):
    assert workers.redis_url_for_worker(url, index) == expected


def test_the_workers_databases_are_distinct_and_parse_as_redis_urls():
    urls = [workers.redis_url_for_worker("redis://127.0.0.1:6379/15", n) for n in range(4)]
    dbs = [redis.connection.parse_url(url)["db"] for url in urls]
    assert dbs == [15, 14, 13, 12]


def test_the_workers_port_slices_are_disjoint_and_below_the_ephemeral_range(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    slices = []
    for n in range(4):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{n}")
        slices.append(set(workers.port_slice()))
        port = workers.free_port(with_bus_port=True)
        assert port in slices[-1]
    assert sum(len(s) for s in slices) == len(set().union(*slices)) == workers.PORT_SPAN
    assert max(set().union(*slices)) < 32768  # the kernel's ephemeral ports start there


def test_outside_xdist_the_process_is_worker_0_of_1(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    assert (workers.worker_index(), workers.worker_count()) == (0, 1)
    assert workers.port_slice() == range(20_000, 30_000)
    assert workers.redis_url_for_worker("redis://127.0.0.1:6379/15") == "redis://127.0.0.1:6379/15"


def test_the_run_lock_serialises_the_workers(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    base = tmp_path / "popen-gw1"
    base.mkdir()
    with workers.run_lock(base, "chromium"):
        assert (tmp_path / "chromium.lock").exists()  # beside the workers' folders


def test_a_module_with_a_module_scoped_fixture_is_one_unit_of_work(tmp_path):
    (tmp_path / "test_served.py").write_text(
        '@pytest.fixture(scope="module")\ndef site(): ...\ndef test_a(site): ...\n'
    )
    (tmp_path / "test_unit.py").write_text("@pytest.fixture\ndef x(): ...\ndef test_b(x): ...\n")
    assert defines_a_shared_fixture(tmp_path / "test_served.py")
    assert not defines_a_shared_fixture(tmp_path / "test_unit.py")
    grouped: dict[str, bool] = {}  # node ids are relative to tmp_path, as to the rootdir
    assert unit_of_work("test_served.py::test_a[x]", tmp_path, grouped) == "test_served.py"
    assert unit_of_work("test_served.py::test_c", tmp_path, grouped) == "test_served.py"
    assert unit_of_work("test_unit.py::test_b", tmp_path, grouped) == "test_unit.py::test_b"
    assert unit_of_work("test_unit.py::test_b@db", tmp_path, grouped) == "db"  # xdist_group
    assert ModuleGroupScheduling._split_scope is not LoadScopeScheduling._split_scope


def test_the_suite_is_scheduled_by_module_group_scheduling(pytestconfig):
    """pyproject's addopts choose loadgroup, which tests/conftest.py maps to our scheduler."""
    assert "--dist loadgroup" in " ".join(pytestconfig.getini("addopts"))


def _imports_the_configured_url(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        imported = isinstance(node, ast.ImportFrom) and node.module == "tests.conftest"
        if imported and any(alias.name == "TEST_REDIS_URL" for alias in node.names):
            return True
        if isinstance(node, ast.Attribute) and node.attr == "TEST_REDIS_URL":
            return True
    return False


def test_no_test_module_talks_to_the_configured_database_itself(tmp_path):
    """Tests reach the shared Redis through conftest's ``real_redis_url`` only: the
    configured database (``TEST_REDIS_URL``) is worker gw0's, so a module on another
    worker using it directly flushes gw0's data mid-test (the interop module's setup
    emptied the key ring of gw0's damaged-ring test, which then never recovered)."""
    direct = [
        path.name
        for path in sorted(Path(__file__).parent.glob("*.py"))
        if _imports_the_configured_url(path)
    ]
    assert direct == []
    sample = tmp_path / "test_sample.py"
    sample.write_text("from tests.conftest import (\n    PASSWORD,\n    TEST_REDIS_URL,\n)\n")
    assert _imports_the_configured_url(sample)  # the check does catch one


def test_free_port_never_hands_out_a_port_twice_before_it_is_bound(monkeypatch):
    """The six nodes of a Cluster get their ports first and start after: two picks of the
    same still-unbound port would make two nodes fight over it. The same port drawn
    again is skipped."""
    first, second = workers.port_slice()[:2]
    draws = iter([first, first, second])
    monkeypatch.setattr(workers.random, "choice", lambda ports: next(draws))
    monkeypatch.setattr(workers, "_RECENT_PORTS", workers.collections.deque(maxlen=64))
    assert [workers.free_port(), workers.free_port()] == [first, second]
