"""Metrics and structured logs (filled in by the observability work)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Attach metrics and request logging to ``app``."""
