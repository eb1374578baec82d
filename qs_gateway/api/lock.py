"""Locking the environment and/or the queue with a key."""

from __future__ import annotations

from ..extensions import services
from ..manager import Reply
from . import schemas
from .declare import Call, Resource

lock = Resource("lock", __name__)

lock.forward("/lock", "lock", scope="write:lock", schema=schemas.Lock, injects=("user",))
lock.forward("/unlock", "unlock", scope="write:lock", schema=schemas.Unlock)


@lock.endpoint("/lock/info", scope="read:lock", schema=schemas.LockInfo, manager_method="lock_info")
def lock_info(call: Call) -> Reply:
    """Lock state; with `lock_key` RE Manager also checks that key."""
    key = call.payload.get("lock_key")
    if key:
        return services().manager.call("lock_info", {"lock_key": key})
    return services().manager.cached("lock_info", uid_field="lock_info_uid", reload=bool(call.payload.get("reload")))
