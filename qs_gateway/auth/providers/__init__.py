"""Login providers: who may log in, and how.

A provider of the configuration is ``{provider: name, authenticator: "pkg.mod:Class", args}``.
The class is one of ours (bluesky-httpserver's names are accepted, see ``plugins``) or any class
with a ``mode`` and an ``authenticate`` method:

* ``mode = "password"``: ``authenticate(username, password)`` returns the user name, or None;
* ``mode = "external"`` (OIDC): ``authenticate(code)`` exchanges an authorization code and
  returns the user name, or None;
* ``mode = "proxied"`` (OIDC): no login at the gateway; the provider's own access tokens are
  accepted as bearer tokens (see ``proxied``).

``authenticate`` may also be a coroutine function, and may return an object with a ``user_name``
attribute (as bluesky-httpserver's ``UserSessionState``): custom authenticators written for
bluesky-httpserver keep working.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from dataclasses import dataclass
from typing import Any

from ...config import ConfigError
from ..plugins import instantiate

PASSWORD = "password"
EXTERNAL = "external"
PROXIED = "proxied"
MODES = (PASSWORD, EXTERNAL, PROXIED)
_PROVIDER_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")


def _mode_of(authenticator: Any) -> str:
    mode = getattr(authenticator, "mode", PASSWORD)
    return str(getattr(mode, "value", mode)).lower()


@dataclass(frozen=True)
class Provider:
    name: str
    authenticator: Any
    mode: str

    def authenticate(self, *args: Any) -> str | None:
        """The user name the authenticator vouches for, or None. Runs in the request's thread:
        slow back ends (LDAP with two-factor prompts) hold that thread only, no shared lock."""
        result = self.authenticator.authenticate(*args)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
        if result is None or isinstance(result, str):
            return result or None
        name = getattr(result, "user_name", None)
        return name if isinstance(name, str) and name else None


async def _await(awaitable: Any) -> Any:
    return await awaitable


def build_providers(entries: Any) -> dict[str, Provider]:
    """The providers of ``authentication.providers``; a bad entry stops start-up naming it."""

    providers: dict[str, Provider] = {}
    for index, entry in enumerate(entries):
        where = f"authentication.providers[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping with 'provider', 'authenticator' and 'args'")
        unknown = set(entry) - {"provider", "authenticator", "args"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
        name = entry.get("provider")
        if not isinstance(name, str) or not _PROVIDER_NAME.match(name):
            raise ConfigError(f"{where}.provider: expected a name of letters, digits, '_' and '-', got {name!r}")
        if name in providers:
            raise ConfigError(f"{where}.provider: provider {name!r} is defined twice")
        authenticator = instantiate(entry.get("authenticator"), entry.get("args"), where, "authenticator")
        mode = _mode_of(authenticator)
        if mode not in MODES:
            raise ConfigError(f"{where}.authenticator: unsupported mode {mode!r} (expected one of {', '.join(MODES)})")
        if not callable(getattr(authenticator, "authenticate", None)):
            raise ConfigError(f"{where}.authenticator: the class has no 'authenticate' method")
        providers[name] = Provider(name, authenticator, mode)
    return providers
