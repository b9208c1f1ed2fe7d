"""The vocabulary of the OpenAPI builder: what a caller presents, how an endpoint is documented.

Shared by :mod:`authsvc.openapi` (the envelope's endpoints) and
:mod:`authsvc.openapi_oauth` (the plain OAuth ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marshmallow import Schema

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Credentials:
    """What a caller presents: the security requirement, the errors it brings, extra headers.

    ``how`` (Markdown) is added to the description of each operation taking them.
    """

    security: tuple[dict[str, list[str]], ...] = ()
    errors: tuple[str, ...] = ()
    parameters: tuple[str, ...] = ()
    how: str = ""
    dpop: str = ""  # reads a DPoP proof: authsvc.openapi_dpop.TOKEN or RESOURCE


PUBLIC = Credentials()


@dataclass(frozen=True)
class Doc:
    """How one Flask endpoint is documented.

    ``response`` is the schema of ``data`` in the envelope (None: ``data`` is null), or
    of the whole body when ``enveloped`` is False; ``example`` replaces its entry in
    :data:`DATA_EXAMPLES`. ``errors`` lists the slugs this
    endpoint answers besides those implied by its credentials, its JSON body and its
    path parameters.
    """

    response: type[Schema] | None = None
    request: type[Schema] | None = None
    query: type[Schema] | None = None  # the query string's parameters (loaded by the view)
    example: Any = None  # of the answer's data, when not DATA_EXAMPLES[response]
    request_media_types: tuple[str, ...] = (JSON,)
    credentials: Credentials = PUBLIC
    errors: tuple[str, ...] = ()
    media_types: tuple[str, ...] = (JSON,)
    enveloped: bool = True
    body_required: bool = True
    sets_cookies: bool = False
    summary: str = ""  # when the view has no docstring
    dpop: str = ""  # as Credentials.dpop, for an operation without credentials (login)
    # /oauth/*: errors in RFC 6749 JSON (openapi_oauth), plus these OAuth-only codes.
    oauth: bool = False
    oauth_errors: tuple[str, ...] = ()
