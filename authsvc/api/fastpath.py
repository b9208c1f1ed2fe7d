"""The fast path: ``GET /api/v1/user/me`` with a Bearer token, answered in plain WSGI.

The protected check is what devices send most, and Flask's per-request machinery
(request context, URL matching, hooks, the response object) costs more CPU than the
check itself (see docs/performance.md). This middleware, under ProxyFix and over
Flask, serves that request's success with the same pieces the view uses:
``AuthService.authenticate`` (one Redis round trip), ``me_document``, the envelope
and language, the request id, the no-store headers, the metrics and the request line.
``tests/test_fastpath.py`` proves both paths answer byte for byte the same.

Everything else goes to Flask untouched: other paths and methods, ``DPoP`` requests,
any other scheme spelling; and every request when CORS is on (flask-cors adds its
headers to every answer) or in debug mode (pretty-printed JSON). A check that fails
hands its exception to Flask in the environ (``FAST_PATH_FAILURE``), so the one error
path answers it without a second check.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, g

from authsvc.api.user import me_document
from authsvc.auth import FAST_PATH_FAILURE, bearer_token
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
ME_ENDPOINT = "user.me"
_BEARER = "Bearer "

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class FastPath:
    """WSGI middleware answering a valid Bearer ``GET /me`` itself; the rest to Flask."""

    def __init__(self, app: Flask, flask_wsgi: WSGIApp) -> None:
        self.app = app
        self.flask_wsgi = flask_wsgi
        self.service = app.extensions["authsvc"]
        self.keyring = app.extensions["authsvc_keys"]
        self.metrics = metrics_of(app)
        settings = self.service.settings
        self.default_language = settings.default_language
        self.cors = bool(settings.cors_origin_list)

    def _takes(self, environ: dict[str, Any]) -> bool:
        return (
            environ.get("PATH_INFO") == ME_PATH
            and environ.get("REQUEST_METHOD") == "GET"
            and environ.get("HTTP_AUTHORIZATION", "").startswith(_BEARER)
            and "HTTP_DPOP" not in environ
            and not self.cors
            and not self.app.debug
        )

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Answer the request (see the module docstring for which ones)."""
        if not self._takes(environ):
            return self.flask_wsgi(environ, start_response)
        started = time.perf_counter()
        request_id = request_id_for(environ.get("HTTP_X_REQUEST_ID"))
        environ[REQUEST_ID_ENVIRON] = request_id
        with self.app.app_context():
            g.request_id = request_id  # audit lines written during the check carry it
            try:
                # Flask's first before_request hook: pick up a rotated key ring.
                self.keyring.refresh()
            except Exception:
                return self.flask_wsgi(environ, start_response)
            try:
                token = bearer_token(environ["HTTP_AUTHORIZATION"])
                principal = self.service.authenticate(token)
            except Exception as error:
                environ[FAST_PATH_FAILURE] = error
                return self.flask_wsgi(environ, start_response)
            language = language_for(environ.get("HTTP_ACCEPT_LANGUAGE"), self.default_language)
            envelope = ok_envelope(me_document(principal), language)
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
        self.metrics.observe_request(ME_ENDPOINT, 200, seconds)
        write_request_line(
            "GET", ME_PATH, ME_ENDPOINT, 200, seconds, request_id, environ.get("REMOTE_ADDR")
        )
        return [body]


def install_fast_path(app: Flask) -> None:
    """Put :class:`FastPath` in front of the app's Flask WSGI callable."""
    app.wsgi_app = FastPath(app, app.wsgi_app)  # type: ignore[method-assign]
