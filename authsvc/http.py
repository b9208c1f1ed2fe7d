"""What every answer shares, on the Flask path and the fast path alike.

The request id rule and the headers that keep token answers out of caches.
"""

from __future__ import annotations

import random
import re

REQUEST_ID_HEADER = "X-Request-ID"
# The id the fast path gave a request it hands on to Flask: one request, one id.
REQUEST_ID_ENVIRON = "authsvc.request_id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

# Token responses must never be cached (RFC 6749 section 5.1); the few public documents
# (JWKS, metadata) set their own Cache-Control.
NO_STORE_HEADERS = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))


def request_id_for(supplied: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is a plain short id, else a new one.

    128 random bits as 32 hex digits, like uuid4().hex without its urandom system call:
    a request id correlates log lines, it guards nothing (random reseeds itself in each
    forked worker). fullmatch: "$" would let a trailing newline in.
    """
    if supplied and _REQUEST_ID.fullmatch(supplied):
        return supplied
    return f"{random.getrandbits(128):032x}"
