"""JWT minting and verification against RFC 8725 and the OWASP JWT cheat sheet.

Forged tokens reuse the sub/sid/jti of a real logged-in session, so that the only thing
standing between them and a 200 is the claim or header check under test.
"""

import base64
import hashlib
import hmac
import json
import time

import fakeredis
import jwt
import pytest

from authsvc import create_app, tokens
from authsvc.cookies import CSRF_COOKIE, REFRESH_COOKIE
from authsvc.errors import AuthError
from authsvc.keys import hmac_kid
from tests.conftest import BASE_SETTINGS, TEST_SECRET, bearer, login_pair

ME_URL = "/api/v1/user/me"
REFRESH_URL = "/api/v1/user/refresh"
ACCESS_HEADERS = {"typ": "at+jwt"}
TEST_KID = hmac_kid(TEST_SECRET)
OTHER_SECRET = "another-secret-that-is-also-long-enough-0123456789"
# RFC 7518 section 3.2: an HS512 key must be at least 64 bytes.
HS512_SECRET = "an-hs512-secret-needs-sixty-four-bytes-or-more-0123456789abcdefgh"


def claims_of(token):
    """The payload of ``token`` without checking anything."""
    return jwt.decode(token, options={"verify_signature": False})


def forge(payload, *, key=TEST_SECRET, algorithm="HS256", headers=ACCESS_HEADERS):
    """Sign ``payload`` the way an attacker or a buggy issuer might (naming the real kid)."""
    return jwt.encode(
        payload, key, algorithm=algorithm, headers={"kid": TEST_KID, **(headers or {})}
    )


def b64url(data):
    """Unpadded base64url of JSON-serialisable ``data``."""
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def error_of(response):
    """The status and error slug of an envelope response."""
    return response.status_code, (response.get_json()["data"] or {}).get("error")


def me(client, token):
    """GET /me with ``token``."""
    return client.get(ME_URL, headers=bearer(token))


@pytest.fixture
def pair(client, user):
    """A fresh login of alice over the API."""
    return login_pair(client)


@pytest.fixture
def access_claims(pair):
    """The claims of the logged-in access token."""
    return claims_of(pair["access_token"])


@pytest.fixture
def refresh_claims(pair):
    """The claims of the logged-in refresh token."""
    return claims_of(pair["refresh_token"])


@pytest.fixture
def offline_app():
    """An app over fakeredis, for calling tokens.* directly without the Redis matrix."""
    return create_app(BASE_SETTINGS, redis_client=fakeredis.FakeRedis(decode_responses=True))


def standalone_claims(**changes):
    """A complete, valid access-token payload for ``tokens.verify`` (no session needed)."""
    now = int(time.time())
    claims = {
        "iss": "authsvc",
        "aud": "authsvc",
        "sub": "user-1",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "access-jti-1",
        "sid": "session-1",
        "type": "access",
        "roles": ["admin"],
    }
    claims.update(changes)
    return claims


def verify_slug(app, token, expected_type=tokens.ACCESS):
    """The AuthError slug tokens.verify raises for ``token``."""
    with app.app_context(), pytest.raises(AuthError) as caught:
        tokens.verify(token, expected_type)
    return caught.value.slug


# -- the baseline the negative tests depend on --------------------------------------


def test_faithful_forgery_is_accepted(client, access_claims):
    """Re-signing the real claims with the real key and header is accepted (control case)."""
    assert me(client, forge(access_claims)).status_code == 200


def test_standalone_claims_verify(offline_app):
    """The standalone payload passes tokens.verify (control case for the claim tests)."""
    with offline_app.app_context():
        claims = tokens.verify(forge(standalone_claims()), tokens.ACCESS)
    assert claims.subject == "user-1"
    assert claims.session_id == "session-1"
    assert claims.roles == ("admin",)


# -- algorithm and key (RFC 8725 sections 2.1, 3.1) ---------------------------------


def test_alg_none_token_is_refused(client, access_claims):
    """An unsigned token (alg "none") is refused."""
    unsigned = jwt.encode(access_claims, None, algorithm="none", headers=ACCESS_HEADERS)
    assert error_of(me(client, unsigned)) == (401, "token_invalid")


