"""Authorization header parsing (RFC 6750 section 2.1, RFC 9110 section 11.4), unit and HTTP."""

import pytest

from authsvc.auth import bearer_token
from authsvc.errors import AuthError
from tests.conftest import login_pair

ME_URL = "/api/v1/user/me"
REFRESH_URL = "/api/v1/user/refresh"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"

ACCEPTED_SHAPES = ["Bearer {}", "bearer {}", "BEARER   {}", "bEaReR {}", "  Bearer {}  "]
MISSING_VALUES = [
    None,
    "",
    "   ",
    "Bearer",
    "bearer ",
    "Bearer     ",
    "Basic YWxpY2U6c2VjcmV0",
    "Token x",
]
INVALID_VALUES = [
    "Bearer a b",
    "Bearer  a  b",
    "Bearer\tabc",
    "Bearer a\tb",
    "Bearer abc,def",
    "Bearer a;b",
    "Bearer <script>",
    "Bearer a=b",
    "Bearer ===",
    "Bearer \u00e9t\u00e9",
    "Bearer\u00a0abc",
    ",",
]
# Values a real client, a fuzzer or broken firmware might send; none may crash the server.
ODD_VALUES = [
    " ",
    "          ",
    "Bearer",
    "Bearer ",
    "Bearer \u4ee4\u724c",
    "Bearer \u00e9" * 3,
    "\u00e9\u00e9\u00e9",
    "Bearer " + "a" * 20000,
    "Bearer " + "a." * 3000 + "a",
    "Bearer a.b.c",
    "Bearer ....",
    "Bearer eyJhbGciOiJub25lIn0.e30.",
    "Bearer null",
    "Bearer Bearer x",
    "Bearer %00",
    "Bearer \x01\x02",
    'Digest username="alice", realm="x"',
    "Negotiate",
    "=",
    "Bearer a.b.c.d.e",
]


def slug_of(authorization):
    """The AuthError slug bearer_token raises for ``authorization``."""
    with pytest.raises(AuthError) as caught:
        bearer_token(authorization)
    return caught.value.slug


# -- the parser -------------------------------------------------------------------


@pytest.mark.parametrize("shape", ACCEPTED_SHAPES)
def test_bearer_scheme_is_case_insensitive_with_one_or_more_spaces(shape):
    """Any case of "Bearer", then one or more spaces, then the token: the token is returned."""
    assert bearer_token(shape.format(TOKEN)) == TOKEN


def test_token68_padding_is_part_of_the_token():
    """Trailing '=' padding belongs to a token68 and is kept."""
    assert bearer_token("Bearer abc==") == "abc=="


@pytest.mark.parametrize("value", MISSING_VALUES)
def test_absent_bearer_credentials_are_token_missing(value):
    """No header, an empty one, a bare "Bearer" or another scheme: token_missing."""
    assert slug_of(value) == "token_missing"


@pytest.mark.parametrize("value", INVALID_VALUES)
def test_malformed_bearer_credentials_are_token_invalid(value):
    """Two tokens, a tab separator or characters outside token68: token_invalid."""
    assert slug_of(value) == "token_invalid"


@pytest.mark.parametrize("junk", ["\u00a0", "\x1c", "\x85"])
def test_trailing_non_space_junk_after_the_token_is_token_invalid(junk):
    """Only SP/HTAB are optional whitespace: a token followed by other junk is not one token68."""
    assert slug_of(f"Bearer {TOKEN}{junk}") == "token_invalid"


# -- over HTTP --------------------------------------------------------------------


@pytest.fixture
def pair(client, user):
    """A fresh login of alice."""
    return login_pair(client)


def get_me(client, authorization):
    """GET /me with ``authorization`` as the Authorization header (omitted when None)."""
    headers = {} if authorization is None else {"Authorization": authorization}
    return client.get(ME_URL, headers=headers)


@pytest.mark.parametrize("shape", ACCEPTED_SHAPES)
def test_me_accepts_every_valid_header_shape(client, pair, shape):
    """/me answers 200 for each accepted spelling of the bearer header."""
    response = get_me(client, shape.format(pair["access_token"]))
    assert response.status_code == 200
    assert response.get_json()["data"]["username"] == "alice"


def test_refresh_accepts_a_lowercase_scheme(client, pair):
    """GET /refresh parses the header the same way ("bearer   <t>")."""
    response = client.get(
        REFRESH_URL, headers={"Authorization": f"bearer   {pair['refresh_token']}"}
    )
    assert response.status_code == 200
    assert response.get_json()["data"]["refresh_token"] != pair["refresh_token"]


@pytest.mark.parametrize("value", MISSING_VALUES)
def test_me_without_bearer_credentials_is_token_missing(client, value):
    """/me without usable credentials: 401 token_missing with a bare challenge."""
    response = get_me(client, value)
    assert response.status_code == 401
    assert response.get_json()["data"] == {"error": "token_missing"}
    assert "error=" not in response.headers["WWW-Authenticate"]


def test_me_with_two_tokens_is_token_invalid(client, pair):
    """A valid token followed by a second one is refused, not silently truncated."""
    response = get_me(client, f"Bearer {pair['access_token']} {pair['access_token']}")
    assert response.status_code == 401
    assert response.get_json()["data"] == {"error": "token_invalid"}


def test_me_with_a_tab_separator_is_token_invalid(client, pair):
    """RFC 9110 allows only spaces between scheme and token: a tab is refused."""
    response = get_me(client, f"Bearer\t{pair['access_token']}")
    assert response.status_code == 401
    assert response.get_json()["data"] == {"error": "token_invalid"}


@pytest.mark.parametrize("value", ODD_VALUES)
def test_odd_header_values_are_a_401_never_a_500(client, value):
    """Whatever the header holds, the answer is a 401 token envelope, never a crash."""
    response = get_me(client, value)
    body = response.get_json()
    assert response.status_code == 401, body
    assert body["code"] == 401
    assert body["data"]["error"] in {"token_missing", "token_invalid"}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_error_body_never_echoes_the_presented_token(client):
    """A refused token does not appear in the response body."""
    token = "abc.def.ghijklmnopqrstuvwxyz0123456789"
    response = get_me(client, f"Bearer {token}")
    assert response.status_code == 401
    assert token not in response.get_data(as_text=True)
    assert "ghijklmnop" not in response.get_data(as_text=True)


def test_access_token_in_query_string_is_ignored(client, pair):
    """/me?access_token=... without a header is token_missing: tokens only travel in headers."""
    response = client.get(ME_URL, query_string={"access_token": pair["access_token"]})
    assert response.status_code == 401
    assert response.get_json()["data"] == {"error": "token_missing"}


def test_refresh_token_in_query_string_is_ignored(client, pair):
    """GET /refresh?refresh_token=... without a header is token_missing."""
    response = client.get(REFRESH_URL, query_string={"refresh_token": pair["refresh_token"]})
    assert response.status_code == 401
    assert response.get_json()["data"] == {"error": "token_missing"}
