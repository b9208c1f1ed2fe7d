"""The OpenAPI document: valid OpenAPI 3, complete, and true of the live app (schemathesis)."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema_rs
import pytest
import redis
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from marshmallow import Schema
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

from authsvc import create_app, docs_ui
from authsvc.api import docs
from authsvc.cookies import CSRF_COOKIE, CSRF_HEADER, REFRESH_COOKIE
from authsvc.embedded import DEMO_PASSWORD, DEMO_USERNAME
from authsvc.errors import STATUS_BY_SLUG, AuthError
from authsvc.openapi import (
    IMPLICIT_METHODS,
    UNDOCUMENTED_ENDPOINTS,
    UndocumentedRouteError,
    build_spec,
    markdown,
    plain,
)
from authsvc.openapi_docs import ACCESS_TOKEN, ADMIN_TOKEN, CLIENT, DOCS, REFRESH_TOKEN
from authsvc.openapi_model import Doc
from authsvc.openapi_oauth import OAUTH_CLIENT
from authsvc.passwords import Passwords
from authsvc.response_schemas import PrincipalSchema
from authsvc.schemas import (
    BulkCreateSchema,
    ClientUpdateSchema,
    LoginSchema,
    NewClientSchema,
    PasswordChangeSchema,
    PasswordResetSchema,
    RefreshSchema,
    TokenOperationSchema,
)
from tests.conftest import (
    ADMIN_CLIENT_ID,
    BASE_SETTINGS,
    PASSWORD,
    USERNAME,
    add_admin_client,
    bearer,
)

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    response_headers_conformance,
]
MAX_EXAMPLES = 25
TOKEN_CLIENT = ("resource-server", "a resource server secret 0123456789")
# A confidential client for /oauth/token; its secret is made by build_app.
MACHINE_CLIENT = ["machine", ""]
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
        # Cheap hashing below the OWASP floor: bulk creation hashes up to 100 rows per
        # fuzzed request, and the fuzzer is after answers, not the cost of a hash.
        app.extensions["authsvc"].passwords = Passwords(time_cost=1, memory_kib=64, parallelism=1)
        app.extensions["authsvc"].add_user(USERNAME, PASSWORD, ("admin",))
        add_admin_client(app.extensions["authsvc"])
        app.extensions["authsvc"].clients.add(MACHINE_CLIENT[0], "Machine", ("reports:read",))
        with app.app_context():
            issued = app.extensions["authsvc_client_credentials"].issue_secret(MACHINE_CLIENT[0])
        MACHINE_CLIENT[1] = issued.secret
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
        ("admin.create_users", BulkCreateSchema),
        ("admin.reset_password", PasswordResetSchema),
        ("admin.create_client", NewClientSchema),
        ("admin.update_client", ClientUpdateSchema),
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
    """Access-token operations require bearerAuth and document 401 with WWW-Authenticate.

    Admin operations document 403 forbidden and insufficient_scope as well.
    """
    admin_operations = 0
    for operation in _operations(spec).values():
        entry = DOCS[operation["operationId"]]
        if entry.credentials not in (ACCESS_TOKEN, ADMIN_TOKEN):
            continue
        assert {"bearerAuth": []} in operation["security"]
        assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
        if entry.credentials is ADMIN_TOKEN:
            admin_operations += 1
            examples = operation["responses"]["403"]["content"]["application/json"]["examples"]
            assert {"forbidden", "insufficient_scope"} <= set(examples)
    assert admin_operations == 16


def test_openapi_json_is_the_bare_document(api_app):
    """/openapi.json is plain OpenAPI (tooling needs it), not wrapped in the envelope."""
    body = api_app.test_client().get("/openapi.json").get_json()
    assert "openapi" in body
    assert "code" not in body


def _served(client: FlaskClient, path: str) -> tuple[int, str, str, bytes]:
    """Status, media type, CSP and body of GET ``path`` (the file handle closed)."""
    with client.get(path) as response:
        return (
            response.status_code,
            response.mimetype,
            response.headers.get("Content-Security-Policy", ""),
            response.get_data(),
        )


def test_docs_page_is_swagger_ui_from_this_origin_under_a_strict_csp(api_app):
    """/docs loads Swagger UI and its init script as files of this origin, nothing inline."""
    client = api_app.test_client()
    status, mimetype, csp, body = _served(client, "/docs")
    html = body.decode()
    assert (status, mimetype) == (200, "text/html")
    directives = dict(d.split(" ", 1) for d in csp.split("; "))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["default-src"] == "'none'"
    assert "unsafe" not in csp
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []  # no inline script
    assert re.findall(r"\sstyle=|<style", html) == []  # no inline style
    loaded = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sorted(loaded) == sorted([f"docs/{name}" for name in docs_ui.ASSETS] + ["openapi.json"])
    for name, root in docs_ui.ASSETS.items():
        status, mimetype, csp_of_asset, body = _served(client, f"/docs/{name}")
        assert status == 200
        assert mimetype in docs_ui.asset_media_types()
        assert csp_of_asset == csp
        assert body == (root / name).read_bytes()
    assert b"SwaggerUIBundle" in (docs_ui.SWAGGER_UI_ROOT / "swagger-ui-bundle.js").read_bytes()


@pytest.mark.parametrize(
    "name", ["oauth2-redirect.html", "swagger-ui-standalone-preset.js", "index.html", "nope.js"]
)
def test_docs_serves_only_the_files_the_page_loads(api_app, name):
    """Other files of the Swagger UI folder (or of ours) are a not_found envelope."""
    with api_app.test_client().get(f"/docs/{name}") as response:
        assert response.status_code == 404
        assert response.get_json()["data"]["error"] == "not_found"


def _texts(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """Every (key, string) of the document's summaries and descriptions, recursively."""
    if isinstance(node, dict):
        for child_key, child in node.items():
            yield from _texts(child, child_key)
    elif isinstance(node, list):
        for child in node:
            yield from _texts(child, key)
    elif isinstance(node, str) and key in ("summary", "description"):
        yield key, node