def test_alg_none_token_with_a_dummy_signature_is_refused(client, access_claims):
    """alg "none" with a non-empty signature segment is refused by the algorithm allowlist."""
    token = ".".join(
        [b64url({"alg": "none", "typ": "at+jwt"}), b64url(access_claims), "c2lnbmF0dXJl"]
    )
    assert error_of(me(client, token)) == (401, "token_invalid")


# The attacker's HS384/HS512 signature under a 48-byte key triggers pyjwt's key-size warning.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_other_hmac_algorithm_under_the_same_key_is_refused(client, access_claims, algorithm):
    """A token signed with HS384/HS512 under the HS256 key is refused: one algorithm only."""
    token = forge(access_claims, algorithm=algorithm)
    assert error_of(me(client, token)) == (401, "token_invalid")


def test_token_signed_with_another_secret_is_refused(client, access_claims):
    """A correctly shaped token signed with a different secret is refused."""
    assert error_of(me(client, forge(access_claims, key=OTHER_SECRET))) == (401, "token_invalid")


def test_tampered_payload_is_refused(client, pair, access_claims):
    """Changing the roles of a real token while keeping its signature is refused."""
    header, _, signature = pair["access_token"].split(".")
    tampered = ".".join([header, b64url({**access_claims, "roles": ["root"]}), signature])
    assert error_of(me(client, tampered)) == (401, "token_invalid")


def test_a_remembered_header_admits_no_token_without_a_valid_signature(client, pair, access_claims):
    """The verifier remembers headers it saw with a valid signature; that skips no check.

    A tampered payload or a bad signature under the remembered header is refused, and
    headers of tokens that fail the signature are never remembered (an attacker cannot
    fill the verifier with them).
    """
    assert me(client, pair["access_token"]).status_code == 200  # its header is remembered
    header, _, signature = pair["access_token"].split(".")
    tampered = ".".join([header, b64url({**access_claims, "roles": ["root"]}), signature])
    assert error_of(me(client, tampered)) == (401, "token_invalid")
    resigned = forge(access_claims, key=OTHER_SECRET)
    assert resigned.split(".")[0] == header
    assert error_of(me(client, resigned)) == (401, "token_invalid")
    verifier = client.application.extensions[tokens.VERIFIER_EXTENSION]
    remembered = dict(verifier._headers)
    for n in range(5):
        extra = {"alg": "HS256", "kid": TEST_KID, **ACCESS_HEADERS, "n": n}
        junk = ".".join([b64url(extra), b64url(access_claims), signature])
        assert error_of(me(client, junk)) == (401, "token_invalid")
    assert verifier._headers == remembered


def test_configured_algorithm_is_the_only_one_accepted(make_app):
    """With JWT_ALGORITHM=HS512 the app mints HS512 and refuses HS256 tokens."""
    app = make_app(JWT_ALGORITHM="HS512", JWT_SECRET=HS512_SECRET)
    app.extensions["authsvc"].add_user("bob", "bob password 1")
    client = app.test_client()
    response = client.post(
        "/api/v1/user/login", json={"username": "bob", "password": "bob password 1"}
    )
    access = response.get_json()["data"]["access_token"]
    assert jwt.get_unverified_header(access)["alg"] == "HS512"
    assert me(client, access).status_code == 200
    downgraded = forge(claims_of(access), key=HS512_SECRET, algorithm="HS256")
    assert error_of(me(client, downgraded)) == (401, "token_invalid")


# -- issuer and audience ------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"iss": "someone-else"},
        {"iss": "authsvc2"},
        {"aud": "another-service"},
        {"aud": ["another-service"]},
    ],
)
def test_wrong_issuer_or_audience_is_refused(client, access_claims, changes):
    """iss and aud must be exactly the configured ones."""
    assert error_of(me(client, forge({**access_claims, **changes}))) == (401, "token_invalid")


# -- required claims ----------------------------------------------------------------


@pytest.mark.parametrize("claim", tokens.REQUIRED_CLAIMS)
def test_verify_refuses_an_access_token_missing_a_required_claim(offline_app, claim):
    """tokens.verify refuses an access token without any one of the required claims."""
    payload = standalone_claims()
    del payload[claim]
    assert verify_slug(offline_app, forge(payload)) == "token_invalid"


