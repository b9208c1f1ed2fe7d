"""gunicorn reads this file by default; the settings live in the package."""

from authsvc.gunicorn_conf import *  # noqa: F403
