"""gunicorn picks this file up when started from the repository; the settings live in the package."""

from qs_gateway.serving.gunicorn_config import *  # noqa: F401,F403