@pytest.mark.parametrize("claim", tokens.REQUIRED_CLAIMS)
def test_api_refuses_an_access_token_missing_a_required_claim(client, access_claims, claim):
    """/me refuses a session-valid access token from which one required claim is removed."""
    payload = {name: value for name, value in access_claims.items() if name != claim}
    assert error_of(me(client, forge(payload))) == (401, "token_invalid")


@pytest.mark.parametrize("claim", tokens.REQUIRED_CLAIMS)
def test_api_refuses_a_refresh_token_missing_a_required_claim(client, refresh_claims, claim):
    """GET /refresh refuses a session-valid refresh token missing one required claim."""
    payload = {name: value for name, value in refresh_claims.items() if name != claim}
    response = client.get(REFRESH_URL, headers=bearer(forge(payload, headers=None)))
    status, slug = error_of(response)
    assert status == 401
    assert slug in {"token_invalid", "wrong_token_type"}


@pytest.mark.parametrize(
    "changes",
    [
        {"type": "id"},
        {"roles": "admin"},
        {"roles": [1]},
        {"sid": ""},
        {"sid": 7},
        {"jti": ""},
        {"sub": ""},
    ],
)
def test_verify_refuses_malformed_claim_values(offline_app, changes):
    """Claims of the wrong type or empty are refused, not passed on."""
    assert verify_slug(offline_app, forge(standalone_claims(**changes))) == "token_invalid"


def test_over_long_token_is_refused(offline_app):
    """A token over 4096 characters is refused before decoding."""
    payload = standalone_claims(roles=["r" * 40] * 120)
    token = forge(payload)
    assert len(token) > tokens.MAX_TOKEN_LENGTH
    assert verify_slug(offline_app, token) == "token_invalid"


# -- times and leeway ---------------------------------------------------------------


def test_expired_token_is_token_expired(client, access_claims):
    """An access token that expired well beyond the leeway is token_expired."""
    token = forge({**access_claims, "exp": int(time.time()) - 100})
    response = me(client, token)
    assert error_of(response) == (401, "token_expired")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_expired_refresh_token_is_token_expired(client, refresh_claims):
    """A refresh token past its exp (beyond leeway) is token_expired on /refresh."""
    token = forge({**refresh_claims, "exp": int(time.time()) - 100}, headers=None)
    assert error_of(client.get(REFRESH_URL, headers=bearer(token))) == (401, "token_expired")


def test_token_expired_within_default_leeway_is_accepted(client, access_claims):
    """exp 10 s ago is inside the default 30 s leeway: accepted."""
    token = forge({**access_claims, "exp": int(time.time()) - 10})
    assert me(client, token).status_code == 200


@pytest.fixture
def no_leeway_client(make_app):
    """A client of an app with JWT_LEEWAY=0, alice created in it."""
    app = make_app(JWT_LEEWAY=0)
    app.extensions["authsvc"].add_user("alice", "correct horse battery", ("admin",))
    return app.test_client()


def test_leeway_setting_is_honoured(no_leeway_client):
    """With JWT_LEEWAY=0 a token expired 10 s ago is refused."""
    access = login_pair(no_leeway_client)["access_token"]
    token = forge({**claims_of(access), "exp": int(time.time()) - 10})
    assert error_of(me(no_leeway_client, token)) == (401, "token_expired")


def test_larger_leeway_accepts_older_tokens(make_app):
    """With JWT_LEEWAY=60 a token expired 40 s ago is accepted, 100 s ago refused."""
    app = make_app(JWT_LEEWAY=60)
    app.extensions["authsvc"].add_user("alice", "correct horse battery", ("admin",))
    client = app.test_client()
    claims = claims_of(login_pair(client)["access_token"])
    now = int(time.time())
    assert me(client, forge({**claims, "exp": now - 40})).status_code == 200
    assert error_of(me(client, forge({**claims, "exp": now - 100}))) == (401, "token_expired")


def test_token_not_yet_valid_is_refused(client, access_claims):
    """nbf ten minutes in the future (beyond leeway) is refused."""
    token = forge({**access_claims, "nbf": int(time.time()) + 600})
    assert error_of(me(client, token)) == (401, "token_invalid")


def test_token_issued_in_the_future_is_refused(client, access_claims):
    """iat ten minutes in the future is refused."""
    future = int(time.time()) + 600
    token = forge({**access_claims, "iat": future, "nbf": access_claims["nbf"]})
    assert error_of(me(client, token)) == (401, "token_invalid")


