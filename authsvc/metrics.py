"""Prometheus metrics: counters fed by the domain events, request latency per endpoint.

Under gunicorn every worker is a process of its own, so the counters live in
prometheus-client's multiprocess mode: each process writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` sums the files of all of them. That
library picks its storage when it is *imported*, so the variable must be set before
the first import in the process that forks the workers: this module therefore imports
``prometheus_client`` only inside functions, and ``authsvc serve`` calls
:func:`prepare_multiprocess_dir` before anything else. Without the variable (unit
tests, one process) each app counts in a registry of its own.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

LOGIN_OUTCOMES = ("succeeded", "failed", "throttled", "disabled")
REFRESH_OUTCOMES = ("rotated", "grace", "reused", "expired", "revoked", "invalid")
_REFRESH_OUTCOME_BY_EVENT = {f"refresh_{outcome}": outcome for outcome in REFRESH_OUTCOMES}
# Events that end sessions or tokens, by kind; session_revoked says its kind in `reason`.
_REVOCATION_KIND_BY_EVENT = {
    "logout_all": "logout_all",
    "password_changed": "password_change",
    "refresh_reused": "refresh_reuse",
    "token_revoked": "token_revoke",
}
_REVOCATION_KIND_BY_REASON = {"user_request": "session"}
REVOCATION_KINDS = ("logout", "session", *_REVOCATION_KIND_BY_EVENT.values())
# Administrative actions (events with an `actor`), by action; a logout_all says which
# in its `reason`.
_ADMIN_ACTION_BY_EVENT = {
    event: event
    for event in (
        "user_created",
        "account_enabled",
        "client_created",
        "client_updated",
        "client_deleted",
        "client_secret_issued",
        "client_secret_removed",
    )
}
_ADMIN_ACTION_BY_REASON = {
    "account_disabled": "account_disabled",
    "password_reset": "password_reset",
    "admin_request": "sessions_ended",
    "account_deleted": "account_deleted",
}
ADMIN_ACTIONS = (*_ADMIN_ACTION_BY_EVENT.values(), *_ADMIN_ACTION_BY_REASON.values())

# Temporary folders made by default_multiprocess_dir, removed when gunicorn exits.
_temporary_dirs: list[Path] = []


def prepare_multiprocess_dir(path: Path) -> None:
    """Make ``path`` the (emptied) multiprocess directory of this process and its children.

    Call it before anything imports ``prometheus_client``: a RuntimeError says when
    that is too late, since the library would then keep its values in this process's
    memory and every worker would report only its own counts.
    """
    if "prometheus_client" in sys.modules:
        raise RuntimeError(
            f"prometheus_client was imported before {MULTIPROC_ENV} was set; "
            "/metrics would count each gunicorn worker separately"
        )
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Files of a previous run would be summed into this one (and their PIDs reused).
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(path)


def default_multiprocess_dir(instance: Path | None = None) -> Path:
    """Where the workers' metric files go.

    ``PROMETHEUS_MULTIPROC_DIR`` when set, else ``<instance>/prometheus`` (quick-start
    mode), else a new private temporary folder.
    """
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        return Path(configured)
    if instance is not None:
        return instance / "prometheus"
    # A fresh folder per server: two servers on one host must not sum each other.
    path = Path(tempfile.mkdtemp(prefix="authsvc-prometheus-"))
    _temporary_dirs.append(path)
    return path


def remove_temporary_dirs() -> None:
    """Delete the temporary folders :func:`default_multiprocess_dir` made in this process."""
    while _temporary_dirs:
        shutil.rmtree(_temporary_dirs.pop(), ignore_errors=True)


def multiprocess_enabled() -> bool:
    """Whether this process counts in the shared multiprocess directory."""
    return bool(os.environ.get(MULTIPROC_ENV))


def mark_process_dead(pid: int) -> None:
    """Let the multiprocess collector forget a dead worker's live gauges (gunicorn child_exit)."""
    if multiprocess_enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


DEVICE_FLOW_EVENTS = frozenset(
    {
        "device_code_issued",
        "device_code_failed",
        "device_approved",
        "device_denied",
        "device_token_issued",
    }
)


