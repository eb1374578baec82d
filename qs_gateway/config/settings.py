"""All settings, typed and grouped by concern; each field declares where it is configured
(see :mod:`.options`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .gateway import (
    AuthLimitSettings,
    HttpSettings,
    ManagerSettings,
    NotificationSettings,
    ServingSettings,
    StreamSettings,
    SubmissionSettings,
)
from .redis import RedisSettings
from .shared import AuthSettings, BrowserSettings, ExtensionSettings, PolicySettings, ZmqSettings

# The groups the option loop fills, by the name of their field in Settings.
GROUPS: Mapping[str, type] = MappingProxyType(
    {
        "zmq": ZmqSettings,
        "auth": AuthSettings,
        "extensions": ExtensionSettings,
        "browser": BrowserSettings,
        "serving": ServingSettings,
        "redis": RedisSettings,
        "manager": ManagerSettings,
        "streams": StreamSettings,
        "http": HttpSettings,
        "notifications": NotificationSettings,
        "auth_limits": AuthLimitSettings,
        "submissions": SubmissionSettings,
    }
)


@dataclass(frozen=True)
class Settings:
    zmq: ZmqSettings = ZmqSettings()
    auth: AuthSettings = AuthSettings()
    extensions: ExtensionSettings = ExtensionSettings()
    browser: BrowserSettings = BrowserSettings()
    serving: ServingSettings = ServingSettings()
    redis: RedisSettings = RedisSettings()
    manager: ManagerSettings = ManagerSettings()
    streams: StreamSettings = StreamSettings()
    http: HttpSettings = HttpSettings()
    notifications: NotificationSettings = NotificationSettings()
    auth_limits: AuthLimitSettings = AuthLimitSettings()
    submissions: SubmissionSettings = SubmissionSettings()
    config_path: str | None = None

    def replace(self, **groups: Any) -> Settings:
        """A copy with some settings replaced, given per group: ``replace(streams={"stream_limit": 2})``."""
        changed = {}
        for name, values in groups.items():
            if name not in GROUPS:
                raise TypeError(f"Settings has no group {name!r}")
            changed[name] = dataclasses.replace(getattr(self, name), **values)
        return dataclasses.replace(self, **changed)


__all__ = [
    "AuthLimitSettings",
    "AuthSettings",
    "BrowserSettings",
    "ExtensionSettings",
    "GROUPS",
    "HttpSettings",
    "ManagerSettings",
    "PolicySettings",
    "RedisSettings",
    "ServingSettings",
    "Settings",
    "StreamSettings",
    "SubmissionSettings",
    "ZmqSettings",
]