def test_descriptions_are_markdown_and_summaries_plain_text(spec):
    """No reST markup is left: ``x`` became `x` in descriptions; summaries carry no code marks."""
    texts = list(_texts(spec))
    assert len(texts) > 50
    assert [t for _, t in texts if "``" in t or re.search(r":[a-z]+:`", t)] == []
    assert [t for key, t in texts if key == "summary" and "`" in t] == []
    operation = _operations(spec)[("POST", "/api/v1/user/refresh")]
    assert operation["summary"].startswith('Rotate the refresh token sent as JSON {"refresh_token"')
    assert '`{"refresh_token": ...}`' in operation["description"]


def test_markdown_converts_rest_literals_and_roles():
    """The conversion itself: literals and roles become code spans, the rest is untouched."""
    assert markdown("Is ``data.active`` set? See :func:`build_spec`.") == (
        "Is `data.active` set? See `build_spec`."
    )
    assert plain("Is ``data.active`` *set*?") == "Is data.active *set*?"


def test_cookie_operations_say_how_they_are_called(spec):
    """Each operation that takes the refresh cookie explains the cookie and its CSRF header."""
    cookie_operations = [
        operation
        for operation in _operations(spec).values()
        if {"refreshCookie": []} in operation.get("security", [])
    ]
    assert len(cookie_operations) == 3  # GET and POST refresh, logout
    for operation in cookie_operations:
        for needed in (REFRESH_COOKIE, CSRF_COOKIE, CSRF_HEADER, '"transport": "cookie"'):
            assert needed in operation["description"]


