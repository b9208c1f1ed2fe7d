"""The files of the ``/docs`` page: ours (the page, its init script) and Swagger UI's.

Swagger UI is the build shipped inside the flask-swagger-ui wheel (only its files are
used, not its blueprint, whose page has an inline script), served from this origin:
no CDN, and the page works offline.
"""

from __future__ import annotations

import mimetypes
from importlib.resources import files
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PAGE = "index.html"
SWAGGER_UI_ROOT = Path(str(files("flask_swagger_ui") / "dist"))

# What the page loads, by name under /docs/, and the folder each comes from.
ASSETS: dict[str, Path] = {
    "docs.js": ROOT,
    **dict.fromkeys(
        ("swagger-ui-bundle.js", "swagger-ui.css", "index.css", "favicon-32x32.png"),
        SWAGGER_UI_ROOT,
    ),
}


def asset_media_types() -> tuple[str, ...]:
    """The media types the assets are served as (derived from their names)."""
    return tuple(sorted({mimetypes.guess_type(name)[0] or "" for name in ASSETS}))
