"""Metrics and request logs wired into the app: ``/metrics``, timing, the event counters."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, current_app, g, has_app_context, request

from authsvc import logs
from authsvc.events import auth_event
from authsvc.metrics import Metrics

EXTENSION = "authsvc.metrics"
# Requests that matched no route (404, 405) share one label, whatever path was asked.
UNMATCHED_ENDPOINT = "unmatched"


def init_app(app: Flask) -> None:
    """Attach metrics and request logging to ``app`` (logging itself stays unconfigured)."""
    app.extensions[EXTENSION] = Metrics()
    app.before_request(_start_timer)
    app.after_request(_observe)
    app.add_url_rule("/metrics", "metrics", _metrics_view, methods=["GET"])
    logs.current_request_id = _current_request_id


def metrics_of(app: Flask) -> Metrics:
    """The app's :class:`Metrics`."""
    return app.extensions[EXTENSION]


@auth_event.connect
def _count_event(event: str, **fields: Any) -> None:
    # The signal is global; the app that handles the request owns the counters.
    if has_app_context() and EXTENSION in current_app.extensions:
        metrics_of(current_app).count_event(event, fields)


def _current_request_id() -> str | None:
    # g lives in the app context: the fast path sets it without a request context.
    if has_app_context():
        return g.get("request_id")
    return None


def log_request(endpoint: str, status: int, seconds: float) -> None:
    """Write the request line of the request Flask is answering (nothing below INFO)."""
    if logs.request_log.isEnabledFor(logging.INFO):
        # request.path is the path alone: a token pasted into a query string stays out.
        logs.write_request_line(
            request.method,
            request.path,
            endpoint,
            status,
            seconds,
            g.get("request_id"),
            request.remote_addr,
        )


def _start_timer() -> None:
    g.request_started = time.perf_counter()


def _observe(response: Response) -> Response:
    seconds = time.perf_counter() - g.get("request_started", time.perf_counter())
    endpoint = request.endpoint or UNMATCHED_ENDPOINT
    metrics_of(current_app).observe_request(endpoint, response.status_code, seconds)
    log_request(endpoint, response.status_code, seconds)
    return response


def _metrics_view() -> Response:
    # Plain Prometheus text, not the {code, msg, data} envelope: this endpoint is for
    # scrapers, which parse only the exposition format; the envelope is for devices.
    body, content_type = metrics_of(current_app).exposition()
    return Response(body, content_type=content_type)
