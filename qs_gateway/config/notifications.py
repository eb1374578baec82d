"""The ``notifications`` configuration: a list of targets, each a URL that receives events.

YAML (``${VAR}`` expands inside strings, so secrets stay out of the file)::

    notifications:
      - url: https://hooks.example.org/qs
        events: [item_finished, queue_stopped]
        secret: ${QS_HOOK_SECRET}
        format: json
        timeout: 5
        retries: 3

or the same list as JSON in ``QS_GATEWAY_NOTIFICATIONS`` (the file wins, as everywhere).
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .options import TOP_LEVEL, setting
from .parsers import ConfigError, number

NOTIFICATIONS_ENV = "QS_GATEWAY_NOTIFICATIONS"

EVENT_TYPES: tuple[str, ...] = (
    "queue_started",
    "item_started",
    "item_finished",
    "re_paused",
    "queue_stopped",
    "environment_closed",
    "environment_destroyed",
    "manager_unreachable",
    "manager_back",
    # reviewed submissions (docs/agents.md): sent by the worker that served the request
    "submission_added",
    "submission_approved",
    "submission_denied",
)
SUBMISSION_EVENTS = frozenset({"submission_added", "submission_approved", "submission_denied"})
FORMATS = ("json", "slack")
TARGET_KEYS = frozenset({"url", "events", "secret", "format", "timeout", "retries", "name"})

DEFAULT_TIMEOUT = 5.0
MAX_TIMEOUT = 60.0
DEFAULT_RETRIES = 3
MAX_RETRIES = 10


@dataclass(frozen=True)
class Target:
    url: str = field(repr=False)  # may hold a token (Slack's do)
    events: frozenset[str]
    secret: str | None = field(default=None, repr=False)
    format: str = "json"
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    name: str = ""

    @property
    def key(self) -> str:
        """Names the target's delivery progress in Redis: the same URL, format and name
        continue where they were after a restart, whatever else changed."""
        return hashlib.sha256(f"{self.url}\n{self.format}\n{self.name}".encode()).hexdigest()[:16]

    @property
    def shown_url(self) -> str:
        """The URL without what may be a credential (query, user info, path past the first
        segment: a Slack webhook URL holds its token in the path)."""
        parts = urllib.parse.urlsplit(self.url)
        first = parts.path.strip("/").split("/", 1)[0]
        rest = "/…" if parts.path.strip("/").count("/") or parts.query else ""
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/{first}{rest}"

    def wants(self, event_type: str) -> bool:
        return event_type in self.events


def _number(value: Any, where: str, kind: type, low: float, high: float) -> Any:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not numeric or (kind is int and not float(value).is_integer()):
        raise ConfigError(f"{where}: expected {'an integer' if kind is int else 'a number'}, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{where}: must be between {low:g} and {high:g}, got {value!r}")
    return kind(value)


def _url(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a URL, got {value!r}")
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: expected an http:// or https:// URL with a host, got {value!r}")
    if parts.fragment:
        raise ConfigError(f"{where}: a URL with a #fragment cannot be posted to")
    return value


def _events(value: Any, where: str) -> frozenset[str]:
    if value is None:
        return frozenset(EVENT_TYPES)
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{where}: expected a non-empty list of event types, got {value!r}")
    unknown = [v for v in value if v not in EVENT_TYPES]
    if unknown:
        raise ConfigError(f"{where}: unknown event type(s) {unknown}; known: {', '.join(EVENT_TYPES)}")
    return frozenset(value)


def _target(raw: Any, where: str) -> Target:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping with at least 'url', got {raw!r}")
    unknown = sorted(set(raw) - TARGET_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(sorted(TARGET_KEYS))}")
    if "url" not in raw:
        raise ConfigError(f"{where}.url: required")
    secret = raw.get("secret")
    if secret is not None and (not isinstance(secret, str) or not secret):
        raise ConfigError(f"{where}.secret: expected a non-empty string")
    fmt = raw.get("format", "json")
    if fmt not in FORMATS:
        raise ConfigError(f"{where}.format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    name = raw.get("name", "")
    if not isinstance(name, str):
        raise ConfigError(f"{where}.name: expected a string, got {name!r}")
    url = _url(raw["url"], f"{where}.url")
    return Target(
        url=url,
        events=_events(raw.get("events"), f"{where}.events"),
        secret=secret,
        format=fmt,
        timeout=_number(raw.get("timeout", DEFAULT_TIMEOUT), f"{where}.timeout", float, 0.1, MAX_TIMEOUT),
        retries=_number(raw.get("retries", DEFAULT_RETRIES), f"{where}.retries", int, 0, MAX_RETRIES),
        name=name or urllib.parse.urlsplit(url).hostname or "",
    )


def parse_notifications(raw: Any, where: str = "notifications") -> tuple[Target, ...]:
    """The targets of a ``notifications`` list (``None``: none; a string: the list as JSON, from
    the environment); ConfigError names the key."""
    if raw is None or raw == "":
        return ()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(raw, (list, tuple)):
        raise ConfigError(f"{where}: expected a list of targets, got {raw!r}")
    targets = tuple(_target(item, f"{where}[{i}]") for i, item in enumerate(raw))
    keys = [t.key for t in targets]
    for i, key in enumerate(keys):
        if key in keys[:i]:
            raise ConfigError(f"{where}[{i}]: the same url, format and name as an earlier target; give it a 'name'")
    return targets


@dataclass(frozen=True)
class NotificationSettings:
    """Notifications

    Who is told what RE Manager does; see [Notifications](notifications.md). The targets themselves are
    outside the `gateway:` section.
    """

    targets: tuple[Target, ...] = setting(
        "notifications",
        NOTIFICATIONS_ENV,
        (),
        parse_notifications,
        "URLs that are told what RE Manager does (they receive its events): a YAML list of targets, each with "
        "its events, secret and format; in the variable the same list as JSON (the file wins). See "
        "[Notifications](notifications.md).",
        section=TOP_LEVEL,
    )
    manager_silence_seconds: float = setting(
        "manager_silence_seconds",
        "QS_GATEWAY_MANAGER_SILENCE_SECONDS",
        10.0,
        number(float, minimum=2.0),
        "Seconds without a status from RE Manager after which the `manager_unreachable` notification is sent.",
        unit="s",
    )
