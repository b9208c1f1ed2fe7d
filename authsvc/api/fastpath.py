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
from werkzeug.wsgi import get_current_url

from authsvc.api.user import me_document
from authsvc.auth import (
    FAST_PATH_FAILURE,
    FastPathFailure,
    access_credentials,
    bearer_token,
    client_of,
)
from authsvc.dpop import Proof
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
# The spellings taken (any other goes to Flask, which accepts them all): /me takes
# both schemes, /refresh only Bearer (its view's rule).
_SCHEMES = {ME_PATH: ("Bearer ", "DPoP "), REFRESH_PATH: ("Bearer ",)}

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# What a route does with a request: the answer's data; raises on refusal.
Handler = Callable[[dict[str, Any]], Any]


class FastPath:
    """WSGI middleware answering ``GET /me`` and ``GET /refresh`` itself (see above)."""

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

    def _me(self, environ: dict[str, Any]) -> Any:
        # As authenticate_request: a proof is looked at only with the DPoP scheme.
        scheme, token = access_credentials(environ["HTTP_AUTHORIZATION"])
        proof = self._proof(environ, access_token=token) if scheme == "dpop" else None
        return me_document(self.service.authenticate(token, scheme=scheme, proof=proof))

    def _refresh(self, environ: dict[str, Any]) -> Any:
        token = bearer_token(environ["HTTP_AUTHORIZATION"])
        client = client_of(environ.get("REMOTE_ADDR"), environ.get("HTTP_USER_AGENT"))
        proof = self._proof(environ, token_endpoint=True)
        return self.service.refresh(token, client, proof=proof).as_dict()

    def _proof(self, environ: dict[str, Any], **expected: Any) -> Proof | None:
        """The request's verified proof, as auth.request_proof checks it.

        WSGI joins repeated DPoP headers into one value, which is what Werkzeug's
        ``getlist`` hands that function too.
        """
        if "HTTP_DPOP" not in environ:
            return None
        g.dpop_request = True
        return self.service.proofs.check(
            [environ["HTTP_DPOP"]],
            method="GET",
            url=get_current_url(environ, strip_querystring=True),
            **expected,
        )

    def _route(self, environ: dict[str, Any]) -> tuple[str, Handler] | None:
        path = environ.get("PATH_INFO", "")
        route = self.routes.get(path)
        if (
            route is None
            or environ.get("REQUEST_METHOD") != "GET"
            or not environ.get("HTTP_AUTHORIZATION", "").startswith(_SCHEMES[path])
            # A cookie may carry the browser's refresh token: the view decides.
            or (path == REFRESH_PATH and "HTTP_COOKIE" in environ)
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
            except Exception:  # Flask runs the hook again and answers
                return self.flask_wsgi(environ, start_response)
            try:
                data = handler(environ)
            except Exception as error:  # answered by Flask's error handlers
                # What the request set on g (the DPoP scheme and request flags, which
                # shape the error's challenge and nonce) goes along with the error.
                environ[FAST_PATH_FAILURE] = FastPathFailure(error, dict(vars(g)))
                return self.flask_wsgi(environ, start_response)
            language = language_for(environ.get("HTTP_ACCEPT_LANGUAGE"), self.default_language)
            envelope = ok_envelope(data, language)
            # Exactly what Flask's JSON response holds outside debug mode.
            body = (self.app.json.dumps(envelope, separators=(",", ":")) + "\n").encode()
            headers = [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                (REQUEST_ID_HEADER, request_id),
                *NO_STORE_HEADERS,
            ]
            if g.get("dpop_request") and (nonce := self.service.proofs.nonce()):
                headers.append(("DPoP-Nonce", nonce))  # as factory.add_common_headers
        start_response("200 OK", headers)
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
