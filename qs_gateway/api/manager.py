"""Stopping RE Manager, and the endpoints that exist for testing clients."""

from __future__ import annotations

import time

from marshmallow import fields, validate

from .declare import Call, Resource
from .schemas import CHECKED, Empty, Payload


class ManagerStop(Payload):
    option = fields.String(allow_none=True, validate=validate.OneOf(("safe_on", "safe_off")))


class ServerSleep(Payload):
    time = fields.Float(
        required=True,
        validate=validate.Range(min=0, max=300),
        error_messages={"required": "The required parameter 'time' is missing in the API call"},
        metadata=CHECKED,
    )


manager = Resource("manager", __name__)

manager.forward("/manager/stop", "manager_stop", scope="write:manager:stop", schema=ManagerStop)
# RE Manager never answers this one (its loop freezes until the watchdog restarts it): always 408.
manager.forward("/test/manager/kill", "manager_kill", scope="write:testing", schema=Empty)


@manager.endpoint("/test/server/sleep", scope="read:testing", schema=ServerSleep)
def server_sleep(call: Call) -> dict:
    """Answer after `time` seconds (for testing client timeouts); RE Manager is not involved."""
    time.sleep(call.payload["time"])
    return {"success": True, "msg": ""}
