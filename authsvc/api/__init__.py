"""HTTP blueprints: thin views that parse, call one service function, and answer."""

from __future__ import annotations

from flask import Flask

from authsvc.api import (
    account,
    admin,
    device,
    docs,
    health,
    oauth,
    oauth_device,
    sdk,
    token,
    user,
    wellknown,
)


def register_blueprints(app: Flask) -> None:
    """Mount every blueprint."""
    app.register_blueprint(health.bp)
    app.register_blueprint(user.bp)
    app.register_blueprint(account.bp)
    app.register_blueprint(sdk.bp)
    app.register_blueprint(wellknown.bp)
    app.register_blueprint(token.bp)
    app.register_blueprint(oauth.bp)
    app.register_blueprint(oauth_device.bp)
    app.register_blueprint(device.page_bp)
    app.register_blueprint(device.bp)
    app.register_blueprint(device.admin_bp)
    app.register_blueprint(docs.bp)
    app.register_blueprint(admin.bp)
