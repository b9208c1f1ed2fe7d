"""The OpenAPI document: valid OpenAPI 3, complete, and true of the live app (schemathesis)."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import jsonschema_rs
import pytest
import redis
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from marshmallow import Schema
from playwright.sync_api import Route, expect
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.openapi.checks import JsonSchemaError, UndefinedStatusCode
from schemathesis.specs.openapi.checks import (
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.routing import Rule

from authsvc import create_app
from authsvc.api import docs
from authsvc.cookies import CSRF_COOKIE, CSRF_HEADER, REFRESH_COOKIE
from authsvc.errors import STATUS_BY_SLUG, AuthError
from authsvc.openapi import (
    ACCESS_TOKEN,
    CLIENT,
    DOCS,
    IMPLICIT_METHODS,
    REFRESH_TOKEN,
    UNDOCUMENTED_ENDPOINTS,
    Doc,
    UndocumentedRouteError,
    build_spec,
)
from authsvc.schemas import (
    LoginSchema,
    PasswordChangeSchema,
    PrincipalSchema,
    RefreshSchema,
    TokenOperationSchema,
)
from tests.conftest import BASE_SETTINGS, PASSWORD, USERNAME, bearer

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    response_headers_conformance,
]
MAX_EXAMPLES = 25
TOKEN_CLIENT = ("resource-server", "a resource server secret 0123456789")
# Chromium asks this origin; every request is answered by the app's test client.
DOCS_ORIGIN = "http://authsvc.test"
SCHEMATHESIS_CONFIG = schemathesis.Config.from_dict(
    {"seed": 20261123, "generation": {"deterministic": True, "database": "none"}}
)


def with_docs(app: Flask) -> Flask:
    """``app`` with the docs blueprint, registered here until api/__init__.py does it."""
    if "docs" not in app.blueprints:
        app.register_blueprint(docs.bp)
    return app


@pytest.fixture
def build_app(real_redis: redis.Redis) -> Callable[[], Flask]:
    """Build apps over the real test Redis, with alice, a resource server, and the docs.

    The throttles never trip, so the fuzzer's wrong passwords cannot lock alice out
    (429 stays documented; the throttle itself is tested in test_api.py). The fuzzing
    costs seconds, so it runs once, on a real Redis, not on fakeredis as well.
    """

    def build() -> Flask:
        app = create_app(
            {
                **BASE_SETTINGS,
                "LOGIN_MAX_FAILURES_PER_ACCOUNT": 10**9,
                "LOGIN_MAX_FAILURES_PER_IP": 10**9,
                "TOKEN_CLIENTS": ":".join(TOKEN_CLIENT),
            },
            redis_client=real_redis,
        )
        app.extensions["authsvc"].add_user(USERNAME, PASSWORD, ("admin",))
        return with_docs(app)

    return build


@pytest.fixture
def api_app(build_app: Callable[[], Flask]) -> Flask:
    """The app under test."""
    return build_app()


@pytest.fixture
def spec(api_app: Flask) -> dict[str, Any]:
    """The document as served at /openapi.json."""
    response = api_app.test_client().get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def _operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    }


def _component(spec: dict[str, Any], ref: str) -> dict[str, Any]:
    return spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def _body_schema(spec: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    return _component(
        spec, operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    )


def test_document_is_valid_openapi_3(spec):
    """schemathesis validates the served document against the official OpenAPI 3.1 schema."""
    assert spec["openapi"].startswith("3.")
    schemathesis.openapi.from_dict(spec).validate()  # raises on an invalid document


def test_invalid_document_is_refused_by_the_validator(spec):
    """The validation above has teeth: a broken document fails it."""
    broken = {**spec, "paths": {"/x": {"get": {"responses": "none"}}}}
    with pytest.raises(jsonschema_rs.ValidationError, match="responses"):
        schemathesis.openapi.from_dict(broken).validate()


def _openapi_path(rule: Rule) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)


def test_every_route_is_documented(api_app, spec):
    """Every url_map rule (but static) and each of its methods is an operation of the document."""
    operations = _operations(spec)
    missing = [
        (method, rule.rule)
        for rule in api_app.url_map.iter_rules()
        if rule.endpoint not in UNDOCUMENTED_ENDPOINTS
        for method in (rule.methods or set()) - IMPLICIT_METHODS
        if (method, _openapi_path(rule)) not in operations
    ]
    assert missing == []


def test_every_docs_entry_is_a_route(api_app):
    """DOCS has no entry for an endpoint that no longer exists."""
    endpoints = {rule.endpoint for rule in api_app.url_map.iter_rules()}
    assert set(DOCS) - endpoints == set()


def test_a_route_without_an_entry_fails_generation(api_app):
    """A new endpoint nobody documented makes the generator raise, naming it."""
    api_app.add_url_rule("/api/v1/new", "user.brand_new", lambda: "")
    with pytest.raises(UndocumentedRouteError, match=r"/api/v1/new.*user\.brand_new"):
        build_spec(api_app)


@pytest.mark.parametrize(
    ("endpoint", "schema"),
    [
        ("user.login", LoginSchema),
        ("user.refresh_from_body", RefreshSchema),
        ("user.change_password", PasswordChangeSchema),
        ("token.introspect", TokenOperationSchema),
        ("token.revoke", TokenOperationSchema),
    ],
)
def test_request_bodies_are_the_validating_schemas(spec, endpoint, schema):
    """A documented body has exactly the fields, required fields and strictness of its schema."""
    operation = next(op for op in _operations(spec).values() if op["operationId"] == endpoint)
    body = _body_schema(spec, operation)
    declared: Schema = schema()
    assert set(body["properties"]) == {f.data_key or name for name, f in declared.fields.items()}
    assert set(body.get("required", [])) == {
        f.data_key or name for name, f in declared.fields.items() if f.required
    }
    assert body["additionalProperties"] is False


def test_error_slugs_are_every_slug_of_the_service(spec):
    """data.error is an enum of exactly the slugs in errors.STATUS_BY_SLUG."""
    assert _component(spec, "Error")["properties"]["error"]["enum"] == list(STATUS_BY_SLUG)


def test_protected_operations_declare_bearer_auth_and_401_with_challenge(spec):
    """Access-token operations require bearerAuth and document 401 with WWW-Authenticate."""
    for operation in _operations(spec).values():
        entry = DOCS[operation["operationId"]]
        if entry.credentials is not ACCESS_TOKEN:
            continue
        assert {"bearerAuth": []} in operation["security"]
        assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]


def test_openapi_json_is_the_bare_document(api_app):
    """/openapi.json is plain OpenAPI (tooling needs it), not wrapped in the envelope."""
    body = api_app.test_client().get("/openapi.json").get_json()
    assert "openapi" in body
    assert "code" not in body


def test_docs_page_renders_from_openapi_json_without_cdn(api_app):
    """/docs is a self-contained HTML page that loads the document from openapi.json."""
    response = api_app.test_client().get("/docs")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert 'fetch("openapi.json")' in html
    assert "script-src 'sha256-" in response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
    assert "<script src" not in html
    assert "http://" not in html
    assert "https://" not in html


class Caller:
    """Valid credentials and tokens for the fuzzed calls, so success paths are exercised too.

    Access-token operations get a live access token (the fuzzer logs out with it, so it
    is checked before each call and re-issued when dead); GET refresh gets the refresh
    token of a fresh session, as Bearer or (every other call) as the browser's cookie
    with its CSRF header; introspection and revocation get the client's Basic
    credentials. Every other valid (positive) body gets real values: alice's username and
    password, a fresh ``refresh_token``, a live ``token`` of the hinted type.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.client: FlaskClient = app.test_client()
        self.access = ""
        self.calls = 0

    def _login(self, transport: str = "body") -> dict[str, Any]:
        body = {"username": USERNAME, "password": PASSWORD, "transport": transport}
        response = self.client.post("/api/v1/user/login", json=body)
        assert response.status_code == 200, response.get_json()
        return response.get_json()["data"]

    def _live_access_token(self) -> str:
        with self.app.app_context():
            try:
                self.app.extensions["authsvc"].authenticate(self.access)
            except AuthError:
                self.access = self._login()["access_token"]
        return self.access

    def _refresh_cookie(self) -> dict[str, Any]:
        self._login("cookie")
        refresh = self.client.get_cookie(REFRESH_COOKIE)
        csrf = self.client.get_cookie(CSRF_COOKIE)
        assert refresh is not None
        assert csrf is not None
        return {"cookies": {REFRESH_COOKIE: refresh.value}, "headers": {CSRF_HEADER: csrf.value}}

    def _use_real_values(self, body: dict[str, Any]) -> None:
        if isinstance(body.get("username"), str) and isinstance(body.get("password"), str):
            body.update(username=USERNAME, password=PASSWORD)
        if isinstance(body.get("refresh_token"), str):
            body["refresh_token"] = self._login()["refresh_token"]
        if isinstance(body.get("token"), str):
            hinted_refresh = body.get("token_type_hint") == "refresh_token"
            body["token"] = (
                self._login()["refresh_token"] if hinted_refresh else self._live_access_token()
            )

    def prepare(self, case: schemathesis.Case) -> dict[str, Any]:
        """Put real values into ``case``; the credentials (call arguments) its operation takes."""
        self.calls += 1
        positive = case.meta is None or case.meta.generation.mode is GenerationMode.POSITIVE
        # Every other valid body keeps the fuzzer's values, so both outcomes are covered.
        if positive and isinstance(case.body, dict) and self.calls % 2:
            self._use_real_values(case.body)
        credentials = DOCS[case.operation.definition.raw["operationId"]].credentials
        if credentials is ACCESS_TOKEN:
            return {"headers": bearer(self._live_access_token())}
        if credentials is REFRESH_TOKEN:
            if self.calls % 2:
                return self._refresh_cookie()
            return {"headers": bearer(self._login()["refresh_token"])}
        if credentials is CLIENT:
            return {"headers": {"Authorization": basic_auth(*TOKEN_CLIENT)}}
        return {}


