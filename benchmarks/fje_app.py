"""Contender (b): flask-jwt-extended's documented Redis blocklist pattern.

Written from flask-jwt-extended's "Blocklist and Token Revoking" example
(``examples/blocklist_redis.py``): ``token_in_blocklist_loader`` asks Redis whether the
token's jti is blocklisted (one EXISTS per protected request, access and refresh
tokens alike). Refresh is the documented check-then-set: ``@jwt_required(refresh=True)``
checks the jti, then the view blocklists it (SET with a TTL) and mints a new pair. Login
reads the user's argon2id hash with one GET and verifies it with the same parameters
as authsvc. No sessions, no rotation families, no reuse detection, no logs or metrics.
"""

from __future__ import annotations

import os
from datetime import timedelta

import redis
from argon2 import PasswordHasher, Type
from argon2.exceptions import VerificationError
from flask import Flask, jsonify, request
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    get_jwt,
    get_jwt_identity,
    jwt_required,
)

ACCESS_EXPIRES = timedelta(minutes=15)
REFRESH_EXPIRES = timedelta(days=30)

app = Flask(__name__)
app.config["JWT_SECRET_KEY"] = os.environ["BENCH_JWT_SECRET"]
app.config["JWT_ACCESS_TOKEN_EXPIRES"] = ACCESS_EXPIRES
app.config["JWT_REFRESH_TOKEN_EXPIRES"] = REFRESH_EXPIRES
jwt = JWTManager(app)

jwt_redis_blocklist = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"], decode_responses=True)
hasher = PasswordHasher(
    time_cost=int(os.environ["BENCH_ARGON2_TIME_COST"]),
    memory_cost=int(os.environ["BENCH_ARGON2_MEMORY_KIB"]),
    parallelism=int(os.environ["BENCH_ARGON2_PARALLELISM"]),
    type=Type.ID,
)


@jwt.token_in_blocklist_loader
def check_if_token_is_revoked(jwt_header: dict, jwt_payload: dict) -> bool:
    """One EXISTS: is this jti blocklisted?"""
    return bool(jwt_redis_blocklist.exists(jwt_payload["jti"]))


def _pair(identity: str) -> dict:
    return {
        "access_token": create_access_token(identity=identity),
        "refresh_token": create_refresh_token(identity=identity),
    }


@app.post("/api/v1/user/login")
def login():  # noqa: ANN201
    """Verify the password against the stored hash; a new token pair."""
    body = request.get_json()
    stored = jwt_redis_blocklist.get(f"user:{body['username']}")
    try:
        hasher.verify(stored or "", body["password"])
    except (VerificationError, ValueError):
        return jsonify(code=401, msg="invalid credentials", data=None), 401
    return jsonify(code=200, msg="ok", data=_pair(body["username"]))


@app.get("/api/v1/user/me")
@jwt_required()
def me():  # noqa: ANN201
    """The protected resource."""
    return jsonify(code=200, msg="ok", data={"user_id": get_jwt_identity()})


@app.get("/api/v1/user/refresh")
@jwt_required(refresh=True)
def refresh():  # noqa: ANN201
    """Blocklist the presented refresh token (check-then-set) and mint a new pair."""
    jwt_redis_blocklist.set(get_jwt()["jti"], "", ex=REFRESH_EXPIRES)
    return jsonify(code=200, msg="ok", data=_pair(get_jwt_identity()))
