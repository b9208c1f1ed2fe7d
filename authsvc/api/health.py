"""Liveness and readiness probes, in the envelope like everything else."""

from __future__ import annotations

from flask import Blueprint, Response

from authsvc.auth import auth_service
from authsvc.errors import ok

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up (no Redis call: a Redis outage must not restart the pods)."""
    return ok({"status": "up"})


@bp.get("/readyz")
def readyz() -> Response:
    """Redis answers; otherwise the Redis error becomes 503 service_unavailable."""
    auth_service().redis_ready()
    return ok({"status": "ready"})
