"""The REST API: one blueprint per resource, all under ``/api``."""

from __future__ import annotations

from flask import Flask

from .auth import auth
from .declare import EndpointSpec, Resource
from .environment import environment
from .history import history
from .lock import lock
from .manager import manager
from .permissions import permissions
from .queue import queue
from .resources import resources
from .run_engine import run_engine
from .scripts import scripts
from .status import status

RESOURCES: tuple[Resource, ...] = (
    status,
    queue,
    history,
    environment,
    run_engine,
    resources,
    permissions,
    scripts,
    lock,
    manager,
    auth,
)


def register_blueprints(app: Flask) -> None:
    for resource in RESOURCES:
        app.register_blueprint(resource, url_prefix="/api")


def endpoint_specs() -> list[EndpointSpec]:
    return [spec for resource in RESOURCES for spec in resource.specs]


__all__ = ["EndpointSpec", "RESOURCES", "endpoint_specs", "register_blueprints"]
