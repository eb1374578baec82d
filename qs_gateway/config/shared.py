"""Settings that bluesky-httpserver has too, under its names: ``QSERVER_*`` variables and the
sections of its YAML schema, so a facility's existing configuration works unchanged."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .options import TOP_LEVEL, setting
from .parsers import (
    choice,
    number,
    parse_api_key,
    parse_bool,
    parse_list,
    parse_list_of_mappings,
    parse_module_names,
    parse_public_key,
    parse_str,
    separated_list,
)

ZMQ = "qserver_zmq_configuration"
AUTH = "authentication"
SERVER = "server_configuration"
DAY = 24 * 3600.0


@dataclass(frozen=True)
class ZmqSettings:
    """How to reach RE Manager."""

    control_address: str = setting(
        "control_address",
        "QSERVER_ZMQ_CONTROL_ADDRESS",
        "tcp://localhost:60615",
        parse_str,
        "RE Manager's control socket: the address of its REQ/REP socket.",
        section=ZMQ,
        deprecated_env=("QSERVER_ZMQ_ADDRESS_CONTROL", "QSERVER_ZMQ_ADDRESS"),
    )
    info_address: str = setting(
        "info_address",
        "QSERVER_ZMQ_INFO_ADDRESS",
        "tcp://localhost:60625",
        parse_str,
        "RE Manager's info socket: the address of its PUB socket (console output and status).",
        section=ZMQ,
        deprecated_env=("QSERVER_ZMQ_ADDRESS_CONSOLE",),
    )
    encoding: str = setting(
        "encoding",
        "QSERVER_ZMQ_ENCODING",
        "json",
        choice("json", "msgpack"),
        "How messages to and from RE Manager are encoded: `json` or `msgpack`, as RE Manager's `--zmq-encoding`.",
        section=ZMQ,
    )
    public_key: str | None = setting(
        "public_key",
        "QSERVER_ZMQ_PUBLIC_KEY",
        None,
        parse_public_key,
        "RE Manager's CurveZMQ (CURVE) public key (z85, 40 characters; checked at start-up). Each worker makes "
        "its own client key pair.",
        section=ZMQ,
    )


@dataclass(frozen=True)
class PolicySettings:
    policy: str | None = None
    args: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class AuthSettings:
    """Who may do what (see :mod:`qs_gateway.auth`)."""

    single_user_api_key: str | None = setting(
        "single_user_api_key",
        "QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY",
        None,
        parse_api_key,
        "The API key of single-user mode (letters and digits): at least 8 characters (fewer is a placeholder, "
        "not a secret), or start-up stops; under 32 a warning is logged (`openssl rand -hex 16` makes a good "
        "one). If none is set and no login provider is configured, one is generated at start-up, printed once, "
        "and shared by all workers.",
        section=AUTH,
        shown_default="generated",
    )
    allow_anonymous_access: bool = setting(
        "allow_anonymous_access",
        "QSERVER_HTTP_SERVER_ALLOW_ANONYMOUS_ACCESS",
        False,
        parse_bool,
        "`1`: requests without credentials get the public role, `unauthenticated_public` (`read:status`).",
        section=AUTH,
    )
    providers: tuple[Mapping[str, Any], ...] = setting(
        "providers",
        None,
        (),
        parse_list_of_mappings,
        "Login providers; see [Authentication and authorization](authentication.md).",
        section=AUTH,
    )
    secret_keys: tuple[str, ...] = setting(
        "secret_keys",
        "QSERVER_HTTP_SERVER_SERVER_SECRET_KEYS",
        (),
        separated_list(";"),
        "Keys that sign tokens, `;`-separated in the variable. The first signs, all verify (rotation: put the "
        "new key first). If none is set, one key is generated and shared through Redis.",
        section=AUTH,
        shown_default="generated",
    )
    access_token_max_age: float = setting(
        "access_token_max_age",
        "QSERVER_HTTP_SERVER_ACCESS_TOKEN_MAX_AGE",
        900.0,
        number(float, minimum=1),
        "Seconds an access token is valid.",
        section=AUTH,
        unit="s",
    )
    refresh_token_max_age: float = setting(
        "refresh_token_max_age",
        "QSERVER_HTTP_SERVER_REFRESH_TOKEN_MAX_AGE",
        7 * DAY,
        number(float, minimum=1),
        "Seconds a refresh token is valid.",
        section=AUTH,
        unit="s",
    )
    session_max_age: float = setting(
        "session_max_age",
        "QSERVER_HTTP_SERVER_SESSION_MAX_AGE",
        365 * DAY,
        number(float, minimum=1),
        "Seconds a login session lasts at most: until then it can be refreshed.",
        section=AUTH,
        unit="s",
    )
    # The policies have a YAML section of their own each: read by the loader, not by the loop.
    api_access: PolicySettings = PolicySettings()
    resource_access: PolicySettings = PolicySettings()


@dataclass(frozen=True)
class ExtensionSettings:
    """Facility code plugged into the gateway (see :mod:`qs_gateway.extending`)."""

    custom_modules: tuple[str, ...] = setting(
        "custom_modules",
        "QSERVER_CUSTOM_MODULES",
        (),
        parse_module_names,
        "Python modules with facility functions (e.g. `spreadsheet_to_plan_list`), imported at start-up (`:`, "
        "`,` or white space separated in the variable; `-` becomes `_`); one that fails to import is logged "
        "and skipped. See [Extending](extending.md).",
        section=SERVER,
        deprecated_env=("QSERVER_CUSTOM_MODULE",),
    )
    custom_routers: tuple[str, ...] = setting(
        "custom_routers",
        "QSERVER_HTTP_CUSTOM_ROUTERS",
        (),
        parse_list,
        "Flask blueprints to add, each `package.module.attribute` (`:`, `,` or white space separated in the "
        "variable); one that cannot be loaded stops start-up. See [Extending](extending.md).",
        section=SERVER,
    )


@dataclass(frozen=True)
class BrowserSettings:
    allow_origins: tuple[str, ...] = setting(
        "allow_origins",
        "QSERVER_HTTP_SERVER_ALLOW_ORIGINS",
        (),
        separated_list(None),
        "Origins whose browser pages may call the API (CORS, with credentials); white-space separated in the "
        "variable, `*` allows any.",
        section=TOP_LEVEL,
    )
