"""The request body of the ``/oauth/*`` endpoints: an HTML form, parsed by a schema."""

from __future__ import annotations

from typing import Any

from flask import request
from marshmallow import Schema

from authsvc.errors import AuthError
from authsvc.oauth_errors import OAuthError
from authsvc.openapi_model import FORM


def load_form(schema: Schema) -> dict[str, Any]:
    """The form of this request, each parameter at most once, loaded by ``schema``.

    RFC 6749 section 3.2 (and RFC 7662, 7009, 8628): the body is
    ``application/x-www-form-urlencoded`` and no parameter may repeat.
    """
    if request.mimetype != FORM:
        raise AuthError("unsupported_media_type")
    if any(len(values) > 1 for values in request.form.listvalues()):
        raise OAuthError("invalid_request", "a parameter is repeated")
    return schema.load(request.form.to_dict())
