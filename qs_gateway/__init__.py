"""qs-gateway: an HTTP gateway to the Bluesky Queue Server's RE Manager."""

from __future__ import annotations

__version__ = "0.1.0"


def create_app(*args, **kwargs):  # noqa: ANN001, ANN201 - thin re-export that keeps imports lazy
    from .app import create_app as _create_app

    return _create_app(*args, **kwargs)
