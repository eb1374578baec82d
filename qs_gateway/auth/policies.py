"""Access policies: which roles and scopes a user has, and which resource group they act in.

``BasicAPIAccessControl`` knows the two built-in users; role definitions can be edited with
``scopes_set`` / ``scopes_add`` / ``scopes_remove`` (applied in that order), as in
bluesky-httpserver. ``DictionaryAPIAccessControl`` adds users listed in the configuration
(``ServerBasedAPIAccessControl``, in its own module, fetches them from an access server).
``DefaultResourceAccessControl`` gives every user one group.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..config import ConfigError
from .scopes import BUILT_IN_USERS, DEFAULT_ROLES

_ROLE_NAME = re.compile(r"^[a-zA-Z_][0-9a-zA-Z_.@\-\+]*$")
_SCOPE_NAME = re.compile(r"^[0-9a-zA-Z:_]+$")
_GROUP_NAME = re.compile(r"^[a-zA-Z_][0-9a-zA-Z_]*$")
_USER_NAME = re.compile(r"^[0-9a-zA-Z_.@\-\+]+$")
_USER_KEYS = ("roles", "displayed_name", "email")
_ROLE_EDITS = ("scopes_set", "scopes_add", "scopes_remove")


def _scope_list(value: Any, where: str) -> set[str]:
    if value is None:
        return set()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: expected a scope or a list of scopes, got {value!r}")
    scopes = set()
    for scope in value:
        if not isinstance(scope, str) or not _SCOPE_NAME.match(scope):
            raise ConfigError(f"{where}: invalid scope name {scope!r}")
        scopes.add(scope.lower())
    return scopes


def build_roles(edits: Mapping[str, Any] | None, where: str = "api_access.args.roles") -> dict[str, frozenset[str]]:
    """The default roles with ``edits`` applied; new role names create new roles."""
    roles = {name: set(scopes) for name, scopes in DEFAULT_ROLES.items()}
    if edits is None:
        return {name: frozenset(scopes) for name, scopes in roles.items()}
    if not isinstance(edits, Mapping):
        raise ConfigError(f"{where}: expected a mapping of role names")
    for raw_name, edit in edits.items():
        if not isinstance(raw_name, str) or not _ROLE_NAME.match(raw_name):
            raise ConfigError(f"{where}: invalid role name {raw_name!r}")
        name = raw_name.lower()
        scopes = roles.setdefault(name, set())
        if edit is None:
            scopes.clear()
            continue
        if not isinstance(edit, Mapping):
            raise ConfigError(f"{where}.{raw_name}: expected null or a mapping with {', '.join(_ROLE_EDITS)}")
        for key in edit:
            if key not in _ROLE_EDITS:
                raise ConfigError(f"{where}.{raw_name}: unknown key {key!r}")
        if "scopes_set" in edit:
            scopes.clear()
            scopes |= _scope_list(edit["scopes_set"], f"{where}.{raw_name}.scopes_set")
        scopes |= _scope_list(edit.get("scopes_add"), f"{where}.{raw_name}.scopes_add")
        scopes -= _scope_list(edit.get("scopes_remove"), f"{where}.{raw_name}.scopes_remove")
    return {name: frozenset(scopes) for name, scopes in roles.items()}


def displayed_name(username: str, name: str | None = None, email: str | None = None) -> str:
    """``user``, ``user <email>``, ``user "Name"`` or ``user "Name <email>"``."""
    if name and email:
        return f'{username} "{name} <{email}>"'
    if name:
        return f'{username} "{name}"'
    if email:
        return f"{username} <{email}>"
    return username


def _role_names(value: Any, where: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and _ROLE_NAME.match(v) for v in value):
        raise ConfigError(f"{where}: expected a role name or a list of role names, got {value!r}")
    return frozenset(v.lower() for v in value)


def _optional_str(value: Any, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string or null, got {value!r}")
    return value or None


def parse_users(users: Any, where: str = "api_access.args.users") -> dict[str, dict[str, Any]]:
    """``{name: null | {roles, displayed_name, email}}`` → ``{name: {"roles": frozenset, ...}}``."""
    if users is None:
        return {}
    if not isinstance(users, Mapping):
        raise ConfigError(f"{where}: expected a mapping of user names")
    parsed = {}
    for name, entry in users.items():
        if not isinstance(name, str) or not _USER_NAME.match(name):
            raise ConfigError(f"{where}: invalid user name {name!r}")
        entry = {} if entry is None else entry
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}.{name}: expected null or a mapping with {', '.join(_USER_KEYS)}")
        for key in entry:
            if key not in _USER_KEYS:
                raise ConfigError(f"{where}.{name}: unknown key {key!r}")
        parsed[name] = {
            "roles": _role_names(entry.get("roles"), f"{where}.{name}.roles"),
            "displayed_name": _optional_str(entry.get("displayed_name"), f"{where}.{name}.displayed_name"),
            "email": _optional_str(entry.get("email"), f"{where}.{name}.email"),
        }
    return parsed


class BasicAPIAccessControl:
    """Knows only the built-in single-user and public users."""

    def __init__(self, *, roles: Mapping[str, Any] | None = None) -> None:
        self.roles = build_roles(roles)
        self._users: dict[str, dict[str, Any]] = {
            user: {"roles": frozenset({role}), "displayed_name": None, "email": None}
            for user, role in BUILT_IN_USERS.items()
        }

    def _user(self, username: str) -> dict[str, Any] | None:
        return self._users.get(username)

    def is_user_known(self, username: str) -> bool:
        return self._user(username) is not None

    def get_user_roles(self, username: str) -> frozenset[str]:
        user = self._user(username)
        return frozenset(user["roles"]) if user else frozenset()

    def get_user_scopes(self, username: str) -> frozenset[str]:
        scopes: set[str] = set()
        for role in self.get_user_roles(username):
            scopes |= self.roles.get(role, frozenset())
        return frozenset(scopes)

    def get_displayed_user_name(self, username: str) -> str:
        user = self._user(username) or {}
        return displayed_name(username, user.get("displayed_name"), user.get("email"))

    def get_user_info(self, username: str) -> dict[str, Any]:
        user = self._user(username) or {}
        return {
            "roles": sorted(self.get_user_roles(username)),
            "scopes": sorted(self.get_user_scopes(username)),
            "displayed_name": user.get("displayed_name"),
            "email": user.get("email"),
        }


class DictionaryAPIAccessControl(BasicAPIAccessControl):
    """The built-in users plus the users of the configuration, with roles, names and e-mail.

    A user listed as ``null`` is known but has no roles: it can log in, and every request it
    makes is refused for lack of scopes (as in bluesky-httpserver).
    """

    def __init__(self, *, roles: Mapping[str, Any] | None = None, users: Mapping[str, Any] | None = None) -> None:
        super().__init__(roles=roles)
        self._users.update(parse_users(users))


class DefaultResourceAccessControl:
    """Every user acts in ``default_group`` (RE Manager's user group for plans and devices)."""

    def __init__(self, *, default_group: str = "primary") -> None:
        if not isinstance(default_group, str) or not _GROUP_NAME.match(default_group):
            raise ConfigError(f"resource_access.args.default_group: invalid group name {default_group!r}")
        self.default_group = default_group

    def get_resource_group(self, username: str) -> str:
        return self.default_group
