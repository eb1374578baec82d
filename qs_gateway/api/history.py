"""The history of executed items."""

from __future__ import annotations

from .declare import Resource
from .schemas import Int64, Payload, Reload, lock_key_field, uid_field


class HistoryClear(Payload):
    size = Int64(minimum=0, allow_none=True)
    item_uid = uid_field()
    lock_key = lock_key_field()


history = Resource("history", __name__)

history.forward("/history/get", "history_get", methods=("GET",), scope="read:history", schema=Reload)
history.forward("/history/clear", "history_clear", scope="write:history:edit", schema=HistoryClear)
