"""Facility code plugged into the gateway: custom modules and custom blueprints.

* Custom modules (``QSERVER_CUSTOM_MODULES`` / ``server_configuration.custom_modules``) are
  imported when the application is built; a module that fails to import is logged and skipped,
  as in bluesky-httpserver. They may provide ``spreadsheet_to_plan_list`` (see
  :mod:`qs_gateway.spreadsheets`).
* Custom blueprints (``QSERVER_HTTP_CUSTOM_ROUTERS`` / ``server_configuration.custom_routers``)
  are the equivalent of bluesky-httpserver's custom routers: each entry ``package.module.attr``
  names a Flask ``Blueprint``, registered with its own ``url_prefix``. A blueprint that cannot
  be loaded stops start-up. A :class:`qs_gateway.api.declare.Resource` gets authentication,
  payload validation and a place in the OpenAPI document like the built-in endpoints.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from types import ModuleType

from flask import Blueprint, Flask

from .config import ConfigError

logger = logging.getLogger(__name__)


def load_custom_modules(names: Iterable[str]) -> tuple[ModuleType, ...]:
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except Exception as exc:
            logger.error("Custom module %r could not be imported and is ignored: %s", name, exc)
    return tuple(modules)


def find_custom_function(modules: Iterable[ModuleType], name: str) -> Callable | None:
    """The first of ``modules`` (in configured order) that defines ``name``."""
    for module in modules:
        function = getattr(module, name, None)
        if callable(function):
            return function
    return None


def load_blueprint(entry: str) -> Blueprint:
    """``package.module.attr`` → the Blueprint it names."""
    module_name, sep, attribute = entry.rpartition(".")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"custom_routers: {entry!r} is not of the form package.module.attribute")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(f"custom_routers: cannot import {module_name!r} for {entry!r}: {exc}") from exc
    blueprint = getattr(module, attribute, None)
    if not isinstance(blueprint, Blueprint):
        found = "nothing" if blueprint is None else type(blueprint).__name__
        raise ConfigError(f"custom_routers: {entry!r} must name a flask.Blueprint, found {found}")
    return blueprint


def register_custom_blueprints(app: Flask, entries: Iterable[str]) -> None:
    for entry in entries:
        blueprint = load_blueprint(entry)
        app.register_blueprint(blueprint)
        logger.info("Custom blueprint %r registered from %s", blueprint.name, entry)
