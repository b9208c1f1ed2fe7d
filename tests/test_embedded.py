"""Quick-start mode's instance folder: private whatever the umask."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from authsvc.embedded import prepare_local_mode


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """umask 000 for the test (and what it starts), restored after."""
    previous = os.umask(0o000)
    try:
        yield
    finally:
        os.umask(previous)


def exposed(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` (itself included) with a group or other bit set."""
    return {
        str(path.relative_to(folder.parent)): oct(stat.S_IMODE(path.lstat().st_mode))
        for path in (folder, *folder.rglob("*"))
        if stat.S_IMODE(path.lstat().st_mode) & 0o077
    }


@pytest.mark.parametrize("algorithm", ["HS256", "ES256"])
def test_quick_start_instance_is_private_whatever_the_umask(
    tmp_path, monkeypatch, permissive_umask, algorithm
):
    """With umask 000 and an instance folder an older version left 0755 with a 0644 file,
    a quick-start start leaves the folder 0700 and every file in it, the generated secret
    or keys, Redis's append-only folder and files, its log and socket, without a group
    or other bit."""
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)
    (instance / "appendonlydir").mkdir(mode=0o755)
    (instance / "old.aof").write_text("*1\r\n$4\r\nPING\r\n")
    (instance / "old.aof").chmod(0o644)
    monkeypatch.setenv("AUTHSVC_INSTANCE_PATH", str(instance))
    monkeypatch.setenv("AUTHSVC_JWT_ALGORITHM", algorithm)
    # prepare_local_mode exports these: set empty here so that they are removed after.
    for name in ("AUTHSVC_REDIS_URL", "AUTHSVC_JWT_SECRET", "AUTHSVC_JWT_KEY_DIR"):
        monkeypatch.setenv(name, "")

    server = prepare_local_mode()
    assert server is not None
    try:
        with redis.Redis.from_url(os.environ["AUTHSVC_REDIS_URL"]) as client:
            client.set("authsvc:probe", "a session, a hash, an IP")
            client.bgrewriteaof()  # a new base file and a new incremental file
            while client.info("persistence")["aof_rewrite_in_progress"]:
                time.sleep(0.05)
            client.set("authsvc:probe", "again")
        written = {path.name for path in instance.rglob("*")}
        exposed_while_running = exposed(instance)
    finally:
        server.stop()

    assert stat.S_IMODE(instance.stat().st_mode) == 0o700
    assert {"redis.sock", "redis.log", "appendonlydir"} <= written
    assert any(name.endswith(".aof") for name in written)
    assert ("jwt_secret" in written) == (algorithm == "HS256")
    assert ("keyring.json" in written) == (algorithm == "ES256")
    assert exposed_while_running == {}
    assert exposed(instance) == {}
