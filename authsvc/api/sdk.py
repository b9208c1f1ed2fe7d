"""``/sdk/v1/``: the browser SDK (ES modules, no build step) and its TypeScript declarations.

The path carries the SDK's major version, which is the API's (``/api/v1``), not the
package version: front-ends import a URL that survives server upgrades.

How a fix reaches browsers: the stable entry point ``/sdk/v1/authsvc.js`` is a two-line
module, cached for :data:`ENTRY_MAX_AGE` seconds only, that re-exports the build
``/sdk/v1/<hash>/authsvc.js``. A build is a folder named by the SHA-256 of every file in
it (the module, the modules it imports, its declarations), each file cached for a year
as immutable. A new build therefore reaches every page loaded :data:`ENTRY_MAX_AGE`
seconds after the upgrade, while the bulk of the code is fetched once per build. A
build name that is not this server's own (an entry point cached before an upgrade,
another host of a rolling deploy) gets this server's files, short-cached, so an import
never breaks. Copies of the whole module that browsers cached as
immutable at ``/sdk/v1/authsvc.js`` before this scheme run until evicted
(docs/browser-sdk.md).

Several builds may run side by side in one browser (tabs loaded at different times),
so every build served under ``/sdk/v1/`` stays compatible with the v1 API and with
other v1 builds (lock and channel names, message format). An incompatible change ships
under ``/sdk/v2/``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from flask import Blueprint, Response, abort, request

SDK_ROOT = Path(__file__).resolve().parent.parent / "sdk"
MODULE = "authsvc.js"
TYPES = "authsvc.d.ts"
# RFC 9239: text/javascript. A module script with any other type is refused by browsers
# under nosniff; TypeScript has no registered type, Deno and editors take this one.
JAVASCRIPT = "text/javascript"
TYPESCRIPT = "application/typescript"
# The files of a build and their types; authsvc.js imports dpop.js from its own folder.
FILES = {MODULE: JAVASCRIPT, "dpop.js": JAVASCRIPT, TYPES: TYPESCRIPT}
# A content-hashed build never changes under its name.
CACHE_CONTROL = "public, max-age=31536000, immutable"
# The entry point and the declarations: how long a browser may keep running an old
# build after an upgrade (the JWKS is cached as long).
ENTRY_MAX_AGE = 300
ENTRY_CACHE_CONTROL = f"public, max-age={ENTRY_MAX_AGE}"
BUILD_NAME = re.compile(r"^[0-9a-f]{16}$")

_SOURCES = {name: (SDK_ROOT / name).read_bytes() for name in FILES}
_ETAGS = {name: hashlib.sha256(body).hexdigest()[:16] for name, body in _SOURCES.items()}


def _build_hash() -> str:
    digest = hashlib.sha256()
    for name in sorted(_SOURCES):
        digest.update(f"{name}\0{len(_SOURCES[name])}\0".encode())
        digest.update(_SOURCES[name])
    # 64 bits of SHA-256: names builds apart, it is not a security boundary.
    return digest.hexdigest()[:16]


BUILD = _build_hash()
ENTRY = (
    "// authsvc browser SDK v1, entry point: short-cached; the build it names is immutable.\n"
    '// @ts-self-types="./authsvc.d.ts"\n'
    f'export * from "./{BUILD}/{MODULE}";\n'
    f'export const SDK_BUILD = "{BUILD}";\n'
).encode()

bp = Blueprint("sdk", __name__, url_prefix="/sdk/v1")


def _serve(body: bytes, mimetype: str, cache_control: str, etag: str) -> Response:
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Type"] = f"{mimetype}; charset=utf-8"
    response.headers["Cache-Control"] = cache_control
    response.headers["X-Content-Type-Options"] = "nosniff"
    if mimetype == JAVASCRIPT:
        # Deno (and tools following it) fetch the declarations named here.
        response.headers["X-TypeScript-Types"] = f"./{TYPES}"
    response.set_etag(etag)
    # 304 on a matching If-None-Match: a revalidated entry point costs no body.
    response.make_conditional(request)
    return response


@bp.get(f"/{MODULE}")
def module() -> Response:
    """The SDK's entry point (an ES module re-exporting the current build; short-cached)."""
    return _serve(ENTRY, JAVASCRIPT, ENTRY_CACHE_CONTROL, BUILD)


@bp.get(f"/{TYPES}")
def types() -> Response:
    """The SDK's TypeScript declarations (short-cached, like the entry point)."""
    return _serve(_SOURCES[TYPES], TYPESCRIPT, ENTRY_CACHE_CONTROL, _ETAGS[TYPES])


@bp.get("/<build>/<name>")
def build_file(build: str, name: str) -> Response:
    """A file of one build of the SDK, in a folder named by its hash (immutable)."""
    if not BUILD_NAME.match(build) or name not in FILES:
        abort(404)
    # Another build's name: this server's file, short-cached, so that no import breaks
    # while an entry point of another build is still cached (an upgrade, a rolling
    # deploy), and nothing is kept a year under a name that is not its hash.
    cache_control = CACHE_CONTROL if build == BUILD else ENTRY_CACHE_CONTROL
    return _serve(_SOURCES[name], FILES[name], cache_control, _ETAGS[name])