def basic_auth(client_id: str, secret: str) -> str:
    """An HTTP Basic Authorization value."""
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@pytest.fixture
def caller(api_app: Flask) -> Caller:
    """Alice's tokens and the resource server's credentials for the fuzzed calls."""
    return Caller(api_app)


def fuzz(app: Flask, caller: Caller, endpoint: str) -> None:
    """Run schemathesis on every operation of ``endpoint``: valid inputs, and invalid bodies."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app, config=SCHEMATHESIS_CONFIG)
    operations = [
        operation
        for operation in (result.ok() for result in schema.get_all_operations())
        # A rule with several methods has one operationId per method: endpoint.method.
        if operation.definition.raw["operationId"] in (endpoint, f"{endpoint}.{operation.method}")
    ]
    assert operations, f"no operation for {endpoint}"
    for operation in operations:
        # Only a body can be made invalid: path and header values are strings either way.
        modes = [GenerationMode.POSITIVE]
        if "requestBody" in operation.definition.raw:
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=MAX_EXAMPLES,
                derandomize=True,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def run(case: schemathesis.Case) -> None:
                # buffered: the WSGI client reads and closes each answer (files included).
                case.call_and_validate(**caller.prepare(case), checks=CHECKS, buffered=True)

            run()


# schemathesis.pytest.from_fixture (lazy loading, needed to use the redis fixtures) fails
# under pytest 9 (it reads the removed Node._nodeid), so each operation's strategy is
# driven by Hypothesis directly, as schemathesis documents for non-schemathesis tests.
# /openapi.json itself is left out by schemathesis (it is the document it loaded).
@pytest.mark.parametrize("endpoint", sorted(set(DOCS) - {"docs.openapi"}))
def test_schemathesis_finds_no_server_error_and_no_violation(api_app, caller, endpoint):
    """Fuzzed requests (valid and invalid, logged in) never get a 5xx or an undocumented answer."""
    fuzz(api_app, caller, endpoint)


@pytest.mark.parametrize(
    ("endpoint", "wrong", "failure"),
    [
        # {status: up} is not a principal: the body violates the document.
        ("health.healthz", Doc(PrincipalSchema), JsonSchemaError),
        # Without credentials documented, the 401 the fuzzer gets is not listed.
        ("user.me", Doc(PrincipalSchema), UndefinedStatusCode),
    ],
)
def test_schemathesis_catches_an_answer_the_document_does_not_describe(
    monkeypatch, build_app, endpoint, wrong, failure
):
    """The fuzzing above has teeth: a wrong DOCS entry makes it fail."""
    monkeypatch.setitem(DOCS, endpoint, wrong)
    app = build_app()
    with pytest.raises(FailureGroup) as caught:
        fuzz(app, Caller(app), endpoint)
    assert any(isinstance(error, failure) for error in caught.value.exceptions)


def test_docs_page_lists_every_operation_in_chromium(api_app, spec, browser):
    """In headless Chromium (enforcing the page's CSP), /docs shows one entry per operation."""
    client = api_app.test_client()
    requested: list[str] = []

    def serve_from_app(route: Route) -> None:
        requested.append(route.request.url)
        answer = client.get(urlsplit(route.request.url).path)
        route.fulfill(status=answer.status_code, headers=dict(answer.headers), body=answer.data)

    page = browser.new_page()
    try:
        page.route("**/*", serve_from_app)
        page.goto(f"{DOCS_ORIGIN}/docs")
        entries = page.locator("main details")
        expect(entries).to_have_count(len(_operations(spec)))
        login = entries.filter(has_text="/api/v1/user/login")
        expect(login).to_contain_text("Exchange username + password")
        login.locator("summary").click()
        expect(login).to_contain_text("device_id")
    finally:
        page.close()
    assert f"{DOCS_ORIGIN}/openapi.json" in requested
    assert {urlsplit(url).netloc for url in requested} == {urlsplit(DOCS_ORIGIN).netloc}
