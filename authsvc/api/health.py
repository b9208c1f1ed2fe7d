"""Liveness and readiness probes, in the envelope like everything else."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from authsvc.auth import auth_service
from authsvc.errors import ok

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up (no Redis call: a Redis outage must not restart the pods)."""
    return ok({"status": "up"})


@bp.get("/readyz")
def readyz() -> Response:
    """Redis answers (else 503 service_unavailable); ``keys`` says if the keys are stale.

    Stale keys (the key ring could not be reloaded, the last good keys still sign and
    verify) leave the instance ready, on purpose: every host reads the same ring (in
    Redis, or a shared key directory), so a broken record or manifest breaks all of
    them at once, and failing readiness would take the whole fleet out of the load
    balancer for a fault that does not stop it from serving. The ``keys`` field, the
    log line and ``authsvc_keys_stale`` tell the operator instead.
    """
    auth_service().redis_ready()
    failure = current_app.extensions["authsvc_keys"].reload_failure
    keys = (
        {"status": "ok"}
        if failure is None
        else {"status": "stale", "error": failure.reason, "since": failure.since}
    )
    return ok({"status": "ready", "keys": keys})
