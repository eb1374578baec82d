"""``/api/notifications/log``: what the gateway sent to the notification targets, and the answers."""

from __future__ import annotations

from ..extensions import services
from ..notifications.store import LOG_LENGTH
from .declare import Call, Resource
from .schemas import Int64, Payload

notifications = Resource("notifications", __name__)


class NotificationLog(Payload):
    limit = Int64(minimum=1, maximum=LOG_LENGTH, load_default=100)


@notifications.endpoint("/notifications/log", scope="admin:notifications", schema=NotificationLog)
def notification_log(call: Call) -> dict:
    """The newest `limit` delivery attempts (default 100), newest first: event, target, outcome, answer."""
    return {"success": True, "msg": "", "entries": services().notifications.read_log(call.payload["limit"])}
