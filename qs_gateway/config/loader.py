"""Building :class:`Settings` from the YAML configuration and the environment.

One precedence loop serves every setting: the YAML value if it is set (not null), else the
environment variable (or one of its deprecated names, with a warning), else the default.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from .options import GATEWAY_SECTION, TOP_LEVEL, Documented, Option, default_of, options_of
from .parsers import ConfigError, parse_mapping
from .settings import GROUPS, Settings
from .shared import PolicySettings
from .yaml_reader import CONFIG_PATH, CONFIG_PATH_ENV, LIST_SECTION, read_config_files

logger = logging.getLogger(__name__)

# Sections the loader reads itself, beside those of the settings' options.
_POLICY_KEYS = frozenset({"policy", "args"})
_OTHER_SECTIONS: Mapping[str, frozenset[str]] = {
    "api_access": _POLICY_KEYS,
    "resource_access": _POLICY_KEYS,
    # bluesky-httpserver's launcher settings, honoured where gunicorn has an equivalent
    "uvicorn": frozenset(
        {"host", "port", "workers", "root_path", "proxy_headers", "forwarded_allow_ips", "ssl_keyfile"}
        | {"ssl_certfile", "ssl_keyfile_password", "ssl_version", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ciphers"}
    ),
    # accepted for compatibility: qs-gateway keeps its state in Redis
    "database": frozenset({"uri", "pool_pre_ping", "pool_size"}),
}
_LAUNCHER_KEYS_USED = ("host", "port", "workers")  # see _with_launcher_settings

# What docs/configuration.md says of the keys above (and of the configuration's path), with the settings.
DOCUMENTED_KEYS: tuple[Documented, ...] = (
    CONFIG_PATH,
    Documented(
        yaml_names=("api_access.policy", "api_access.args"),
        shown_default="`BasicAPIAccessControl`",
        help="Who is known, with which roles; role edits with `scopes_set` / `scopes_add` / `scopes_remove`. "
        "See [Authentication and authorization](authentication.md).",
        group="auth",
    ),
    Documented(
        yaml_names=("resource_access.policy", "resource_access.args.default_group"),
        shown_default="`primary`",
        help="The user group sent to RE Manager as `user_group`.",
        group="auth",
    ),
    Documented(
        yaml_names=tuple(f"uvicorn.{key}" for key in _LAUNCHER_KEYS_USED),
        shown_default="—",
        help="bluesky-httpserver's launcher settings: honoured as `gateway.bind` / `gateway.workers` when those "
        "are not set; the other `uvicorn` keys ("
        + ", ".join(f"`{key}`" for key in sorted(_OTHER_SECTIONS["uvicorn"] - set(_LAUNCHER_KEYS_USED)))
        + ") are accepted and ignored.",
        group="serving",
    ),
    Documented(
        yaml_names=("database.*",),
        shown_default="—",
        help="Accepted and ignored ("
        + ", ".join(f"`{key}`" for key in sorted(_OTHER_SECTIONS["database"]))
        + "): qs-gateway keeps its state in Redis.",
        group="redis",
    ),
)


def all_options() -> Iterator[Option]:
    for group in GROUPS.values():
        for _, option in options_of(group):
            yield option


def section_keys() -> dict[str, frozenset[str] | None]:
    """Every YAML section with the keys it may hold (LIST_SECTION: a top-level list)."""
    keys: dict[str, set[str]] = {}
    lists = set()
    for option in all_options():
        if option.section == TOP_LEVEL:
            lists.add(option.key)
        else:
            keys.setdefault(option.section, set()).add(option.key)
    return {
        **{section: frozenset(names) for section, names in keys.items()},
        **{name: LIST_SECTION for name in lists},
        **_OTHER_SECTIONS,
    }


def _from_environment(environ: Mapping[str, str], option: Option) -> str | None:
    if option.env is None:
        return None
    if option.env in environ:
        return environ[option.env]
    for old in option.deprecated_env:
        if old in environ:
            logger.warning("Environment variable %s is deprecated; use %s", old, option.env)
            return environ[old]
    return None


_UNSET = object()


def resolve(option: Option, config: Mapping[str, Any], environ: Mapping[str, str]) -> Any:
    """The value of one setting: YAML beats environment beats default (``_UNSET``)."""
    section = config if option.section == TOP_LEVEL else config.get(option.section) or {}
    value = section.get(option.key)
    if value is not None:
        return option.parse(value, option.yaml_name)
    text = _from_environment(environ, option)
    if text is not None:
        return option.parse(text, option.env)
    return _UNSET


def _build(group: type, config: Mapping[str, Any], environ: Mapping[str, str]) -> Any:
    values = {}
    for field, option in options_of(group):
        value = resolve(option, config, environ)
        values[field.name] = default_of(field) if value is _UNSET else value
    return group(**values)


def _with_launcher_settings(config: dict[str, Any]) -> dict[str, Any]:
    """bluesky-httpserver's ``uvicorn`` section as the gateway's ``bind`` and ``workers``,
    where the ``gateway`` section does not set them."""
    launcher = config.get("uvicorn") or {}
    if not launcher:
        return config
    gateway = dict(config.get(GATEWAY_SECTION) or {})
    if "bind" not in gateway and ("host" in launcher or "port" in launcher):
        gateway["bind"] = f"{launcher.get('host', '127.0.0.1')}:{launcher.get('port', 60610)}"
    if "workers" not in gateway and "workers" in launcher:
        gateway["workers"] = launcher["workers"]
    return {**config, GATEWAY_SECTION: gateway}


def _policy(config: Mapping[str, Any], section: str) -> PolicySettings:
    values = config.get(section) or {}
    args = parse_mapping(values.get("args") or {}, f"{section}.args")
    return PolicySettings(policy=values.get("policy"), args=args)


def load_settings(environ: Mapping[str, str] | None = None, config_path: str | None = None) -> Settings:
    """Build :class:`Settings` from ``environ`` (default ``os.environ``) and the YAML config."""
    environ = os.environ if environ is None else environ
    config_path = config_path or environ.get(CONFIG_PATH_ENV) or None
    config = read_config_files(config_path, environ, section_keys()) if config_path else {}
    config = _with_launcher_settings(config)
    groups = {name: _build(group, config, environ) for name, group in GROUPS.items()}
    groups["auth"] = dataclasses.replace(
        groups["auth"], api_access=_policy(config, "api_access"), resource_access=_policy(config, "resource_access")
    )
    if "database" in config:
        logger.info("The 'database' section is accepted for compatibility; qs-gateway keeps its state in Redis")
    return Settings(**groups, config_path=str(config_path) if config_path else None)


__all__ = ["CONFIG_PATH_ENV", "ConfigError", "all_options", "load_settings", "section_keys"]