class Metrics:
    """The service's metric objects; one per app."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.logins = Counter(
            "authsvc_logins_total",
            "Login attempts by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.refreshes = Counter(
            "authsvc_refreshes_total",
            "Refresh-token presentations by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.revocations = Counter(
            "authsvc_revocations_total",
            "Sessions or tokens ended, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.admin_actions = Counter(
            "authsvc_admin_actions_total",
            "Administrative actions on accounts and clients, by action and by actor (cli or api).",
            ["action", "actor"],
            registry=self.registry,
        )
        self.throttled = Counter(
            "authsvc_throttled_attempts_total",
            "Credential checks refused by the failure throttles, by flow.",
            ["flow"],
            registry=self.registry,
        )
        self.dpop_refused = Counter(
            "authsvc_dpop_refused_total",
            "DPoP proofs refused (or missing where a bound token needs one), by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.device_flow = Counter(
            "authsvc_device_flow_total",
            "Device authorization grant (RFC 8628) steps, by event.",
            ["event"],
            registry=self.registry,
        )
        self.redis_errors = Counter(
            "authsvc_redis_errors_total",
            "Requests answered 503 because Redis failed, by error class.",
            ["kind"],
            registry=self.registry,
        )
        self.key_reload_failures = Counter(
            "authsvc_key_reload_failures_total",
            "Failed reloads of the key ring (about one a second per worker at most).",
            ["reason"],
            registry=self.registry,
        )
        # 1 while a worker signs and verifies with its last good keys because the key
        # ring cannot be read; "livemax": any live worker stuck shows, dead ones not.
        self.keys_stale = Gauge(
            "authsvc_keys_stale",
            "1 while the key ring cannot be reloaded and the last good keys serve.",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        # Labelled by the Flask endpoint name, never the raw path or the method: both
        # come from the client, and every distinct value would be a new time series.
        self.requests = Counter(
            "authsvc_http_requests_total",
            "HTTP requests by endpoint and status.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "authsvc_http_request_duration_seconds",
            "Time to build the response, by endpoint.",
            ["endpoint"],
            registry=self.registry,
        )
        # (endpoint, status) -> (request counter, latency histogram) children: labels()
        # validates and locks on every call, and the set of endpoints and statuses is
        # small and fixed, so each pair is looked up once per process.
        self._request_series: dict[tuple[str, int], tuple[Any, Any]] = {}
        # Known outcomes start at 0, so rate() and alerts see a series from the start.
        for counter, values in (
            (self.logins, LOGIN_OUTCOMES),
            (self.refreshes, REFRESH_OUTCOMES),
            (self.revocations, REVOCATION_KINDS),
        ):
            for value in values:
                counter.labels(value)

    def count_event(self, event: str, fields: Mapping[str, Any]) -> None:
        """Move the counters an :data:`authsvc.events.auth_event` stands for."""
        if event == "login_succeeded":
            self.logins.labels("succeeded").inc()
        elif event == "login_failed":
            disabled = fields.get("reason") == "account_disabled"
            self.logins.labels("disabled" if disabled else "failed").inc()
        elif event == "login_throttled":
            flow = fields.get("flow") or "login"
            self.throttled.labels(flow).inc()
            if flow == "login":
                self.logins.labels("throttled").inc()
        elif event in DEVICE_FLOW_EVENTS:
            self.device_flow.labels(event.removeprefix("device_")).inc()
        elif event == "dpop_refused":
            self.dpop_refused.labels(fields.get("reason") or "unknown").inc()
        elif event == "redis_error":
            self.redis_errors.labels(fields.get("kind") or "unknown").inc()
        elif event == "key_reload_failed":
            self.key_reload_failures.labels(fields.get("reason") or "unknown").inc()
            self.keys_stale.set(1)
        elif event == "key_reload_recovered":
            self.keys_stale.set(0)
        if event in _REFRESH_OUTCOME_BY_EVENT:
            self.refreshes.labels(_REFRESH_OUTCOME_BY_EVENT[event]).inc()
        kind = _revocation_kind(event, fields)
        if kind is not None:
            self.revocations.labels(kind).inc()
        action = _admin_action(event, fields)
        if action is not None:
            self.admin_actions.labels(action, fields["actor"]).inc()

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration."""
        series = self._request_series.get((endpoint, status))
        if series is None:
            series = (self.requests.labels(endpoint, str(status)), self.latency.labels(endpoint))
            self._request_series[endpoint, status] = series
        series[0].inc()
        series[1].observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of every process's metrics, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self._collecting_registry()), CONTENT_TYPE_LATEST

    def _collecting_registry(self) -> CollectorRegistry:
        if not multiprocess_enabled():
            return self.registry
        from prometheus_client import CollectorRegistry

        # A fresh registry per scrape, as prometheus-client documents: the collector
        # reads every worker's files, dead workers' counts included.
        registry = CollectorRegistry()
        registry.register(WorkerFilesCollector(os.environ[MULTIPROC_ENV]))
        return registry


class WorkerFilesCollector:
    """prometheus-client's ``MultiProcessCollector``, skipping files not sized yet.

    A process creates its metric file empty and sizes it a moment later (``MmapedDict``:
    open, then truncate to 64 KiB of zeros, which reads as nothing recorded). The
    library's reader fails on a 0-byte file (``struct.error``, no header), which failed
    the whole scrape with a 500: a scrape landing in that moment (a worker booting, or
    serving its first request; likelier on busy cores) met one, and a worker killed in
    that moment left one for good. prometheus/client_python issue 1199, unfixed in
    0.26.0. An empty file has nothing to count, so it is skipped; files only grow, so
    one sized when looked at still reads whole.
    """

    def __init__(self, path: str) -> None:
        self._path = path

    def collect(self) -> Any:
        """Every worker's metrics, summed (the library's merge, as its collector does)."""
        from prometheus_client.multiprocess import MultiProcessCollector

        files = [name for name in glob.glob(os.path.join(self._path, "*.db")) if _has_header(name)]
        return MultiProcessCollector.merge(files, accumulate=True)


# MmapedDict's header: the bytes used (4), then 4 of padding.
_HEADER_BYTES = 8


def _has_header(name: str) -> bool:
    try:
        return os.stat(name).st_size >= _HEADER_BYTES
    except FileNotFoundError:  # a dead worker's live gauge, removed since the glob
        return False


def _admin_action(event: str, fields: Mapping[str, Any]) -> str | None:
    if not fields.get("actor"):
        return None
    if event == "logout_all":
        return _ADMIN_ACTION_BY_REASON.get(str(fields.get("reason")))
    return _ADMIN_ACTION_BY_EVENT.get(event)


def _revocation_kind(event: str, fields: Mapping[str, Any]) -> str | None:
    if event == "session_revoked":
        reason = str(fields.get("reason") or "session")
        return _REVOCATION_KIND_BY_REASON.get(reason, reason)
    return _REVOCATION_KIND_BY_EVENT.get(event)
