"""``/sdk/v1/``: the browser SDK, one ES module and its TypeScript declarations.

The path carries the SDK's major version, which is the API's (``/api/v1``), not the
package version: front-ends import a URL that survives server upgrades. Each file is
cached for a year as immutable, so a browser may keep running an older v1 build next to
a newer one in another tab; every build served under ``/sdk/v1/`` therefore stays
compatible with the v1 API and with other v1 builds (lock and channel names, message
format). An incompatible change ships under ``/sdk/v2/``.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

SDK_ROOT = Path(__file__).resolve().parent.parent / "sdk"
MODULE = "authsvc.js"
TYPES = "authsvc.d.ts"
# RFC 9239: text/javascript. A module script with any other type is refused by browsers
# under nosniff; TypeScript has no registered type, Deno and editors take this one.
JAVASCRIPT = "text/javascript"
TYPESCRIPT = "application/typescript"
CACHE_CONTROL = "public, max-age=31536000, immutable"

bp = Blueprint("sdk", __name__, url_prefix="/sdk/v1")


def _serve(name: str, mimetype: str) -> Response:
    response = send_from_directory(SDK_ROOT, name, mimetype=mimetype)
    response.headers["Content-Type"] = f"{mimetype}; charset=utf-8"
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get(f"/{MODULE}")
def module() -> Response:
    """The browser SDK (an ES module; long-cached, immutable)."""
    response = _serve(MODULE, JAVASCRIPT)
    # Deno (and tools following it) fetch the declarations named here.
    response.headers["X-TypeScript-Types"] = f"./{TYPES}"
    return response


@bp.get(f"/{TYPES}")
def types() -> Response:
    """The SDK's TypeScript declarations."""
    return _serve(TYPES, TYPESCRIPT)
