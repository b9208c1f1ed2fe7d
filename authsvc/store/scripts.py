"""The Lua scripts' sources, read once at import from ``authsvc/lua/``.

One file per script (KEYS, ARGV and the answer at the top of each); ``lua/lib/`` holds
the functions several scripts share, prepended by :func:`_script`.
"""

from __future__ import annotations

import re
from importlib import resources

_LUA = resources.files("authsvc") / "lua"
_HEADER = re.compile(r"\A(?:--[^\n]*\n)+")


def _script(name: str, *, needs: tuple[str, ...] = ()) -> str:
    """The source of ``lua/<name>.lua``, after the ``lua/lib/<need>.lua`` it calls.

    Read once, at import. Each file's header comment is for its readers and is left
    out: a Cluster's login pipelines send the throttle scripts' whole text (EVAL).
    """
    parts = [_LUA / "lib" / f"{lib}.lua" for lib in needs] + [_LUA / f"{name}.lua"]
    return "".join(_HEADER.sub("", part.read_text(encoding="utf-8")) for part in parts)


_CHECK_ACCESS_LUA = _script("check_access", needs=("liveness", "proof"))
_ROTATE_LUA = _script("rotate", needs=("liveness", "proof"))
_PEEK_REFRESH_LUA = _script("peek_refresh", needs=("liveness",))
_END_ALL_LUA = _script("end_all", needs=("liveness",))
_UPDATE_USER_LUA = _script("update_user")
_REHASH_LUA = _script("rehash")
_CREATE_SESSION_LUA = _script("create_session", needs=("proof",))
_CREATE_CLIENT_LUA = _script("create_client")
_UPDATE_CLIENT_LUA = _script("update_client")
_DELETE_CLIENT_LUA = _script("delete_client")
_RESERVE_NAME_LUA = _script("reserve_name")
_CONFIRM_NAME_LUA = _script("confirm_name")
_RELEASE_NAME_LUA = _script("release_name")
