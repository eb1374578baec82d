"""Stopping RE Manager, and the endpoints that exist for testing clients."""

from __future__ import annotations

import time

from . import schemas
from .declare import Call, Resource

manager = Resource("manager", __name__)

manager.forward("/manager/stop", "manager_stop", scope="write:manager:stop", schema=schemas.ManagerStop)
# RE Manager never answers this one (its loop freezes until the watchdog restarts it): always 408.
manager.forward("/test/manager/kill", "manager_kill", scope="write:testing", schema=schemas.Empty)


@manager.endpoint("/test/server/sleep", scope="read:testing", schema=schemas.ServerSleep)
def server_sleep(call: Call) -> dict:
    """Answer after `time` seconds (for testing client timeouts); RE Manager is not involved."""
    time.sleep(call.payload["time"])
    return {"success": True, "msg": ""}
