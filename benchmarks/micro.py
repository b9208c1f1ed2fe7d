"""What each piece of a request costs, in microseconds: the per-request cost breakdown.

Each line is the fastest of many repeats of one operation (on a shared, busy machine
noise only ever adds), in this process, with the app's default settings over fakeredis;
the Redis round trip is measured against --redis-url when given.

    .venv/bin/python benchmarks/micro.py [--redis-url redis://127.0.0.1:6379/11]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

# Multiprocess metrics, as under gunicorn: set before prometheus_client is imported.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="authsvc-micro-"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fakeredis
import redis

from authsvc import create_app, dpop, tokens
from authsvc.errors import ok
from authsvc.logs import JsonFormatter, request_log
from authsvc.observability import log_request, metrics_of

SECRET = "micro-benchmark-secret-0123456789abcdef0123456789"


def best_us(operation: Callable[[], object], number: int = 500, repeat: int = 30) -> float:
    """The fastest of ``repeat`` runs of ``number`` calls, per call, in microseconds."""
    return min(timeit.repeat(operation, number=number, repeat=repeat)) / number * 1e6


def dpop_rows(access_token: str) -> list[tuple[str, float]]:
    """The pure proof checks (authsvc.dpop): per algorithm, and its pieces."""
    from tests.dpop_keys import DeviceKey

    url = "http://localhost/api/v1/user/me"
    rows = []
    for alg in ("ES256", "EdDSA", "RS256"):
        key = DeviceKey(alg)
        proof = key.proof("GET", "/api/v1/user/me", access_token=access_token)

        def check(proof: str = proof) -> object:
            return dpop.verify_proof(
                proof, method="GET", url=url, now=time.time(), window=60, access_token=access_token
            )

        rows.append((f"DPoP: verify a {alg} proof (parse, jwk, signature, claims, ath)",
                     best_us(check, 200, 20)))  # fmt: skip
        if alg == "ES256":
            header, _, signing_input, signature = dpop.parse_proof(proof)

            def first_use(proof: str = proof) -> object:
                dpop._HEADERS.clear()  # a header never seen: checked, its key built
                return check(proof)

            rows.append(("DPoP: ... the same, first proof of a key (header checked, key built)",
                         best_us(first_use, 200, 20)))  # fmt: skip
            jwk = header["jwk"]
            public_key = dpop._check_header(header).key

            def signature_only(
                key: object = public_key, data: bytes = signing_input, sig: bytes = signature
            ) -> None:
                dpop._verify_signature("ES256", key, data, sig)

            rows.append(("DPoP: ... of which the ES256 signature (OpenSSL, via cryptography)",
                         best_us(signature_only, 200, 20)))  # fmt: skip
            rows.append(("DPoP: ... of which split + base64 + JSON + header (cached header)",
                         best_us(lambda p=proof: dpop._read(p))))  # fmt: skip
            rows.append(("DPoP: ... of which htm, htu, iat, ath, nonce",
                         best_us(lambda: dpop.normalize_url(url) == dpop.normalize_url(url)
                                 and dpop.access_token_hash(access_token))))  # fmt: skip
            rows.append(("DPoP: first header of a key: parse + base64 + JSON",
                         best_us(lambda p=proof: dpop.parse_proof(p))))  # fmt: skip
            rows.append(("DPoP: first header of a key: typ, alg, jwk, thumbprint, key",
                         best_us(lambda h=header: dpop._check_header(h), 200, 20)))  # fmt: skip
            rows.append(("DPoP: ... of which the RFC 7638 thumbprint",
                         best_us(lambda j=jwk: dpop.thumbprint(j))))  # fmt: skip
    return rows


def replay_rows(app: object, client: redis.Redis) -> list[tuple[str, float]]:
    """The access-check script against a real Redis, without and with a proof to remember."""
    from authsvc.store import ProofUse, Store

    store = Store(client, prefix="authsvc-micro")
    store.create_user("u-micro", "micro", "x", ())
    now_ms = store.clock()
    store.create_session("u-micro", "s1", refresh_jti="r", access_jti="a", issued_at=0,
                         expires_ms=now_ms + 600_000, device_id=None, user_agent=None, ip=None,
                         proof=ProofUse("jkt-micro", "first", 60_000, "x"))  # fmt: skip
    bearer = Store(client, prefix="authsvc-micro-b")
    bearer.create_user("u-micro", "micro", "x", ())
    bearer.create_session("u-micro", "s1", refresh_jti="r", access_jti="a", issued_at=0,
                          expires_ms=now_ms + 600_000, device_id=None, user_agent=None,
                          ip=None)  # fmt: skip
    counter = iter(range(10**9))

    def with_proof() -> object:
        use = ProofUse("jkt-micro", f"proof-{next(counter)}", 60_000, "x")
        return store.check_access("u-micro", "s1", "a", proof=use)

    rows = [
        ("access-check script round trip, bearer",
         best_us(lambda: bearer.check_access("u-micro", "s1", "a"), 200, 20)),
        ("access-check script round trip, DPoP (+ SET NX of the proof)",
         best_us(with_proof, 200, 20)),
    ]  # fmt: skip
    for prefix in ("authsvc-micro", "authsvc-micro-b"):
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
    return rows


def main() -> None:
    """Print one line per operation."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", help="also time one EXISTS round trip to this Redis")
    args = parser.parse_args()

    app = create_app(
        {"JWT_SECRET": SECRET, "REDIS_URL": "redis://unused"},
        redis_client=fakeredis.FakeRedis(decode_responses=True),
    )
    now = int(time.time())

    def mint() -> tokens.TokenPair:
        return tokens.mint_pair(
            user_id="0123456789abcdef0123456789abcdef",
            session_id="Zx3abcdefghijklmnopqrs",
            roles=(),
            refresh_jti="refresh-jti-0123456789",
            access_jti="access-jti-0123456789a",
            issued_at=now,
            session_expires_at=now + 30 * 24 * 3600,
            access_ttl=900,
            client_id="default",
            scope="profile",
        )

    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
    handler.setFormatter(JsonFormatter())
    request_log.addHandler(handler)
    request_log.propagate = False
    metrics = metrics_of(app)
    rows: list[tuple[str, float]] = []
    with app.test_request_context("/api/v1/user/me", headers={"X-Request-ID": "rid-1"}):
        from flask import g

        g.request_id = "rid-1"
        pair = mint()
        rows.append(("verify an access token (parse, HMAC, claims)",
                     best_us(lambda: tokens.verify(pair.access_token, tokens.ACCESS))))  # fmt: skip
        rows.append(("mint an access + refresh pair", best_us(mint)))
        request_log.setLevel(logging.INFO)
        rows.append(("request log line at INFO (record, JSON, write)",
                     best_us(lambda: log_request("user.me", 200, 0.000123))))  # fmt: skip
        request_log.setLevel(logging.WARNING)
        rows.append(("request log line, logger above INFO",
                     best_us(lambda: log_request("user.me", 200, 0.000123))))  # fmt: skip
        observe = lambda: metrics.observe_request("user.me", 200, 0.000123)  # noqa: E731
        rows.append(("metrics: count + latency histogram (multiprocess)", best_us(observe)))
        data = {"user_id": "0123456789abcdef0123456789abcdef", "username": "bench1",
                "roles": [], "session_id": "Zx3abcdefghijklmnopqrs"}  # fmt: skip
        rows.append(("the envelope response (ok(data))", best_us(lambda: ok(data))))
    rows += dpop_rows(pair.access_token)
    if args.redis_url:
        client = redis.Redis.from_url(args.redis_url)
        client.ping()
        rows.append(("one Redis round trip (EXISTS)", best_us(lambda: client.exists("x"), 200, 20)))
        rows += replay_rows(app, client)
    width = max(len(name) for name, _ in rows)
    for name, micros in rows:
        print(f"{name:<{width}}  {micros:8.2f} us")


if __name__ == "__main__":
    main()
