"""``/account/``: the self-service page (plain HTML + JS, no build step, no CDN)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"

# Only this origin's own script, style and API: no inline code (an injected user agent
# string cannot run), no CDN, no framing (clickjacking the revoke buttons), and no
# native form submission (a form posted before the script loads would put the
# password in a URL).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",  # the empty data: favicon
        "form-action 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)

bp = Blueprint("account", __name__, url_prefix="/account")


@bp.after_request
def page_security_headers(response: Response) -> Response:
    """Lock the page and its assets down (CSP, no sniffing, no referrer)."""
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/")
def page() -> Response:
    """The single page."""
    return send_from_directory(WEB_ROOT, "index.html")


@bp.get("/<path:asset>")
def asset(asset: str) -> Response:
    """Its scripts and styles."""
    return send_from_directory(WEB_ROOT, asset)