# -- token types --------------------------------------------------------------------


def test_access_token_on_get_refresh_is_wrong_token_type(client, pair):
    """An access token presented to GET /refresh is wrong_token_type."""
    response = client.get(REFRESH_URL, headers=bearer(pair["access_token"]))
    assert error_of(response) == (401, "wrong_token_type")


def test_access_token_on_post_refresh_is_wrong_token_type(client, pair):
    """An access token in the JSON body of POST /refresh is wrong_token_type."""
    response = client.post(REFRESH_URL, json={"refresh_token": pair["access_token"]})
    assert error_of(response) == (401, "wrong_token_type")


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", ME_URL),
        ("POST", "/api/v1/user/logout"),
        ("POST", "/api/v1/user/logout-all"),
        ("GET", "/api/v1/user/sessions"),
    ],
)
def test_refresh_token_on_protected_endpoints_is_wrong_token_type(client, pair, method, url):
    """A refresh token is never accepted where an access token is required."""
    response = client.open(url, method=method, headers=bearer(pair["refresh_token"]))
    assert error_of(response) == (401, "wrong_token_type")


def test_refresh_token_with_access_header_is_still_a_refresh_token(client, refresh_claims):
    """Adding typ at+jwt to a refresh token does not make it an access token."""
    assert error_of(me(client, forge(refresh_claims))) == (401, "wrong_token_type")


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+JWT+x", None])
def test_access_token_without_at_jwt_typ_is_refused(client, access_claims, typ):
    """An access token must carry the RFC 9068 header typ "at+jwt"."""
    token = forge(access_claims, headers={"typ": typ})
    assert error_of(me(client, token)) == (401, "token_invalid")


def test_minted_access_token_has_the_explicit_type_header(pair):
    """Issued access tokens carry typ at+jwt; refresh tokens do not."""
    assert jwt.get_unverified_header(pair["access_token"])["typ"] == "at+jwt"
    assert jwt.get_unverified_header(pair["refresh_token"]).get("typ") != "at+jwt"


# -- minting ------------------------------------------------------------------------


def mint(app, **changes):
    """tokens.mint_pair with fixed identifiers, some replaced by ``changes``."""
    arguments = {
        "user_id": "user-1",
        "session_id": "session-1",
        "roles": ("admin", "ops"),
        "refresh_jti": "refresh-jti-1",
        "access_jti": "access-jti-1",
        "issued_at": int(time.time()),
        "session_expires_at": int(time.time()) + 3600,
        "access_ttl": 900,
        "client_id": "default",
        "scope": "profile",
    }
    arguments.update(changes)
    with app.app_context():
        return tokens.mint_pair(**arguments)


def test_same_identifiers_mint_the_same_bytes(offline_app):
    """mint_pair is deterministic: the grace-window replay relies on it."""
    issued_at = int(time.time())
    first = mint(offline_app, issued_at=issued_at, session_expires_at=issued_at + 3600)
    second = mint(offline_app, issued_at=issued_at, session_expires_at=issued_at + 3600)
    assert first.access_token == second.access_token
    assert first.refresh_token == second.refresh_token


def test_different_identifiers_mint_different_tokens(offline_app):
    """A different jti gives a different token (the identifiers really are in the token)."""
    issued_at = int(time.time())
    first = mint(offline_app, issued_at=issued_at, access_jti="a-1", refresh_jti="r-1")
    second = mint(offline_app, issued_at=issued_at, access_jti="a-2", refresh_jti="r-2")
    assert first.access_token != second.access_token
    assert first.refresh_token != second.refresh_token


def test_minted_pair_carries_every_claim(offline_app):
    """Both tokens carry every required claim, the right type, and verify."""
    issued_at = int(time.time())
    pair = mint(offline_app, issued_at=issued_at, session_expires_at=issued_at + 3600)
    access, refresh = claims_of(pair.access_token), claims_of(pair.refresh_token)
    for payload in (access, refresh):
        assert set(tokens.REQUIRED_CLAIMS) <= set(payload)
        assert payload["iss"] == "authsvc"
        assert payload["aud"] == "authsvc"
        assert payload["sid"] == "session-1"
        assert payload["roles"] == ["admin", "ops"]
    assert (access["type"], access["jti"], access["exp"]) == (
        "access",
        "access-jti-1",
        issued_at + 900,
    )
    assert (refresh["type"], refresh["jti"], refresh["exp"]) == (
        "refresh",
        "refresh-jti-1",
        issued_at + 3600,
    )
    with offline_app.app_context():
        assert tokens.verify(pair.access_token, tokens.ACCESS).jti == "access-jti-1"
        assert tokens.verify(pair.refresh_token, tokens.REFRESH).jti == "refresh-jti-1"


