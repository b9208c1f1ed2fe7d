"""The examples of the OpenAPI document: one per request body and per JSON answer.

``/docs`` shows them and its "Try it out" sends them as they stand (the login example is the
quick start's demo account); ``tests/test_openapi.py`` checks each against its schema.
The builder (:mod:`authsvc.openapi`) looks them up by schema class.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema

from authsvc.embedded import DEMO_PASSWORD, DEMO_USERNAME
from authsvc.openapi_device import DEVICE_DATA_EXAMPLES, DEVICE_REQUEST_EXAMPLES
from authsvc.openapi_oauth import OAUTH_DATA_EXAMPLES, OAUTH_REQUEST_EXAMPLES
from authsvc.response_schemas import (
    BulkCreateResultSchema,
    ClientListSchema,
    ClientSchema,
    IntrospectionSchema,
    JwkSetSchema,
    PrincipalSchema,
    ProbeSchema,
    SessionListSchema,
    TokenPairSchema,
    UserDetailSchema,
    UserPageSchema,
)
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

# Tokens as the service issues them (signed with a throwaway test secret; expired).
_ACCESS_JWT_EXAMPLE = (
    "eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzLTIzYjM2MzRlMjc1MSIsInR5cCI6ImF0K2p3dCJ9."
    "eyJzdWIiOiI2YjBkNTM1NDQ2YWQ0NWU0ODYyNmZlMDUzN2U5ZDRhZCIsInR5cGUiOiJhY2Nlc3MifQ."
    "AvdJtfA_89ZBOePSs_Uw2BzflT5KHxCbIEy3AduMUME"
)
_REFRESH_JWT_EXAMPLE = (
    "eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzLTIzYjM2MzRlMjc1MSIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiI2YjBkNTM1NDQ2YWQ0NWU0ODYyNmZlMDUzN2U5ZDRhZCIsInR5cGUiOiJyZWZyZXNoIn0."
    "OuC-hdIubuuFmJ_wSIq-I4odoSUNHwWuhqZ0wIdmDcA"
)
_EXAMPLE_USER_ID = "6b0d535446ad45e48626fe0537e9d4ad"
_EXAMPLE_SESSION_ID = "un4p_Sr14Ovzcb3TfkaMRw"
_EXAMPLE_TIME = 1767225600  # Unix seconds
# One session as listed (GET /sessions, the admin user detail).
_EXAMPLE_SESSION: dict[str, Any] = {
    "session_id": _EXAMPLE_SESSION_ID,
    "device_id": "thermostat-42",
    "user_agent": "thermostat-fw/2.1",
    "ip": "192.0.2.10",
    "created": _EXAMPLE_TIME,
    "last_refresh": _EXAMPLE_TIME + 3600,
    "expires": _EXAMPLE_TIME + 2592000,
    "client_id": "default",
    "bound": False,
}

REQUEST_EXAMPLES: dict[type[Schema], dict[str, Any]] = {
    LoginSchema: {
        "username": DEMO_USERNAME,
        "password": DEMO_PASSWORD,
        "device_id": "thermostat-42",
    },
    RefreshSchema: {"refresh_token": _REFRESH_JWT_EXAMPLE},
    PasswordChangeSchema: {
        "old_password": DEMO_PASSWORD,
        "new_password": "a longer passphrase 2026",
    },
    TokenOperationSchema: {"token": _ACCESS_JWT_EXAMPLE, "token_type_hint": "access_token"},
    BulkCreateSchema: {
        "users": [
            {"username": "thermostat-0001", "password": "9f2c4e7a-initial"},
            {"username": "thermostat-0002", "password": "1b8d0c3f-initial", "roles": ["device"]},
            {"username": "Thermostat-0001", "password": "5e6a7b8c-initial"},
            {"username": "thermostat 0003", "password": "3c4d5e6f-initial"},
        ]
    },
    PasswordResetSchema: {"password": "a new passphrase 2026"},
    NewClientSchema: {
        "client_id": "admin-console",
        "name": "Admin console",
        "scopes": ["admin", "profile"],
        "transports": ["body"],
        "access_ttl": 300,
    },
    ClientUpdateSchema: {"scopes": ["profile"], "access_ttl": None},
}

_ADMIN_CONSOLE_EXAMPLE = {
    "client_id": "admin-console",
    "name": "Admin console",
    "scopes": ["admin", "profile"],
    "transports": ["body"],
    "grants": [],
    "access_ttl": 300,
    "refresh_ttl": None,
    "builtin": False,
    "dpop": "optional",
}

DATA_EXAMPLES: dict[type[Schema], Any] = {
    ProbeSchema: {"status": "up"},
    TokenPairSchema: {
        "access_token": _ACCESS_JWT_EXAMPLE,
        "refresh_token": _REFRESH_JWT_EXAMPLE,
        "token_type": "Bearer",
        "expires_in": 900,
        "refresh_expires_in": 2592000,
        "session_id": _EXAMPLE_SESSION_ID,
        "scope": "profile",
    },
    PrincipalSchema: {
        "user_id": _EXAMPLE_USER_ID,
        "username": DEMO_USERNAME,
        "roles": [],
        "session_id": _EXAMPLE_SESSION_ID,
        "client_id": "default",
        "scope": "profile",
        "bound": False,
        "cnf": None,
    },
    SessionListSchema: {"sessions": [{**_EXAMPLE_SESSION, "current": True}]},
    BulkCreateResultSchema: {
        "created": 2,
        "failed": 2,
        "results": [
            {
                "index": 0,
                "status": "created",
                "username": "thermostat-0001",
                "user_id": "0c5e3f1a9b7d4e2f8a6c1d3b5e7f9a0b",
            },
            {
                "index": 1,
                "status": "created",
                "username": "thermostat-0002",
                "user_id": "7d1b3e5f0a2c4e6a8b0d2f4a6c8e0b1d",
            },
            {
                "index": 2,
                "status": "error",
                "username": "thermostat-0001",
                "error": "username_taken",
            },
            {
                "index": 3,
                "status": "error",
                "username": None,
                "error": "validation_failed",
                "fields": {
                    "username": [
                        "username must be 1-64 characters of a-z 0-9 . _ @ + - "
                        "(after NFKC normalisation and case folding)"
                    ]
                },
            },
        ],
    },
    UserPageSchema: {
        "users": [
            {
                "user_id": _EXAMPLE_USER_ID,
                "username": "thermostat-0001",
                "roles": ["device"],
                "disabled": False,
            }
        ],
        "next_cursor": "dGhlcm1vc3RhdC0wMDAxIDZiMGQ1MzU0NDZhZDQ1ZTQ4NjI2ZmUwNTM3ZTlkNGFk",
    },
    UserDetailSchema: {
        "user_id": _EXAMPLE_USER_ID,
        "username": "thermostat-0001",
        "roles": ["device"],
        "disabled": False,
        "sessions": [{**_EXAMPLE_SESSION, "device_id": "thermostat-0001", "current": False}],
    },
    ClientSchema: _ADMIN_CONSOLE_EXAMPLE,
    ClientListSchema: {
        "clients": [
            {
                "client_id": "default",
                "name": "Default (logins without client_id)",
                "scopes": ["profile"],
                "transports": ["body", "cookie"],
                "grants": [],
                "access_ttl": None,
                "refresh_ttl": None,
                "builtin": True,
                "dpop": "optional",
            },
            _ADMIN_CONSOLE_EXAMPLE,
        ]
    },
    IntrospectionSchema: {
        "active": True,
        "token_type": "access_token",
        "sub": _EXAMPLE_USER_ID,
        "username": DEMO_USERNAME,
        "sid": _EXAMPLE_SESSION_ID,
        "jti": "l9tp6z0jf-MQTjg4zVzQxw",
        "roles": [],
        "client_id": "default",
        "azp": "default",
        "scope": "profile",
        "iat": _EXAMPLE_TIME,
        "nbf": _EXAMPLE_TIME,
        "exp": _EXAMPLE_TIME + 900,
        "iss": "authsvc",
        "aud": "authsvc",
    },
    JwkSetSchema: {
        "keys": [
            {
                "kty": "OKP",
                "kid": "20260101000000-1a2b3c4d",
                "alg": "EdDSA",
                "use": "sig",
                "crv": "Ed25519",
                "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            }
        ]
    },
}


REQUEST_EXAMPLES.update(OAUTH_REQUEST_EXAMPLES)
REQUEST_EXAMPLES.update(DEVICE_REQUEST_EXAMPLES)
DATA_EXAMPLES.update(OAUTH_DATA_EXAMPLES)
DATA_EXAMPLES.update(DEVICE_DATA_EXAMPLES)
