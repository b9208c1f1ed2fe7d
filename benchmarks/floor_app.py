"""Contender (a), the floor: a bare WSGI app, PyJWT HS256 decode + one Redis EXISTS.

No framework, no envelope work, no logs, no metrics: what any Python service that
checks a JWT against a Redis blocklist must at least spend per request. Its login (S3)
is as bare: one GET of the user's argon2id hash, the verify at authsvc's parameters,
two HS256 tokens; no throttle, no session, no audit line.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

import jwt
import redis
from argon2 import PasswordHasher, Type
from argon2.exceptions import VerificationError

SECRET = os.environ["BENCH_JWT_SECRET"]
_redis = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"], decode_responses=True)
_UNAUTHORIZED = b'{"code":401,"msg":"unauthorized","data":null}'
_hasher = PasswordHasher(
    time_cost=int(os.environ["BENCH_ARGON2_TIME_COST"]),
    memory_cost=int(os.environ["BENCH_ARGON2_MEMORY_KIB"]),
    parallelism=int(os.environ["BENCH_ARGON2_PARALLELISM"]),
    type=Type.ID,
)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """GET /api/v1/user/me, or POST /api/v1/user/login (S3)."""
    if environ["REQUEST_METHOD"] == "POST":
        return login(environ, start_response)
    header = environ.get("HTTP_AUTHORIZATION", "")
    try:
        claims = jwt.decode(header[7:], SECRET, algorithms=["HS256"], audience="authsvc")
        revoked = _redis.exists(f"blocklist:{claims['jti']}")
    except (jwt.InvalidTokenError, KeyError):
        revoked = True
    if revoked:
        body = _UNAUTHORIZED
        status = "401 UNAUTHORIZED"
    else:
        body = json.dumps({"code": 200, "msg": "ok", "data": {"user_id": claims["sub"]}}).encode()
        status = "200 OK"
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def login(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """One GET of the stored hash, the verify, an access and a refresh token."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = json.loads(environ["wsgi.input"].read(length))
    stored = _redis.get(f"user:{body['username']}")
    try:
        _hasher.verify(stored or "", body["password"])
    except (VerificationError, ValueError):
        start_response(
            "401 UNAUTHORIZED",
            [("Content-Type", "application/json"), ("Content-Length", str(len(_UNAUTHORIZED)))],
        )
        return [_UNAUTHORIZED]
    now = int(time.time())
    pair = {
        kind: jwt.encode(
            {"sub": body["username"], "type": kind, "jti": secrets.token_urlsafe(16),
             "iat": now, "exp": now + ttl, "aud": "authsvc"},
            SECRET,
            algorithm="HS256",
        )
        for kind, ttl in (("access", 900), ("refresh", 30 * 86400))
    }  # fmt: skip
    answer = json.dumps({"code": 200, "msg": "ok", "data": {
        "access_token": pair["access"], "refresh_token": pair["refresh"]}}).encode()  # fmt: skip
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))]
    )
    return [answer]
