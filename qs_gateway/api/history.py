"""The history of executed items."""

from __future__ import annotations

from ..extensions import services
from ..manager import Reply
from . import schemas
from .declare import Call, Resource

history = Resource("history", __name__)


@history.endpoint(
    "/history/get",
    scope="read:history",
    schema=schemas.Reload,
    manager_method="history_get",
    etag="plan_history_uid",
)
def history_get(call: Call) -> Reply:
    """Executed items (cached until `plan_history_uid` changes)."""
    return services().manager.cached(
        "history_get", uid_field="plan_history_uid", reload=bool(call.payload.get("reload"))
    )


history.forward("/history/clear", "history_clear", scope="write:history:edit", schema=schemas.HistoryClear)
