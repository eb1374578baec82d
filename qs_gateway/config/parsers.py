"""Turning a configured value (a YAML value, or the text of an environment variable) into a typed one.

Every parser takes ``(value, name)`` and raises :class:`ConfigError` naming ``name`` (the YAML key
or the variable) when the value cannot be used.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

import zmq
from limits import parse_many

Parser = Callable[[Any, str], Any]

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the offending key or variable."""


def parse_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return bool(value)
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name}: expected a boolean (1/0, true/false), got {value!r}")


def number(kind: type, *, minimum: float | None = None, maximum: float | None = None) -> Parser:
    """A parser of ``int`` or ``float`` values of at least ``minimum`` and at most ``maximum``."""

    def parse(value: Any, name: str) -> Any:
        if isinstance(value, bool) or value is None:
            raise ConfigError(f"{name}: expected {kind.__name__}, got {value!r}")
        try:
            parsed = kind(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected {kind.__name__}, got {value!r}") from None
        if minimum is not None and parsed < minimum:
            raise ConfigError(f"{name}: must be at least {minimum}, got {parsed}")
        if maximum is not None and parsed > maximum:
            raise ConfigError(f"{name}: must be at most {maximum}, got {parsed}")
        return parsed

    return parse


def parse_str(value: Any, name: str) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ConfigError(f"{name}: expected a string, got {value!r}")
    return str(value)


def choice(*choices: str) -> Parser:
    def parse(value: Any, name: str) -> str:
        text = parse_str(value, name).strip().lower()
        if text not in choices:
            raise ConfigError(f"{name}: unsupported {value!r}; expected one of {', '.join(choices)}")
        return text

    return parse


def parse_list(value: Any, name: str) -> tuple[str, ...]:
    """A YAML list, or a string separated by ``:``, ``,`` or white space (environment)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part for part in re.split(r"[\s,:]+", value) if part)
    if isinstance(value, (list, tuple)):
        return tuple(parse_str(v, f"{name}[{i}]") for i, v in enumerate(value))
    raise ConfigError(f"{name}: expected a list, got {value!r}")


# How the list parsers' values are written in a variable (docs/configuration.md renders defaults so).
parse_list.separator = ","


def parse_addresses(value: Any, name: str) -> tuple[tuple[str, int], ...]:
    """``host:port`` items (``[v6 address]:port`` too): a YAML list, or one string separated by
    commas or white space (environment)."""
    items = separated_list(None)(value.replace(",", " ") if isinstance(value, str) else value, name)
    addresses = []
    for item in items:
        host, sep, port = item.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name}: expected host:port, got {item!r}")
        addresses.append((host, int(port)))
    return tuple(addresses)


parse_addresses.separator = ","


def separated_list(separator: str | None) -> Parser:
    """A YAML list, or one string whose items are separated by ``separator`` (environment;
    ``None``: white space)."""

    def parse(value: Any, name: str) -> tuple[str, ...]:
        if isinstance(value, str):
            return tuple(part for part in value.split(separator) if part)
        if isinstance(value, (list, tuple)):
            return tuple(parse_str(v, f"{name}[{i}]") for i, v in enumerate(value))
        raise ConfigError(f"{name}: expected a list, got {value!r}")

    parse.separator = separator or " "
    return parse


def parse_module_names(value: Any, name: str) -> tuple[str, ...]:
    # bluesky-httpserver accepts distribution-style names (my-module) for importable ones
    return tuple(module.replace("-", "_") for module in parse_list(value, name))


parse_module_names.separator = ","


def parse_method_timeouts(value: Any, name: str) -> Mapping[str, float]:
    """``{"plans_existing": 5}`` in YAML, ``plans_existing=5,devices_existing=5`` in the environment.
    The names are checked against RE Manager's methods where the timeouts are used
    (:func:`qs_gateway.manager.methods.check_method_names`): config knows no methods."""
    if isinstance(value, str):
        pairs = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            method, sep, seconds = item.partition("=")
            if not sep:
                raise ConfigError(f"{name}: expected 'method=seconds' items, got {item!r}")
            pairs[method.strip()] = seconds.strip()
        value = pairs
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}: expected a mapping of RE Manager method to seconds, got {value!r}")
    return {str(method): number(float, minimum=0.01)(seconds, f"{name}.{method}") for method, seconds in value.items()}


def parse_public_key(value: Any, name: str) -> str | None:
    """A server's z85 CURVE public key; empty means none. Checked now, since ZeroMQ would only
    time out with a wrong one (a wrong key is no error at connect time)."""
    key = parse_str(value, name) if value is not None else ""
    if not key:
        return None
    if not zmq.has("curve"):
        raise ConfigError(f"{name} is set, but this libzmq was built without CURVE support")
    if len(key) != 40:
        raise ConfigError(f"{name} must be a z85-encoded key of 40 characters, got {len(key)}")
    try:
        zmq.curve_public(key.encode("ascii"))
    except (zmq.ZMQError, ValueError, UnicodeEncodeError) as exc:
        raise ConfigError(f"{name} is not a valid z85-encoded CURVE key: {exc}") from None
    return key


# Shorter is refused: under 8 letters and digits a key is a placeholder ("test", "1234"), not a
# secret. From 8 on (62**8, about 2**47 keys) guessing is hopeless against the credential
# throttle (credential_failures_per_address: 1,000 failures an hour per address), so keys that
# bluesky-httpserver accepts and facilities use - its own test suite's APIKEYFORTESTS has 14 -
# keep working; the warning below says what a good key is.
SINGLE_USER_KEY_MIN_LENGTH = 8
SINGLE_USER_KEY_GOOD_LENGTH = 32  # shorter is warned about


def parse_api_key(value: Any, name: str) -> str | None:
    key = parse_str(value, name)
    if not key.isalnum():
        raise ConfigError(f"{name}: the single-user API key must be alphanumeric")
    if len(key) < SINGLE_USER_KEY_MIN_LENGTH:
        raise ConfigError(
            f"{name}: the single-user API key has {len(key)} characters; at least "
            f"{SINGLE_USER_KEY_MIN_LENGTH} are required ({SINGLE_USER_KEY_GOOD_LENGTH} or more recommended, "
            "e.g. from `openssl rand -hex 16`): set a longer key there"
        )
    if len(key) < SINGLE_USER_KEY_GOOD_LENGTH:
        logger.warning(
            "%s: the single-user API key has %d characters; %d or more are recommended",
            name,
            len(key),
            SINGLE_USER_KEY_GOOD_LENGTH,
        )
    return key


def parse_rate_limits(value: Any, name: str) -> str:
    """Tiers of a budget as ``limits`` writes them, ``;``-separated (``5/minute;30/hour``); empty: none."""
    text = parse_str(value, name).strip() if value is not None else ""
    if not text:
        return ""
    try:
        tiers = parse_many(text)
    except ValueError as exc:
        raise ConfigError(f"{name}: expected limits like '5/minute;30/hour', got {value!r} ({exc})") from None
    if any(tier.amount < 1 for tier in tiers):
        raise ConfigError(f"{name}: each limit must allow at least one failure, got {value!r}")
    return text


def parse_list_of_mappings(value: Any, name: str) -> tuple[Mapping[str, Any], ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name} must be a list")
    return tuple(value)


def parse_mapping(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a mapping")
    return dict(value)
