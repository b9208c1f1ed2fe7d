"""authsvc: JWT access tokens and rotating refresh tokens over a Redis revocation store.

The app factory is loaded lazily, so ``import authsvc.client`` (the SDK that runs on
devices) does not pull in Flask, Redis or the server's code.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "make_redis"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from authsvc import factory

        return getattr(factory, name)
    raise AttributeError(f"module 'authsvc' has no attribute {name!r}")
