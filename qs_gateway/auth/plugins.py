"""Classes named in the configuration by import path (``"package.module:Class"``).

bluesky-httpserver's names are mapped to our equivalents, so a facility's existing configuration
file works without bluesky-httpserver installed. Any other path is imported as it is: that is how
custom authenticators and policies plug in.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..config import ConfigError

_OURS = {
    "DummyAuthenticator": "qs_gateway.auth.providers.dictionary:DummyAuthenticator",
    "DictionaryAuthenticator": "qs_gateway.auth.providers.dictionary:DictionaryAuthenticator",
    "PAMAuthenticator": "qs_gateway.auth.providers.pam:PAMAuthenticator",
    "LDAPAuthenticator": "qs_gateway.auth.providers.ldap:LDAPAuthenticator",
    "OIDCAuthenticator": "qs_gateway.auth.providers.oidc:OIDCAuthenticator",
    "EntraAuthenticator": "qs_gateway.auth.providers.oidc:EntraAuthenticator",
    "ProxiedOIDCAuthenticator": "qs_gateway.auth.providers.proxied:ProxiedOIDCAuthenticator",
    "BasicAPIAccessControl": "qs_gateway.auth.policies:BasicAPIAccessControl",
    "DictionaryAPIAccessControl": "qs_gateway.auth.policies:DictionaryAPIAccessControl",
    "ServerBasedAPIAccessControl": "qs_gateway.auth.server_based:ServerBasedAPIAccessControl",
    "DefaultResourceAccessControl": "qs_gateway.auth.policies:DefaultResourceAccessControl",
}

# The modules where bluesky-httpserver defines (or re-exports) each class.
_BLUESKY_MODULES = {
    "bluesky_httpserver.authenticators": (
        "DummyAuthenticator",
        "DictionaryAuthenticator",
        "PAMAuthenticator",
        "LDAPAuthenticator",
        "OIDCAuthenticator",
        # bluesky-httpserver's development line (its pull request 81)
        "EntraAuthenticator",
        "ProxiedOIDCAuthenticator",
    ),
    "bluesky_httpserver.authorization": (
        "BasicAPIAccessControl",
        "DictionaryAPIAccessControl",
        "ServerBasedAPIAccessControl",
        "DefaultResourceAccessControl",
    ),
    "bluesky_httpserver.authorization.api_access": (
        "BasicAPIAccessControl",
        "DictionaryAPIAccessControl",
        "ServerBasedAPIAccessControl",
    ),
    "bluesky_httpserver.authorization.resource_access": ("DefaultResourceAccessControl",),
}

COMPATIBLE_NAMES: dict[str, str] = {
    f"{module}:{name}": _OURS[name] for module, names in _BLUESKY_MODULES.items() for name in names
}

UNSUPPORTED = {
    "bluesky_httpserver.authenticators:SAMLAuthenticator": "SAML login is not supported by qs-gateway",
}


def resolve(path: Any, where: str) -> type:
    """The class named by ``path``; a ConfigError that names ``where`` if there is none."""
    if not isinstance(path, str) or not path.strip():
        raise ConfigError(f"{where}: expected an import path 'package.module:Class', got {path!r}")
    path = path.strip()
    if path in UNSUPPORTED:
        raise ConfigError(f"{where}: {path!r}: {UNSUPPORTED[path]}")
    target = COMPATIBLE_NAMES.get(path, path)
    module_name, sep, attribute = target.partition(":")
    if not sep:  # "package.module.Class" is accepted too
        module_name, _, attribute = target.rpartition(".")
    if not module_name or not attribute:
        raise ConfigError(f"{where}: expected an import path 'package.module:Class', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{where}: cannot import {module_name!r} (from {path!r}): {exc}") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"{where}: module {module_name!r} has no {attribute!r} (from {path!r})") from None


def instantiate(path: Any, args: Any, where: str, path_key: str) -> Any:
    """``resolve(path)(**args)``; bad arguments stop start-up with a message naming ``where``
    (``where.path_key`` for the import path, ``where.args`` for the arguments)."""
    cls = resolve(path, f"{where}.{path_key}")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ConfigError(f"{where}.args: expected a mapping, got {args!r}")
    try:
        return cls(**args)
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(where) else f"{where}.args: {message}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}.args: {exc}") from None
