"""The Lua scripts as files (authsvc/lua/): each one used, documented and loadable.

The behaviour of each script is tested through the store (test_store.py); these tests
guard the files themselves: an orphan file, a header gone missing, or a script that a
real Redis refuses to compile.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from importlib.resources.abc import Traversable

import redis

from authsvc.store import _HEADER, Store
from authsvc.store.base import Script
from authsvc.store.client_secrets import ClientSecretStore
from authsvc.store.devices import DeviceCodes
from authsvc.store.keyring import KeyRecords
from authsvc.store.login import LoginStore

LUA = resources.files("authsvc") / "lua"


def lua_files() -> dict[str, Traversable]:
    """Every .lua file of the package by its path under lua/ (what the wheel ships)."""
    files = {}
    for folder, prefix in ((LUA, ""), (LUA / "lib", "lib/")):
        for entry in folder.iterdir():
            if entry.name.endswith(".lua"):
                files[prefix + entry.name] = entry
    return files


def registered_sources(client: redis.Redis) -> set[str]:
    """The text of every script the store and the key ring register."""
    store = Store(client)
    owners = (
        store.sessions,
        store.users,
        store.clients,
        KeyRecords(client),
        LoginStore(store),
        ClientSecretStore(store),
        DeviceCodes(client),
    )
    return {s.script for owner in owners for s in vars(owner).values() if isinstance(s, Script)}


def test_the_package_holds_the_scripts_and_their_shared_functions() -> None:
    files = lua_files()
    assert {"rotate.lua", "check_access.lua", "lib/liveness.lua", "lib/reserve.lua"} <= set(files)
    assert len(files) == 29


def test_every_lua_file_is_in_a_registered_script(real_redis: redis.Redis) -> None:
    sources = registered_sources(real_redis)
    for name, entry in lua_files().items():
        code = _HEADER.sub("", entry.read_text(encoding="utf-8"))
        assert code.strip(), name
        assert any(code in source for source in sources), f"{name} is loaded by no script"


def test_every_script_file_starts_with_its_keys_and_argv() -> None:
    for name, entry in lua_files().items():
        header = _HEADER.match(entry.read_text(encoding="utf-8"))
        assert header is not None, f"{name} has no header comment"
        if not name.startswith("lib/"):
            assert "KEYS:" in header.group(), name


def test_no_header_comment_is_sent_to_redis(real_redis: redis.Redis) -> None:
    # A Cluster's login sends its scripts whole (EVAL in a pipeline).
    for source in registered_sources(real_redis):
        assert not source.startswith("--"), source[:80]


def test_every_registered_script_compiles_on_a_real_redis(real_redis: redis.Redis) -> None:
    sources = registered_sources(real_redis)
    assert len(sources) == 26
    for source in sources:
        # SCRIPT LOAD compiles the script; a syntax error is a ResponseError here.
        sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 (the id Redis uses)
        assert real_redis.script_load(source) == sha
        assert real_redis.script_exists(sha) == [True]
