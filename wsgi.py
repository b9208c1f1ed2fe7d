"""The WSGI entry point for ``gunicorn wsgi:app``: the only module-level app."""

from authsvc import create_app

app = create_app()
