"""Stopping RE Manager, and the endpoints that exist for testing clients (``testing``)."""

from __future__ import annotations

import threading
import time

from marshmallow import fields, validate

from ..exceptions import ServiceUnavailable
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

# For clients' test suites; ``test_endpoints`` switches them off (see qs_gateway.app.register_blueprints).
testing = Resource("testing", __name__)

# RE Manager never answers this one (its loop freezes until the watchdog restarts it): always 408.
testing.forward("/test/manager/kill", "manager_kill", scope="write:testing", schema=Empty)


class _OneSleeper:
    """At most one sleep per worker process at a time: a reader (observers have ``read:testing``)
    must not be able to hold the worker's threads by asking for many."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0

    def sleep(self, seconds: float) -> None:
        if not self._lock.acquire(blocking=False):
            raise ServiceUnavailable(
                "Another test sleep is running in this worker: one at a time", self._until - time.monotonic()
            )
        try:
            self._until = time.monotonic() + seconds
            time.sleep(seconds)
        finally:
            self._lock.release()


_sleeper = _OneSleeper()


@testing.endpoint("/test/server/sleep", scope="read:testing", schema=ServerSleep, errors=(503,))
def server_sleep(call: Call) -> dict:
    """Answer after `time` seconds (for testing client timeouts); RE Manager is not involved. One
    sleep at a time per worker: others are answered 503 with `Retry-After`."""
    _sleeper.sleep(call.payload["time"])
    return {"success": True, "msg": ""}
