"""``/account/``: the self-service page (plain HTML + JS, no build step, no CDN)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"

bp = Blueprint("account", __name__, url_prefix="/account")


@bp.get("/")
def page() -> Response:
    """The single page."""
    return send_from_directory(WEB_ROOT, "index.html")


@bp.get("/<path:asset>")
def asset(asset: str) -> Response:
    """Its scripts and styles."""
    return send_from_directory(WEB_ROOT, asset)
