"""The OpenAPI 3.1 document, generated from the marshmallow schemas that validate requests.

Nothing here is hand-written YAML that could drift from the code:

* request bodies are the very schemas the views load (:mod:`authsvc.schemas`), answers
  are the strict response schemas next to them, wrapped in the ``{code, msg, data}``
  envelope;
* :data:`~authsvc.openapi_docs.DOCS` (in :mod:`authsvc.openapi_docs`) says, per Flask
  endpoint, which schemas, which credentials and which error slugs apply;
  :func:`build_spec` walks ``app.url_map`` and raises :class:`UndocumentedRouteError`
  for a route without an entry, so a new endpoint cannot go undocumented;
* summaries and descriptions are the views' docstrings, turned into CommonMark
  (:func:`markdown`); error descriptions and examples come from the message catalogue;
* every JSON answer and request body has an example (:mod:`authsvc.openapi_examples`),
  the login one being the quick start's demo account, so "Try it out" on ``/docs``
  works as it stands.

This module is the builder: it turns those tables into the document.

Statuses are documented as served by default (``AUTHSVC_ENVELOPE_HTTP_STATUS=mirror``).
"""

from __future__ import annotations

import inspect
import re
from collections import defaultdict
from importlib.metadata import version
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from marshmallow import Schema
from werkzeug.routing import Rule

from authsvc.cookies import CSRF_COOKIE, CSRF_HEADER, REFRESH_COOKIE
from authsvc.messages import message
from authsvc.openapi_docs import ALWAYS_ERRORS, DOCS, JSON_BODY_ERRORS
from authsvc.openapi_dpop import add_dpop_components, dpop_errors, nonce_header, status_of
from authsvc.openapi_examples import DATA_EXAMPLES, REQUEST_EXAMPLES
from authsvc.openapi_model import JSON, Doc
from authsvc.openapi_oauth import oauth_error_responses
from authsvc.response_schemas import (
    ErrorEnvelopeSchema,
    envelope,
)

OPENAPI_VERSION = "3.1.0"
# Werkzeug adds these to every rule; they are not operations of the API.
IMPLICIT_METHODS = frozenset({"HEAD", "OPTIONS"})
UNDOCUMENTED_ENDPOINTS = frozenset({"static"})


class UndocumentedRouteError(LookupError):
    """A route of the app has no entry in :data:`DOCS`."""


_PATH_ARGUMENT = re.compile(r"<(?:(?P<converter>[^:<>]+):)?(?P<name>[^<>]+)>")


