"""The Python SDK's DPoP proofs (RFC 9449), verified with PyJWT and cryptography.

No server here: `FakeAuthsvc` is a requests session that answers like authsvc with a
bound session and checks every proof it gets as a server must (signature by the key in
the header, `typ`, `htm`, `htu`, `iat`, unique `jti`, `ath`, `nonce`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import stat
import time
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from authsvc.client import AuthClient, FileTokenStore, MemoryTokenStore
from authsvc.client_dpop import (
    EcDpopKey,
    ExternalDpopKey,
    der_signature,
    jwk_thumbprint,
    make_proof,
    proof_htu,
)

BASE = "https://auth.example.test"
LOGIN, REFRESH, ME = "/api/v1/user/login", "/api/v1/user/refresh", "/api/v1/user/me"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def verify_proof(proof: str, method: str, url: str, *, access_token: str | None = None) -> dict:
    """What a server checks, with PyJWT; returns the header and claims."""
    header = jwt.get_unverified_header(proof)
    assert header["typ"] == "dpop+jwt"
    assert header["alg"] == "ES256"
    assert set(header["jwk"]) == {"kty", "crv", "x", "y"}  # no private member
    key = jwt.PyJWK(header["jwk"], algorithm="ES256")
    claims = jwt.decode(proof, key=key, algorithms=["ES256"], options={"verify_aud": False})
    assert claims["htm"] == method
    assert claims["htu"] == url
    assert abs(claims["iat"] - time.time()) <= 5
    assert len(base64.urlsafe_b64decode(claims["jti"] + "==")) >= 12
    if access_token is None:
        assert "ath" not in claims
    else:
        assert claims["ath"] == b64(hashlib.sha256(access_token.encode()).digest())
    return {"header": header, "claims": claims, "jkt": jwk_thumbprint(header["jwk"])}


def envelope(status: int, data: Any, headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps({"code": status, "msg": "m", "data": data}).encode()
    response.headers.update(headers or {})
    return response


class FakeAuthsvc(requests.Session):
    """authsvc with DPoP-bound sessions, in memory; records each verified proof."""

    def __init__(self, *, nonce: str | None = None, lose_first_refresh: bool = False) -> None:
        super().__init__()
        self.nonce = nonce
        self.lose_first_refresh = lose_first_refresh
        self.proofs: list[dict] = []
        self.jkt: str | None = None
        self.counter = 0

    def pair(self) -> dict[str, Any]:
        self.counter += 1
        return {
            "access_token": f"access.{self.counter}",
            "refresh_token": f"refresh.{self.counter}",
            "token_type": "DPoP",
            "expires_in": 900,
            "scope": "profile",
            "session_id": "sid",
        }

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        headers = kwargs.get("headers") or {}
        path = url.removeprefix(BASE)
        access = None
        if path == ME:
            scheme, _, access = headers["Authorization"].partition(" ")
            assert scheme == "DPoP"
        checked = verify_proof(headers["DPoP"], method, url, access_token=access)
        self.proofs.append(checked)
        if self.jkt is not None:
            assert checked["jkt"] == self.jkt, "a proof by another key"
        if self.nonce is not None and checked["claims"].get("nonce") != self.nonce:
            return envelope(401, {"error": "use_dpop_nonce"}, {"DPoP-Nonce": self.nonce})
        if path == LOGIN:
            self.jkt = checked["jkt"]
            return envelope(200, self.pair())
        if path == REFRESH:
            if self.lose_first_refresh:
                self.lose_first_refresh = False
                raise requests.ConnectionError("the reply was lost")
            return envelope(200, self.pair())
        return envelope(200, {"username": "u", "token": access})


# -- proofs ---------------------------------------------------------------------------
def test_a_proof_verifies_with_pyjwt_and_carries_what_rfc_9449_asks():
    """typ dpop+jwt, ES256, the public jwk, htm, htu without query, iat, jti, ath, nonce."""
    key = EcDpopKey.generate()
    url = "HTTPS://Api.Example.test/orders/7?expand=1#frag"

    proof = make_proof(key, "post", url, access_token="the.access.token", nonce="n-1")

    checked = verify_proof(
        proof, "POST", "https://api.example.test/orders/7", access_token="the.access.token"
    )
    assert checked["claims"]["nonce"] == "n-1"
    assert checked["header"]["jwk"] == key.public_jwk
    assert checked["jkt"] == jwk_thumbprint(key.public_jwk)
    second = make_proof(key, "POST", url, access_token="the.access.token")
    assert (
        jwt.decode(second, options={"verify_signature": False})["jti"] != (checked["claims"]["jti"])
    )


def test_the_thumbprint_is_rfc_7638():
    """SHA-256 over the canonical JSON of crv, kty, x, y (sorted, no spaces)."""
    jwk = EcDpopKey.generate().public_jwk
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    assert jwk_thumbprint(jwk) == b64(hashlib.sha256(canonical.encode()).digest())
    assert proof_htu("https://h.test") == "https://h.test/"


def test_a_private_jwk_round_trips_and_a_tampered_one_is_refused():
    """The stored key comes back the same; a JWK whose public part lies is refused."""
    key = EcDpopKey.generate()
    again = EcDpopKey.from_private_jwk(key.private_jwk())
    assert again.public_jwk == key.public_jwk
    verify_proof(make_proof(again, "GET", "https://a.test/x"), "GET", "https://a.test/x")
    other = EcDpopKey.generate().public_jwk
    with pytest.raises(ValueError, match="does not match"):
        EcDpopKey.from_private_jwk({**key.private_jwk(), "x": other["x"]})
    assert key.private_jwk()["d"] not in repr(key)
    with pytest.raises(ValueError, match="P-256"):
        EcDpopKey(ec.generate_private_key(ec.SECP384R1()))


@pytest.mark.parametrize("form", ["der", "raw"])
def test_an_external_signer_signs_through_a_callable(form):
    """A key that never leaves a secure element: the SDK hands it bytes to sign."""
    private = ec.generate_private_key(ec.SECP256R1())
    calls = []

    def secure_element(data: bytes) -> bytes:
        calls.append(data)
        der = private.sign(data, ec.ECDSA(hashes.SHA256()))
        return der if form == "der" else EcDpopKey(private).sign(data)

    key = ExternalDpopKey(private.public_key(), secure_element, signature=form)
    proof = make_proof(key, "GET", "https://a.test/r", access_token="t")
    verify_proof(proof, "GET", "https://a.test/r", access_token="t")
    assert calls == [proof.rsplit(".", 1)[0].encode()]
    assert der_signature(EcDpopKey(private).sign(b"x"))[:1] == b"\x30"


# -- the client with dpop ----------------------------------------------------------------
def test_dpop_true_binds_login_and_calls_and_keeps_the_key_in_the_0600_file(tmp_path):
    """dpop=True: the login carries a proof; /me uses `Authorization: DPoP` with ath; the
    key lives in the token file (0600) and a restarted client signs with the same key."""
    path = tmp_path / "tokens.json"
    fake = FakeAuthsvc()
    client = AuthClient(BASE, token_store=FileTokenStore(path), session=fake, dpop=True)

    tokens = client.login("u", "p")
    assert tokens.bound
    assert client.get(ME)["data"]["token"] == tokens.access_token

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())
    assert saved["token_type"] == "DPoP"
    assert jwk_thumbprint(saved["dpop_jwk"]) == fake.jkt
    assert "dpop_jwk" not in repr(tokens)
    restarted = AuthClient(BASE, token_store=FileTokenStore(path), session=fake, dpop=True)
    restarted.refresh()
    assert restarted.get(ME)["code"] == 200
    assert {p["jkt"] for p in fake.proofs} == {fake.jkt}
    assert [p["claims"]["htm"] for p in fake.proofs] == ["POST", "GET", "POST", "GET"]


def test_a_lost_refresh_reply_is_retried_with_a_new_proof():
    """The retry presents the same refresh token with a new proof (new jti, same key)."""
    fake = FakeAuthsvc(lose_first_refresh=True)
    client = AuthClient(BASE, session=fake, dpop=True, retry_backoff=0.01)
    client.login("u", "p")

    client.refresh()

    refresh_proofs = [p for p in fake.proofs if p["claims"]["htu"] == BASE + REFRESH]
    assert len(refresh_proofs) == 2
    assert refresh_proofs[0]["claims"]["jti"] != refresh_proofs[1]["claims"]["jti"]
    assert client.tokens.refresh_token == "refresh.2"


def test_a_server_nonce_is_honoured():
    """use_dpop_nonce with a DPoP-Nonce header: the request is sent again once, with it."""
    fake = FakeAuthsvc(nonce="server-nonce-1")
    client = AuthClient(BASE, session=fake, dpop=True)

    client.login("u", "p")
    assert client.get(ME)["code"] == 200

    nonces = [p["claims"].get("nonce") for p in fake.proofs]
    assert nonces == [None, "server-nonce-1", "server-nonce-1"]


def test_a_callers_key_is_used_and_never_stored(tmp_path):
    """dpop=<cryptography key>: proofs by that key; the token file holds no private key."""
    private = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "tokens.json"
    fake = FakeAuthsvc()
    client = AuthClient(BASE, token_store=FileTokenStore(path), session=fake, dpop=private)

    client.login("u", "p")
    client.get(ME)

    assert fake.jkt == jwk_thumbprint(EcDpopKey(private).public_jwk)
    assert json.loads(path.read_text())["dpop_jwk"] is None
    assert client.dpop_enabled


def test_without_dpop_no_proof_is_sent():
    """The default client sends Bearer and no DPoP header."""
    sent = []

    class Plain(requests.Session):
        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            sent.append(kwargs.get("headers") or {})
            pair = {"access_token": "a", "refresh_token": "r", "expires_in": 900}
            return envelope(200, pair)

    client = AuthClient(BASE, session=Plain(), token_store=MemoryTokenStore())
    client.login("u", "p")
    client.get(ME)
    assert all("DPoP" not in headers for headers in sent)
    assert sent[1]["Authorization"] == "Bearer a"


class DpopResource(requests.adapters.BaseAdapter):
    """A foreign resource server mounted on a requests session: wants a DPoP proof with
    ath, and (RFC 9449 section 9) a nonce it announces in a challenge, not an envelope."""

    def __init__(self, nonce: str) -> None:
        super().__init__()
        self.nonce = nonce
        self.proofs: list[dict] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        scheme, _, token = request.headers["Authorization"].partition(" ")
        assert scheme == "DPoP"
        checked = verify_proof(
            request.headers["DPoP"], request.method, proof_htu(request.url), access_token=token
        )
        self.proofs.append(checked)
        response = requests.Response()
        response.request = request
        response.url = request.url
        response.connection = self  # as HTTPAdapter.build_response does
        if checked["claims"].get("nonce") != self.nonce:
            response.status_code = 401
            response.headers["WWW-Authenticate"] = 'DPoP error="use_dpop_nonce"'
            response.headers["DPoP-Nonce"] = self.nonce
            response._content = b""
        else:
            response.status_code = 200
            response._content = request.body or b"ok"
        return response

    def close(self) -> None:
        pass


def test_the_requests_adapter_signs_for_a_foreign_resource_and_takes_its_nonce():
    """client.requests_auth() on a bound session: `Authorization: DPoP`, a proof for the
    resource's URL with ath, and one retry with the nonce of a `use_dpop_nonce` challenge."""
    fake = FakeAuthsvc()
    client = AuthClient(BASE, session=fake, dpop=True)
    client.login("u", "p")
    resource = DpopResource("rs-nonce")
    api = requests.Session()
    api.mount("https://api.test/", resource)
    api.auth = client.requests_auth()

    answer = api.post("https://api.test/orders?page=2", data=b"body")

    assert answer.status_code == 200
    assert answer.content == b"body"
    assert [p["claims"].get("nonce") for p in resource.proofs] == [None, "rs-nonce"]
    assert {p["jkt"] for p in resource.proofs} == {fake.jkt}
    assert {p["claims"]["htu"] for p in resource.proofs} == {"https://api.test/orders"}
    assert client.nonce_for("https://api.test/x") == "rs-nonce"
    assert client.nonce_for(BASE) is None  # nonces are per server
