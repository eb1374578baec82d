"""What became of a queue item: queued, running, or how it ended, found by its uid.

Answered from the cached ``queue_get`` and ``history_get`` replies. Each is indexed by item uid
once per ``plan_queue_uid`` / ``plan_history_uid``, so a script polling many items costs a
status lookup and two dictionary lookups per question, and RE Manager nothing.

RE Manager moves a finished item to the history with ``result.exit_status`` (set by
``plan_queue_ops`` from the worker's plan state): ``completed``; ``unknown`` when RE Manager
restarted while it ran; ``stopped`` (counted as success); ``failed``, ``aborted`` and ``halted``,
after which a copy of the item with a *new* uid goes back to the front of the queue. The uid
asked about is therefore found in one place only: the queue, the running item or the history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .client import ManagerClient
from .methods import METHODS
from .reply import Reply

# exit_status -> state; any other exit_status is reported as it is, with the state "unknown"
EXIT_STATES = {
    "completed": "completed",
    "failed": "failed",
    "stopped": "stopped",
    "aborted": "aborted",
    "halted": "halted",
    "unknown": "unknown",
}
NOT_FOUND = "No item with this uid is in the queue, running or in the history."


@dataclass(frozen=True)
class QueueIndex:
    uid: Any = None  # plan_queue_uid of the reply indexed
    positions: Mapping[str, int] = field(default_factory=dict)  # item uid -> index, 0 at the front
    running_uid: str | None = None
    running_since: Any = None  # the running item's properties.time_start

    @classmethod
    def of(cls, reply: Mapping[str, Any]) -> QueueIndex:
        items = reply.get("items") or []
        positions = {}
        for position, item in enumerate(items):
            uid = item.get("item_uid") if isinstance(item, dict) else None
            if isinstance(uid, str):
                positions.setdefault(uid, position)
        running = reply.get("running_item") or {}
        properties = running.get("properties") or {}
        return cls(
            uid=reply.get("plan_queue_uid"),
            positions=positions,
            running_uid=running.get("item_uid"),
            running_since=properties.get("time_start") if isinstance(properties, dict) else None,
        )


@dataclass(frozen=True)
class HistoryIndex:
    uid: Any = None  # plan_history_uid of the reply indexed
    results: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # item uid -> its result

    @classmethod
    def of(cls, reply: Mapping[str, Any]) -> HistoryIndex:
        results = {}
        for item in reply.get("items") or []:
            uid = item.get("item_uid") if isinstance(item, dict) else None
            if isinstance(uid, str):
                result = item.get("result")
                results[uid] = result if isinstance(result, dict) else {}  # the latest entry wins
        return cls(uid=reply.get("plan_history_uid"), results=results)


def fate(uid: str, queue: QueueIndex, history: HistoryIndex) -> dict[str, Any]:
    """The answer about ``uid``: its state, and the position or the result where there is one."""
    answer: dict[str, Any] = {
        "success": True,
        "msg": "",
        "uid": uid,
        "state": "unknown",
        "position": None,
        "exit_status": None,
        "time_start": None,
        "time_stop": None,
    }
    result = history.results.get(uid)
    if result is not None:  # finished: a finished item is never queued again under its uid
        exit_status = result.get("exit_status")
        answer.update(
            state=EXIT_STATES.get(exit_status, "unknown") if isinstance(exit_status, str) else "unknown",
            exit_status=exit_status,
            msg=result.get("msg") or "",
            time_start=result.get("time_start"),
            time_stop=result.get("time_stop"),
        )
    elif uid == queue.running_uid:
        answer.update(state="running", time_start=queue.running_since)
    elif uid in queue.positions:
        answer.update(state="queued", position=queue.positions[uid])
    else:
        answer["msg"] = NOT_FOUND
    return answer


class ItemStates:
    """The fate of items by uid, from indexes rebuilt only when the queue or history changed."""

    _SOURCES: Mapping[str, type[QueueIndex] | type[HistoryIndex]] = {
        "queue_get": QueueIndex,
        "history_get": HistoryIndex,
    }

    def __init__(self, manager: ManagerClient) -> None:
        self._manager = manager
        self._indexes: dict[str, Any] = {}  # method -> the index of its latest reply

    def fate(self, uid: str) -> dict[str, Any]:
        status = self._manager.status()
        return fate(uid, self._index("queue_get", status), self._index("history_get", status))

    def _index(self, method: str, status: Reply) -> Any:
        uid_field, kind = METHODS[method].guard, self._SOURCES[method]
        current = status.get(uid_field)
        index = self._indexes.get(method)
        if index is not None and current is not None and index.uid == current:
            return index
        reply = self._manager.read(method)
        if not reply.succeeded:
            return kind()
        if index is None or index.uid is None or reply.peek(uid_field) != index.uid:
            index = self._indexes[method] = kind.of(reply.data)
        return index
