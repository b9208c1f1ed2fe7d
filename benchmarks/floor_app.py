"""Contender (a), the floor: a bare WSGI app, PyJWT HS256 decode + one Redis EXISTS.

No framework, no envelope work, no logs, no metrics: what any Python service that
checks a JWT against a Redis blocklist must at least spend per request.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

import jwt
import redis

SECRET = os.environ["BENCH_JWT_SECRET"]
_redis = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"], decode_responses=True)
_UNAUTHORIZED = b'{"code":401,"msg":"unauthorized","data":null}'


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """GET /api/v1/user/me: decode the Bearer token, one EXISTS on its jti."""
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