def test_access_token_never_outlives_its_session(offline_app):
    """An access token minted near the session's end expires with the session."""
    issued_at = int(time.time())
    pair = mint(offline_app, issued_at=issued_at, session_expires_at=issued_at + 60)
    assert claims_of(pair.access_token)["exp"] == issued_at + 60
    assert pair.access_expires_in <= 60


# -- NumericDate claims are JSON numbers, on every path (RFC 7519 section 2) ----------

NOT_NUMERIC_DATES = ["9999999999", True, False, None, [9999999999], {"at": 9999999999}, "NaN"]
TIME_CLAIMS = ("exp", "iat", "nbf")
INTROSPECT_CLIENT = ("orders-api", "orders-api-secret-0123456789abcdef")


def _not_a_number(value):
    """``value``, except that the string "NaN" stands for the JSON literal NaN."""
    return float("nan") if value == "NaN" else value


@pytest.fixture
def token_client_app(make_app):
    """An app with one introspection/revocation client."""
    return make_app(TOKEN_CLIENTS=":".join(INTROSPECT_CLIENT))


def _basic():
    raw = base64.b64encode(":".join(INTROSPECT_CLIENT).encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@pytest.mark.parametrize("value", NOT_NUMERIC_DATES)
@pytest.mark.parametrize("claim", TIME_CLAIMS)
def test_verify_refuses_a_time_claim_that_is_not_a_json_number(offline_app, claim, value):
    """exp/iat/nbf as a string, bool, null, list, object or NaN: token_invalid, either type."""
    bad = _not_a_number(value)
    for kind, headers in ((tokens.ACCESS, ACCESS_HEADERS), (tokens.REFRESH, None)):
        token = forge(standalone_claims(type=kind, **{claim: bad}), headers=headers)
        assert verify_slug(offline_app, token, kind) == "token_invalid"


@pytest.mark.parametrize("claim", TIME_CLAIMS)
def test_float_time_claims_are_numbers_and_accepted(offline_app, claim):
    """A fractional NumericDate is a JSON number: accepted (control case)."""
    value = standalone_claims()[claim] + 0.5
    with offline_app.app_context():
        assert tokens.verify(forge(standalone_claims(**{claim: value})), tokens.ACCESS)


@pytest.mark.parametrize("value", ["9999999999", True, None, [9999999999]])
@pytest.mark.parametrize("claim", TIME_CLAIMS)
def test_bearer_paths_refuse_time_claims_that_are_not_numbers(
    client, pair, access_claims, refresh_claims, claim, value
):
    """/me, GET /refresh and POST /refresh refuse a session-valid token with such a claim."""
    assert error_of(me(client, forge({**access_claims, claim: value}))) == (401, "token_invalid")
    refresh = forge({**refresh_claims, claim: value}, headers=None)
    assert error_of(client.get(REFRESH_URL, headers=bearer(refresh))) == (401, "token_invalid")
    posted = client.post(REFRESH_URL, json={"refresh_token": refresh})
    assert error_of(posted) == (401, "token_invalid")
    # The real refresh token was never consumed by the refused ones.
    assert client.get(REFRESH_URL, headers=bearer(pair["refresh_token"])).status_code == 200


@pytest.mark.parametrize("value", ["9999999999", True, None])
def test_cookie_refresh_refuses_a_string_exp(client, user, value):
    """A cookie refresh whose token's exp is not a number is token_invalid, CSRF matching."""
    login_pair(client, transport="cookie")
    real = client.get_cookie(REFRESH_COOKIE).value
    forged = forge({**claims_of(real), "exp": value}, headers=None)
    client.set_cookie(REFRESH_COOKIE, forged, secure=True)
    csrf = client.get_cookie(CSRF_COOKIE).value
    response = client.get(REFRESH_URL, headers={"X-CSRF-Token": csrf})
    assert error_of(response) == (401, "token_invalid")


@pytest.mark.parametrize("value", ["9999999999", False, None])
def test_introspection_and_revocation_ignore_a_token_with_a_string_exp(
    token_client_app, user, value
):
    """Introspection says inactive; revocation revokes nothing (the real tokens stay live)."""
    client = token_client_app.test_client()
    pair = login_pair(client)
    for name in ("access_token", "refresh_token"):
        headers = ACCESS_HEADERS if name == "access_token" else None
        forged = forge({**claims_of(pair[name]), "exp": value}, headers=headers)
        answer = client.post("/api/v1/token/introspect", data={"token": forged}, headers=_basic())
        assert answer.get_json()["data"] == {"active": False}
        revoked = client.post("/api/v1/token/revoke", data={"token": forged}, headers=_basic())
        assert revoked.status_code == 200
    assert me(client, pair["access_token"]).status_code == 200
    assert client.get(REFRESH_URL, headers=bearer(pair["refresh_token"])).status_code == 200


# -- JWS header extensions and encodings ----------------------------------------------


def sign_raw(header, payload, key=TEST_SECRET):
    """A compact HS256 JWS with exactly ``header`` (PyJWT would normalise some fields)."""
    signing_input = f"{b64url(header)}.{b64url(payload)}"
    digest = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def test_raw_signed_token_is_accepted(client, access_claims):
    """A token signed by sign_raw with the real header is accepted (control case)."""
    header = {"alg": "HS256", "typ": "at+jwt", "kid": TEST_KID}
    assert me(client, sign_raw(header, access_claims)).status_code == 200


@pytest.mark.parametrize(
    "extra", [{"crit": ["exp"]}, {"b64": True}, {"b64": False}, {"kid": 7}, {"kid": None}]
)
def test_header_extensions_and_a_non_string_kid_are_refused(client, access_claims, extra):
    """crit and b64 are never issued here, so a token naming them is refused; kid is a string."""
    header = {"alg": "HS256", "typ": "at+jwt", "kid": TEST_KID, **extra}
    assert error_of(me(client, sign_raw(header, access_claims))) == (401, "token_invalid")


def test_non_canonical_base64_signature_is_refused(client, pair):
    """The same signature spelled with set trailing bits is another token: refused."""
    head, _, signature = pair["access_token"].rpartition(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # 32 bytes -> 43 characters: the last one carries 4 unused bits.
    last = alphabet.index(signature[-1])
    spelled = signature[:-1] + alphabet[last | 1]
    assert spelled != signature
    assert error_of(me(client, f"{head}.{spelled}")) == (401, "token_invalid")
    assert me(client, pair["access_token"]).status_code == 200


# -- minting ---------------------------------------------------------------------------


@pytest.mark.parametrize("roles", [(), ("admin", "ops")])
def test_minted_pair_is_byte_identical_to_flask_jwt_extended(offline_app, roles):
    """The signer writes the same bytes flask-jwt-extended wrote for the same claims."""
    from flask_jwt_extended import create_access_token, create_refresh_token

    issued = int(time.time())
    with offline_app.test_request_context():
        pair = tokens.mint_pair(
            user_id="user-1",
            session_id="session-1",
            roles=roles,
            refresh_jti="refresh-jti-1",
            access_jti="access-jti-1",
            issued_at=issued,
            session_expires_at=issued + 3600,
            access_ttl=900,
            client_id="web",
            scope="admin profile",
        )
        common = {
            "iat": issued,
            "nbf": issued,
            "sid": "session-1",
            "roles": list(roles),
            "azp": "web",
            "scope": "admin profile",
        }
        access = create_access_token(
            identity="user-1",
            additional_claims={**common, "jti": "access-jti-1", "exp": issued + 900},
            additional_headers={"typ": tokens.ACCESS_TYP},
        )
        refresh = create_refresh_token(
            identity="user-1",
            additional_claims={
                **common,
                "jti": "refresh-jti-1",
                "exp": issued + 3600,
                "csrf": tokens.csrf_token_for("refresh-jti-1"),
            },
        )
    assert pair.access_token == access
    assert pair.refresh_token == refresh
