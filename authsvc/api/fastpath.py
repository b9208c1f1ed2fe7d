"""The fast path: the IoT API's two hot requests, answered in plain WSGI.

``GET /api/v1/user/me`` and ``GET /api/v1/user/refresh`` with ``Authorization: Bearer``
are what devices send most, and Flask's per-request machinery (request context, URL
matching, hooks, the response object) costs more CPU than the work itself (see
docs/performance.md). This middleware, under ProxyFix and over Flask, serves their
successes with the same pieces the views use: ``AuthService.authenticate`` or
``AuthService.refresh`` (one Redis round trip each), ``me_document`` or the pair, the
envelope and its language, the request id, the no-store headers, the metrics and the
request line. ``tests/test_fastpath.py`` proves both paths answer byte for byte the same.

Everything else goes to Flask untouched: other paths and methods, ``DPoP`` requests,
any other scheme spelling, a refresh with a cookie; and every request when CORS is on
(flask-cors adds its headers to every answer) or in debug mode (pretty-printed JSON).
A request that fails hands its exception to Flask in the environ
(``FAST_PATH_FAILURE``), so the one error path answers it: nothing is checked, or
spent, twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, g

from authsvc.api.user import me_document
from authsvc.auth import FAST_PATH_FAILURE, bearer_token, client_of
from authsvc.errors import language_for, ok_envelope
from authsvc.http import (
    NO_STORE_HEADERS,
    REQUEST_ID_ENVIRON,
    REQUEST_ID_HEADER,
    request_id_for,
)
from authsvc.logs import write_request_line
from authsvc.observability import metrics_of

ME_PATH = "/api/v1/user/me"
REFRESH_PATH = "/api/v1/user/refresh"
_BEARER = "Bearer "

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# What a route does with a request's Bearer token: the answer's data; raises on refusal.
Handler = Callable[[dict[str, Any], str], Any]


class FastPath:
    """WSGI middleware answering Bearer ``GET /me`` and ``GET /refresh`` itself."""

    def __init__(self, app: Flask, flask_wsgi: WSGIApp) -> None:
        self.app = app
        self.flask_wsgi = flask_wsgi
        self.service = app.extensions["authsvc"]
        self.keyring = app.extensions["authsvc_keys"]
        self.metrics = metrics_of(app)
        settings = self.service.settings
        self.default_language = settings.default_language
        self.cors = bool(settings.cors_origin_list)
        # path -> (Flask's endpoint name, for the metrics and the log line; the handler)
        self.routes: dict[str, tuple[str, Handler]] = {
            ME_PATH: ("user.me", self._me),
            REFRESH_PATH: ("user.refresh_from_header", self._refresh),
        }

    def _me(self, environ: dict[str, Any], token: str) -> Any:
        return me_document(self.service.authenticate(token))

    def _refresh(self, environ: dict[str, Any], token: str) -> Any:
        client = client_of(environ.get("REMOTE_ADDR"), environ.get("HTTP_USER_AGENT"))
        return self.service.refresh(token, client).as_dict()

    def _route(self, environ: dict[str, Any]) -> tuple[str, Handler] | None:
        route = self.routes.get(environ.get("PATH_INFO", ""))
        if (
            route is None
            or environ.get("REQUEST_METHOD") != "GET"
            or not environ.get("HTTP_AUTHORIZATION", "").startswith(_BEARER)
            or "HTTP_DPOP" in environ
            # A cookie may carry the browser's refresh token: the view decides.
            or (route[0] != "user.me" and "HTTP_COOKIE" in environ)
            or self.cors
            or self.app.debug
        ):
            return None
        return route

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Answer the request (see the module docstring for which ones)."""
        route = self._route(environ)
        if route is None:
            return self.flask_wsgi(environ, start_response)
        endpoint, handler = route
        started = time.perf_counter()
        request_id = request_id_for(environ.get("HTTP_X_REQUEST_ID"))
        environ[REQUEST_ID_ENVIRON] = request_id
        with self.app.app_context():
            g.request_id = request_id  # audit lines written meanwhile carry it
            try:
                # Flask's first before_request hook: pick up a rotated key ring.
                self.keyring.refresh()
            except Exception:
                return self.flask_wsgi(environ, start_response)
            try:
                data = handler(environ, bearer_token(environ["HTTP_AUTHORIZATION"]))
            except Exception as error:
                environ[FAST_PATH_FAILURE] = error
                return self.flask_wsgi(environ, start_response)
            language = language_for(environ.get("HTTP_ACCEPT_LANGUAGE"), self.default_language)
            envelope = ok_envelope(data, language)
            # Exactly what Flask's JSON response holds outside debug mode.
            body = (self.app.json.dumps(envelope, separators=(",", ":")) + "\n").encode()
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                (REQUEST_ID_HEADER, request_id),
                *NO_STORE_HEADERS,
            ],
        )
        seconds = time.perf_counter() - started
        self.metrics.observe_request(endpoint, 200, seconds)
        path = environ["PATH_INFO"]
        write_request_line(
            "GET", path, endpoint, 200, seconds, request_id, environ.get("REMOTE_ADDR")
        )
        return [body]


def install_fast_path(app: Flask) -> None:
    """Put :class:`FastPath` in front of the app's Flask WSGI callable."""
    app.wsgi_app = FastPath(app, app.wsgi_app)  # type: ignore[method-assign]
