"""Notifications: events derived from RE Manager's status, delivered to configured URLs.

``derive`` (pure), ``store`` (Redis), ``delivery`` and ``sending`` (per target, over HTTP),
``service`` (the threads of a worker); the configuration section is :mod:`qs_gateway.config.notifications`.
"""

from ..config.notifications import EVENT_TYPES, Target, parse_notifications
from .service import Notifier
from .store import NotificationStore

__all__ = ["EVENT_TYPES", "NotificationStore", "Notifier", "Target", "parse_notifications"]