def _validator(spec: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A JSON Schema 2020-12 validator of ``schema``, its $refs resolved in ``spec``."""
    return jsonschema_rs.Draft202012Validator({**schema, "components": spec["components"]})


def test_every_request_body_has_an_example_that_its_schema_accepts(spec):
    """Each body media type has an example (login: the demo account), valid against the schema."""
    bodies = [
        media
        for operation in _operations(spec).values()
        for media in operation.get("requestBody", {}).get("content", {}).values()
    ]
    # login, refresh, password, admin bulk creation, password reset, client creation and
    # update: JSON; introspect, revoke: form and JSON
    # /oauth/token, /oauth/introspect, /oauth/revoke: form; a client's new secret: JSON
    assert len(bodies) == 18
    for media in bodies:
        _validator(spec, media["schema"]).validate(media["example"])  # raises when invalid
    login = _operations(spec)[("POST", "/api/v1/user/login")]
    example = login["requestBody"]["content"]["application/json"]["example"]
    assert (example["username"], example["password"]) == (DEMO_USERNAME, DEMO_PASSWORD)


def test_every_json_answer_has_an_example_that_its_schema_accepts(spec):
    """200 (enveloped, and JWKS) has an example; each error status has one per data.error slug."""
    for (method, path), operation in _operations(spec).items():
        entry = DOCS[operation["operationId"].removesuffix(f".{method.lower()}")]
        for status, response in operation["responses"].items():
            media = response["content"].get("application/json")
            bare = entry.response is None and not entry.enveloped
            if media is None or (status == "200" and bare):
                continue  # HTML, assets, metrics text, the OpenAPI document itself
            validator = _validator(spec, media["schema"])
            if status == "200":
                validator.validate(media["example"])
                if entry.enveloped:
                    assert media["example"]["code"] == 200
                continue
            if entry.oauth:  # RFC 6749 section 5.2 errors: {"error", "error_description"}
                codes = media["schema"]["allOf"][1]["properties"]["error"]["enum"]
                assert set(media["examples"]) == set(codes), (method, path, status)
                for code, example in media["examples"].items():
                    validator.validate(example["value"])
                    assert example["value"]["error"] == code
                continue
            slugs = media["schema"]["allOf"][1]["properties"]["data"]["properties"]["error"]["enum"]
            assert set(media["examples"]) == set(slugs), (method, path, status)
            for slug, example in media["examples"].items():
                validator.validate(example["value"])
                assert example["value"]["data"]["error"] == slug
                assert example["value"]["code"] == int(status)


def test_an_example_that_breaks_its_schema_is_caught(spec):
    """The example checks above have teeth: a token pair without session_id is refused."""
    operation = _operations(spec)[("POST", "/api/v1/user/login")]
    media = operation["responses"]["200"]["content"]["application/json"]
    broken = {**media["example"], "data": {**media["example"]["data"], "session_id": None}}
    with pytest.raises(jsonschema_rs.ValidationError):
        _validator(spec, media["schema"]).validate(broken)


class Caller:
    """Valid credentials and tokens for the fuzzed calls, so success paths are exercised too.

    Access-token operations get a live access token (the fuzzer logs out with it, so it
    is checked before each call and re-issued when dead), admin operations one of a login
    through the admin console with the admin scope; GET refresh gets the refresh
    token of a fresh session, as Bearer or (every other call) as the browser's cookie
    with its CSRF header; introspection and revocation get the client's Basic
    credentials. Every other valid (positive) body gets real values: alice's username and
    password, a fresh ``refresh_token``, a live ``token`` of the hinted type.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.client: FlaskClient = app.test_client()
        self.access: dict[bool, str] = {False: "", True: ""}
        self.calls = 0

    def _login(self, transport: str = "body", *, admin: bool = False) -> dict[str, Any]:
        body = {"username": USERNAME, "password": PASSWORD, "transport": transport}
        if admin:  # the admin API needs the admin scope: the admin console's login
            body.update(client_id=ADMIN_CLIENT_ID, scope="admin")
        response = self.client.post("/api/v1/user/login", json=body)
        assert response.status_code == 200, response.get_json()
        return response.get_json()["data"]

    def _live_access_token(self, *, admin: bool = False) -> str:
        with self.app.app_context():
            try:
                self.app.extensions["authsvc"].authenticate(self.access[admin])
            except AuthError:
                self.access[admin] = self._login(admin=admin)["access_token"]
        return self.access[admin]

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
        if credentials in (ACCESS_TOKEN, ADMIN_TOKEN):  # alice has the admin role
            return {"headers": bearer(self._live_access_token(admin=credentials is ADMIN_TOKEN))}
        if credentials is REFRESH_TOKEN:
            if self.calls % 2:
                return self._refresh_cookie()
            return {"headers": bearer(self._login()["refresh_token"])}
        if credentials is CLIENT:
            return {"headers": {"Authorization": basic_auth(*TOKEN_CLIENT)}}
        if credentials is OAUTH_CLIENT:
            # The token endpoint: the confidential machine client; the others: the
            # resource server. Every other call sends none (public / form / refused).
            if self.calls % 3 == 0:
                return {}
            oauth_client = MACHINE_CLIENT if case.path == "/oauth/token" else TOKEN_CLIENT
            return {"headers": {"Authorization": basic_auth(*oauth_client)}}
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
