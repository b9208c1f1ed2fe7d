"""The Python SDK with `dpop=True` against the real `authsvc serve` (RFC 9449, issue 15).

The server binds a session to the key of the login's proof; from then on every refresh
and every call needs a fresh proof by that key. These tests drive the SDK end to end:
bound login, calls, renewal, a lost refresh reply, a restart from the token file, the
requests adapter, server nonces, and what a thief holding only the tokens can do.
"""

from __future__ import annotations

import json
import stat
import time
from typing import Any

import pytest
import requests

from authsvc.client import AuthClient, FileTokenStore, MemoryTokenStore
from authsvc.client_dpop import jwk_thumbprint
from tests.conftest import bearer
from tests.test_client_sdk import REFRESH, REUSE_MARK, LosingSession, RecordingSession
from tests.test_e2e import ServeProcess, serving_on_test_redis

pytestmark = pytest.mark.e2e

USER = ("dpop-device", "dpop device password 0123")
ME = "/api/v1/user/me"
ACCESS_TTL = 3


@pytest.fixture(scope="module")
def live(real_redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`authsvc serve` with 3 s access tokens and no leeway."""
    with serving_on_test_redis(
        real_redis_url,
        tmp_path_factory.mktemp("dpop-sdk"),
        users=(USER,),
        ACCESS_TOKEN_TTL=ACCESS_TTL,
        JWT_LEEWAY=0,
    ) as serve:
        yield serve


class ProofRecorder(RecordingSession):
    """Records the DPoP header (and Authorization scheme) of every request."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str | None, str | None]] = []

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        headers = kwargs.get("headers") or {}
        scheme = headers.get("Authorization", "").partition(" ")[0] or None
        self.sent.append((url.split("/api/v1/user")[-1], scheme, headers.get("DPoP")))
        return super().request(method, url, *args, **kwargs)


def test_dpop_true_opens_a_bound_session_and_keeps_it_through_renewals(live, tmp_path):
    """Login binds the session to the generated key (cnf.jkt = its thumbprint); calls go
    as `DPoP` with a proof; renewals keep the binding; the key sits in the 0600 file and
    a restarted client goes on with it."""
    path = tmp_path / "tokens.json"
    session = ProofRecorder()
    client = AuthClient(live.url, token_store=FileTokenStore(path), session=session, dpop=True)

    tokens = client.login(*USER, device_id="bound-device")

    assert tokens.bound
    jkt = jwk_thumbprint(json.loads(path.read_text())["dpop_jwk"])
    me = client.get(ME)["data"]
    assert me["cnf"] == {"jkt": jkt}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    time.sleep(ACCESS_TTL + 0.5)  # the next call renews first (and is not refused)
    assert client.get(ME)["data"]["session_id"] == tokens.session_id
    assert client.tokens.refresh_token != tokens.refresh_token
    assert all(proof for _, _, proof in session.sent)
    assert {scheme for path_, scheme, _ in session.sent if path_ == "/me"} == {"DPoP"}

    restarted = AuthClient(live.url, token_store=FileTokenStore(path), dpop=True)
    assert restarted.get(ME)["data"]["cnf"] == {"jkt": jkt}
    assert restarted.refresh().bound


def test_a_thief_with_the_tokens_but_not_the_key_gets_nothing_and_changes_nothing(live):
    """The access token as Bearer, or the refresh token without a proof, is refused; the
    device's session goes on (nothing was ended or rotated)."""
    client = AuthClient(live.url, dpop=True)
    tokens = client.login(*USER)

    stolen_access = requests.get(live.url + ME, headers=bearer(tokens.access_token), timeout=5)
    stolen_refresh = requests.post(
        live.url + REFRESH, json={"refresh_token": tokens.refresh_token}, timeout=5
    )
    assert stolen_access.status_code == 401
    assert stolen_refresh.status_code in (400, 401)
    assert stolen_refresh.json()["data"]["error"] not in ("refresh_reused", "session_revoked")
    assert client.get(ME)["data"]["session_id"] == tokens.session_id
    assert client.refresh().session_id == tokens.session_id


@pytest.mark.parametrize("fault", ["connection_error", "timeout"])
def test_a_lost_refresh_reply_converges_with_a_new_proof(live, fault):
    """The reply to a bound refresh is lost after the server rotated: the SDK retries with
    the same refresh token and a new proof, and gets the pair already issued."""
    session = LosingSession(fault)
    client = AuthClient(live.url, session=session, dpop=True, retry_backoff=0.01)
    before = client.login(*USER)
    offset = len(live.stderr())

    after = client.refresh()

    assert session.refresh_tokens_presented() == [before.refresh_token] * 2
    assert after.refresh_token == session.lost["refresh_token"]
    assert client.get(ME)["data"]["session_id"] == before.session_id
    assert REUSE_MARK not in live.stderr()[offset:]


def test_the_requests_adapter_signs_for_authsvc_as_a_resource(live):
    """session.auth = client.requests_auth() on a bound session: authsvc accepts the call
    (Authorization: DPoP, a proof for its URL with ath)."""
    client = AuthClient(live.url, dpop=True)
    client.login(*USER)
    api = requests.Session()
    api.auth = client.requests_auth()

    answer = api.get(live.url + ME, timeout=5)

    assert answer.status_code == 200
    assert answer.json()["data"]["cnf"]["jkt"]
    assert answer.request.headers["Authorization"].startswith("DPoP ")


@pytest.fixture(scope="module")
def nonce_live(real_redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`authsvc serve` that wants server nonces in proofs (RFC 9449 section 8)."""
    with serving_on_test_redis(
        real_redis_url,
        tmp_path_factory.mktemp("dpop-nonce"),
        users=(USER,),
        DPOP_NONCE_SECRET="n" * 32,
    ) as serve:
        yield serve


def test_server_nonces_are_honoured(nonce_live: ServeProcess):
    """With nonces on, the first proof is refused use_dpop_nonce with a DPoP-Nonce; the
    SDK resends with it, and later proofs carry the latest nonce."""
    session = ProofRecorder()
    client = AuthClient(nonce_live.url, session=session, dpop=True, token_store=MemoryTokenStore())

    client.login(*USER)
    assert client.get(ME)["data"]["cnf"]["jkt"]
    assert client.refresh().bound

    errors = [c.error for c in session.calls]
    assert errors[0] == "use_dpop_nonce"
    assert errors[1:] == [None] * (len(errors) - 1)
