"""qs-gateway: an HTTP gateway to the Bluesky Queue Server's RE Manager.

The application factory is :func:`qs_gateway.app.create_app`; gunicorn is configured by
:mod:`qs_gateway.serving.gunicorn_config`.
"""

__version__ = "0.1.0"