def build_spec(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of every route of ``app``; raises for a route not in DOCS."""
    spec = APISpec(
        title="authsvc",
        version=version("authsvc"),
        openapi_version=OPENAPI_VERSION,
        plugins=[MarshmallowPlugin()],
        info={
            "description": (
                "JWT access tokens and rotating refresh tokens over a Redis revocation "
                "store. Every JSON answer is the `{code, msg, data}` envelope; errors carry "
                "`data.error`, a stable slug to branch on. HTTP statuses are documented "
                "as served by default: with `AUTHSVC_ENVELOPE_HTTP_STATUS=always200` every "
                "envelope comes with HTTP 200 and only `code` tells the status.\n\n"
                "**Trying it out on `/docs`**: run `POST /api/v1/user/login` (its example is "
                "the quick start's demo account). A successful login authorizes the page "
                "with its `access_token`, so the protected operations (lock icon) work next; "
                "the **Authorize** button takes any other Bearer token, e.g. a "
                "`refresh_token` for `GET /api/v1/user/refresh`. Tokens stay in the page's "
                "memory only."
            )
        },
    )
    _add_components(spec)
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        if rule.endpoint in UNDOCUMENTED_ENDPOINTS:
            continue
        doc = DOCS.get(rule.endpoint)
        if doc is None:
            raise UndocumentedRouteError(
                f"route {rule.rule} (endpoint {rule.endpoint!r}) has no entry in "
                "authsvc.openapi_docs.DOCS: document it there"
            )
        methods = sorted((rule.methods or set()) - IMPLICIT_METHODS)
        spec.path(
            path=_PATH_ARGUMENT.sub(r"{\g<name>}", rule.rule),
            operations={
                method.lower(): _operation(app, rule, doc, method, len(methods) > 1)
                for method in methods
            },
        )
    return spec.to_dict()


def _add_components(spec: APISpec) -> None:
    spec.components.security_scheme(
        "bearerAuth",
        {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": (
                "An access token (`data.access_token` of a login); the refresh "
                "operations take a refresh token (`data.refresh_token`)."
            ),
        },
    )
    spec.components.security_scheme(
        "basicAuth",
        {
            "type": "http",
            "scheme": "basic",
            "description": "Client credentials of a resource server (introspection, revocation).",
        },
    )
    spec.components.security_scheme(
        "refreshCookie",
        {
            "type": "apiKey",
            "in": "cookie",
            "name": REFRESH_COOKIE,
            "description": (
                "Cookie transport: the HttpOnly refresh cookie, set by a login with "
                '`"transport": "cookie"` and sent by the browser itself (nothing to enter '
                f"here), with the `{CSRF_HEADER}` header."
            ),
        },
    )
    spec.components.parameter(
        "RequestId",
        "header",
        {
            "name": "X-Request-ID",
            "description": "Echoed back and logged; when absent or malformed, one is generated.",
            "schema": {"type": "string"},
        },
    )
    spec.components.parameter(
        "Csrf",
        "header",
        {
            "name": CSRF_HEADER,
            "description": (
                f"Cookie transport: the value of the readable `{CSRF_COOKIE}` cookie "
                "(required with the cookie, ignored otherwise)."
            ),
            "schema": {"type": "string"},
        },
    )
    add_dpop_components(spec)
    spec.components.header(
        "X-Request-ID",
        {"description": "The request id.", "required": True, "schema": {"type": "string"}},
    )
    spec.components.header(
        "WWW-Authenticate",
        {
            "description": "RFC 6750 (Bearer) or RFC 9449 (DPoP) challenge.",
            "required": True,
            "schema": {"type": "string"},
        },
    )
    spec.components.header(
        "Retry-After",
        {
            "description": "Seconds to wait before trying again.",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        },
    )
    spec.components.header(
        "Set-Cookie",
        {
            "description": "Cookie transport: sets (login, refresh) or clears (logout) cookies.",
            "schema": {"type": "string"},
        },
    )


_RST_LITERAL = re.compile(r"``(.+?)``")
_RST_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_CODE_SPAN = re.compile(r"`([^`]+)`")


def markdown(text: str) -> str:
    """Docstring markup as CommonMark: reST ``literal`` and :role:`target` become `code`."""
    return _RST_ROLE.sub(r"`\1`", _RST_LITERAL.sub(r"`\1`", text))


def plain(text: str) -> str:
    """Markdown as plain text (an operation's summary is not rendered): no code marks."""
    return _CODE_SPAN.sub(r"\1", markdown(text))


def _operation(app: Flask, rule: Rule, doc: Doc, method: str, shared: bool) -> dict[str, Any]:
    docstring = inspect.getdoc(app.view_functions[rule.endpoint]) or doc.summary
    path_parameters = [
        {
            "name": match["name"],
            "in": "path",
            "required": True,
            "schema": {"type": "integer"} if match["converter"] == "int" else {"type": "string"},
        }
        for match in _PATH_ARGUMENT.finditer(rule.rule)
    ]
    dpop = doc.dpop or doc.credentials.dpop
    errors = {*ALWAYS_ERRORS, *doc.errors, *doc.credentials.errors, *dpop_errors(dpop)}
    if doc.request is not None:
        errors.update(JSON_BODY_ERRORS)
    if path_parameters:
        errors.add("not_found")
    operation: dict[str, Any] = {
        "operationId": f"{rule.endpoint}.{method.lower()}" if shared else rule.endpoint,
        "tags": [rule.endpoint.partition(".")[0]],
        "summary": plain(docstring.partition("\n")[0]),
        # The whole docstring (the summary renders code as code here), then how to call.
        "description": "\n\n".join(filter(None, (markdown(docstring), doc.credentials.how))),
        "parameters": [
            *path_parameters,
            *([{"in": "query", "schema": doc.query}] if doc.query else []),
            "RequestId",
            *doc.credentials.parameters,
            *(["DPoP"] if dpop else []),
        ],
        "responses": {
            "200": _success_response(doc),
            **(
                oauth_error_responses(errors, doc.oauth_errors)
                if doc.oauth
                else _error_responses(errors, doc.request, dpop)
            ),
        },
    }
    if doc.credentials.security:
        operation["security"] = list(doc.credentials.security)
    if doc.request is not None:
        operation["requestBody"] = {
            "required": doc.body_required,
            "content": {
                media_type: {"schema": doc.request, "example": REQUEST_EXAMPLES[doc.request]}
                for media_type in doc.request_media_types
            },
        }
    return operation


def _success_response(doc: Doc) -> dict[str, Any]:
    schema: Any
    example: Any = doc.example
    if example is None and doc.response is not None:
        example = DATA_EXAMPLES[doc.response]
    if doc.enveloped:
        schema = envelope(doc.response)
        example = {"code": 200, "msg": message("ok"), "data": example}
    elif doc.response is not None:
        schema = doc.response
    else:
        schema = {"type": "object"} if doc.media_types == (JSON,) else {"type": "string"}
    headers = {"X-Request-ID": "X-Request-ID"}
    if doc.sets_cookies:
        headers["Set-Cookie"] = "Set-Cookie"
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {
        "description": "Success." if doc.enveloped else "Success (not in the envelope).",
        "headers": headers,
        "content": dict.fromkeys(doc.media_types, media),
    }


def _error_example(slug: str, request: type[Schema] | None, status: int) -> dict[str, Any]:
    data: dict[str, Any] = {"error": slug}
    if slug == "validation_failed" and request is not None:
        name, field = next(iter(request().fields.items()))
        data["fields"] = {field.data_key or name: ["Missing data for required field."]}
    return {
        "summary": slug,
        "value": {"code": status, "msg": message(slug), "data": data},
    }


def _error_responses(
    slugs: set[str], request: type[Schema] | None, dpop: str = ""
) -> dict[str, Any]:
    """One response per status, its ``data.error`` narrowed to the slugs documented.

    Each slug has an example answer; with ``validation_failed`` it names a field of
    ``request`` (the operation's body schema).
    """
    by_status: dict[int, list[str]] = defaultdict(list)
    for slug in sorted(slugs):
        by_status[status_of(slug, dpop)].append(slug)
    responses = {}
    for status, status_slugs in sorted(by_status.items()):
        headers = {"X-Request-ID": "X-Request-ID"}
        if status == 401:
            headers["WWW-Authenticate"] = "WWW-Authenticate"
        if status in (429, 503):
            headers["Retry-After"] = "Retry-After"
        headers.update(nonce_header(status_slugs))
        narrowed = {
            "type": "object",
            "properties": {
                "code": {"const": status},
                "data": {"type": "object", "properties": {"error": {"enum": status_slugs}}},
            },
        }
        responses[str(status)] = {
            "description": " ".join(f"`{slug}`: {message(slug)}" for slug in status_slugs),
            "headers": headers,
            "content": {
                JSON: {
                    "schema": {"allOf": [ErrorEnvelopeSchema, narrowed]},
                    "examples": {
                        slug: _error_example(slug, request, status) for slug in status_slugs
                    },
                }
            },
        }
    return responses
