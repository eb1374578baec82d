"""The plan queue and its items."""

from __future__ import annotations

from ..extensions import services
from ..manager import Reply
from . import schemas
from .declare import Call, Resource

queue = Resource("queue", __name__)

IDENTITY = ("user", "user_group")


@queue.endpoint(
    "/queue/get", scope="read:queue", schema=schemas.Reload, manager_method="queue_get", etag="plan_queue_uid"
)
def queue_get(call: Call) -> Reply:
    """The queue and the running item (cached until `plan_queue_uid` changes)."""
    return services().manager.cached("queue_get", uid_field="plan_queue_uid", reload=bool(call.payload.get("reload")))


queue.forward("/queue/clear", "queue_clear", scope="write:queue:edit", schema=schemas.LockKeyOnly)
queue.forward("/queue/start", "queue_start", scope="write:queue:control", schema=schemas.LockKeyOnly)
queue.forward("/queue/stop", "queue_stop", scope="write:queue:control", schema=schemas.LockKeyOnly)
queue.forward("/queue/stop/cancel", "queue_stop_cancel", scope="write:queue:control", schema=schemas.LockKeyOnly)
queue.forward("/queue/autostart", "queue_autostart", scope="write:queue:control", schema=schemas.QueueAutostart)
queue.forward("/queue/mode/set", "queue_mode_set", scope="write:queue:control", schema=schemas.QueueModeSet)

queue.forward("/queue/item/add", "queue_item_add", scope="write:queue:edit", schema=schemas.ItemAdd, injects=IDENTITY)
queue.forward(
    "/queue/item/add/batch",
    "queue_item_add_batch",
    scope="write:queue:edit",
    schema=schemas.ItemAddBatch,
    injects=IDENTITY,
)
queue.forward(
    "/queue/item/execute", "queue_item_execute", scope="write:execute", schema=schemas.ItemExecute, injects=IDENTITY
)
queue.forward(
    "/queue/item/update", "queue_item_update", scope="write:queue:edit", schema=schemas.ItemUpdate, injects=IDENTITY
)
queue.forward("/queue/item/get", "queue_item_get", methods=("GET",), scope="read:queue", schema=schemas.ItemGet)
queue.forward("/queue/item/remove", "queue_item_remove", scope="write:queue:edit", schema=schemas.ItemRemove)
queue.forward(
    "/queue/item/remove/batch", "queue_item_remove_batch", scope="write:queue:edit", schema=schemas.ItemRemoveBatch
)
queue.forward("/queue/item/move", "queue_item_move", scope="write:queue:edit", schema=schemas.ItemMove)
queue.forward("/queue/item/move/batch", "queue_item_move_batch", scope="write:queue:edit", schema=schemas.ItemMoveBatch)
