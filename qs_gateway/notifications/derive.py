"""Events from RE Manager's published status: pure functions, no Redis, no sockets.

The ingest leader reads each status from the info stream in order and calls :func:`step` with
the :class:`State` of the previous one; the new state and the events are then stored together
(see :mod:`.store`), so whichever worker leads next continues from exactly that state.

Event ids are stable and unique: ``item_started:<item_uid>`` and ``item_finished:<item_uid>``
(RE Manager gives every run of an item its own uid); the other events are changes of the status
and are named by the Redis stream id of the status message in which the change was first seen
(``queue_stopped:1718000000123-0``); ``manager_unreachable`` by the last status before the
silence.

Statuses published while no worker subscribed (a takeover) are missing from the stream. What
finished meanwhile is still found in the history: an item that started and finished unseen gets
both its events, and a queue that ran unseen (items finished, the queue seen stopped before and
after) gets ``queue_started`` and ``queue_stopped`` around them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ..streaming.keys import parse_id

QUEUE_RUNNING_STATES = frozenset({"starting_queue", "executing_queue", "paused"})
STOPPED_BY_REQUEST = frozenset({"stopped", "aborted", "halted"})
STATUS_SUMMARY_FIELDS = (
    "manager_state",
    "re_state",
    "items_in_queue",
    "items_in_history",
    "running_item_uid",
    "worker_environment_exists",
)


@dataclass(frozen=True)
class State:
    """What the derivation remembers of the statuses seen so far."""

    cursor: str  # stream id of the last status taken into account
    seen_ms: int  # when it was published, by Redis's clock (its stream id)
    reachable: bool = True
    manager_state: str | None = None
    queue_running: bool = False
    running_item_uid: str | None = None
    env_exists: bool = False
    env_destroying: bool = False  # "destroying_environment" seen since the environment opened
    stop_pending_seen: bool = False  # queue_stop_pending seen during the current run
    run_last_exit: str | None = None  # exit status of the last item finished in the current run
    history_uid: str | None = None
    history_tail_uid: str | None = None  # the last history item taken into account
    history_tail_stop: float | None = None  # ... and its time_stop

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, data: bytes | str) -> "State":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in orjson.loads(data).items() if k in fields})


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    time: float  # seconds since the epoch, by Redis's clock
    data: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "time": self.time, "data": dict(self.data)}


def stream_ms(entry_id: str) -> int:
    return max(parse_id(entry_id)[0], 0)


def needs_history(state: State | None, status: Mapping[str, Any]) -> bool:
    return state is None or status.get("plan_history_uid") != state.history_uid


def needs_running_item(state: State | None, status: Mapping[str, Any]) -> bool:
    uid = status.get("running_item_uid")
    return state is not None and bool(uid) and uid != state.running_item_uid


def _history_tail(history: Sequence[Mapping[str, Any]]) -> tuple[str | None, float | None]:
    if not history:
        return None, None
    return history[-1].get("item_uid"), _time_stop(history[-1])


def _time_stop(item: Mapping[str, Any]) -> float:
    stop = (item.get("result") or {}).get("time_stop")
    return float(stop) if isinstance(stop, (int, float)) else 0.0


def known_history(
    status: Mapping[str, Any], history: Sequence[Mapping[str, Any]], history_uid: Any
) -> tuple[Sequence[Mapping[str, Any]], Any]:
    """The part of a history (fetched after ``status`` was published, as version ``history_uid``)
    that the status refers to, and the history uid to remember.

    The same uid: all of it (the status's ``items_in_history`` may lag: RE Manager changes the
    uid before the count). A later version: the items the status counts (the history only grows
    until cleared; later items belong to later statuses), and no uid if some were left out, so
    that the next status fetches the history again.
    """
    if history_uid == status.get("plan_history_uid"):
        return history, history_uid
    count = status.get("items_in_history")
    if not isinstance(count, int) or count < 0 or count >= len(history):
        return history, status.get("plan_history_uid")
    return history[:count], None


def initial(entry_id: str, status: Mapping[str, Any], history: Sequence[Mapping[str, Any]], history_uid: Any) -> State:
    """The state at the first status ever seen: what is, with no events for it."""
    history, history_uid = known_history(status, history, history_uid)
    tail_uid, tail_stop = _history_tail(history)
    return State(
        cursor=entry_id,
        seen_ms=stream_ms(entry_id),
        manager_state=status.get("manager_state"),
        queue_running=status.get("manager_state") in QUEUE_RUNNING_STATES,
        running_item_uid=status.get("running_item_uid"),
        env_exists=bool(status.get("worker_environment_exists")),
        env_destroying=status.get("manager_state") == "destroying_environment",
        stop_pending_seen=bool(status.get("queue_stop_pending")),
        history_uid=history_uid,
        history_tail_uid=tail_uid,
        history_tail_stop=tail_stop,
    )


def new_history_items(state: State, history: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The history items that finished after the state's tail."""
    if state.history_tail_uid is None:
        return list(history)  # the history was empty
    for index in range(len(history) - 1, -1, -1):
        if history[index].get("item_uid") == state.history_tail_uid:
            return list(history[index + 1 :])
    # The tail is gone (the history was cleared): what finished after it is new.
    after = state.history_tail_stop or 0.0
    return [item for item in history if _time_stop(item) > after]


def stop_reason(last_exit: str | None, stop_pending: bool, items_in_queue: Any) -> str:
    if last_exit == "failed":
        return "failure"
    if stop_pending or last_exit in STOPPED_BY_REQUEST:
        return "stop_requested"
    if items_in_queue == 0:
        return "empty"
    return "stop_requested"  # a queue_stop instruction, or a stop the gateway did not see asked


def _without_result(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k != "result"}


def step(
    state: State,
    entry_id: str,
    status: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]] | None = None,
    history_uid: Any = None,
    running_item: Mapping[str, Any] | None = None,
) -> tuple[State, list[Event]]:
    """The events between ``state`` and ``status`` (published as stream entry ``entry_id``).

    ``history`` is RE Manager's history, fetched when :func:`needs_history` says so (else
    ``None``), and its ``plan_history_uid``; ``running_item`` the running item, fetched when
    :func:`needs_running_item` says so.
    """
    time = stream_ms(entry_id) / 1000
    summary = {name: status.get(name) for name in STATUS_SUMMARY_FIELDS}
    events: list[Event] = []

    def emit(kind: str, key: str, **data: Any) -> None:
        events.append(Event(f"{kind}:{key}", kind, time, {**data, "status": summary}))

    manager_state = status.get("manager_state")
    running = manager_state in QUEUE_RUNNING_STATES
    if history is not None:
        history, history_uid = known_history(status, history, history_uid)
    finished = new_history_items(state, history) if history is not None else []
    finished_uids = {item.get("item_uid") for item in finished}
    ran_unseen = bool(finished) and not state.queue_running and not running
    stop_pending, last_exit = state.stop_pending_seen, state.run_last_exit

    if not state.reachable:
        emit("manager_back", entry_id)
    if (running and not state.queue_running) or ran_unseen:
        emit("queue_started", entry_id)
        stop_pending, last_exit = False, None
    for item in finished:
        uid = item.get("item_uid")
        if uid != state.running_item_uid:  # else its start was seen and sent already
            emit("item_started", uid, item=_without_result(item))
        result = item.get("result") or {}
        emit("item_finished", uid, item=dict(item), exit_status=result.get("exit_status"), msg=result.get("msg"))
        last_exit = result.get("exit_status")
    running_uid = status.get("running_item_uid")
    if running_uid and running_uid != state.running_item_uid and running_uid not in finished_uids:
        item = running_item if running_item and running_item.get("item_uid") == running_uid else {}
        emit("item_started", running_uid, item=dict(item) or {"item_uid": running_uid})
    if manager_state == "paused" and state.manager_state != "paused":
        emit("re_paused", entry_id, item_uid=running_uid)
    stop_pending = stop_pending or bool(status.get("queue_stop_pending"))
    if (state.queue_running or ran_unseen) and not running:
        reason = stop_reason(last_exit, stop_pending, status.get("items_in_queue"))
        emit("queue_stopped", entry_id, reason=reason, exit_status=last_exit)
        stop_pending = False
    env_exists = bool(status.get("worker_environment_exists"))
    destroying = state.env_destroying or manager_state == "destroying_environment"
    if state.env_exists and not env_exists:
        emit("environment_destroyed" if destroying else "environment_closed", entry_id)

    if history is not None:
        tail_uid, tail_stop = _history_tail(history)
        new_history_uid = history_uid
    else:
        tail_uid, tail_stop, new_history_uid = state.history_tail_uid, state.history_tail_stop, state.history_uid
    new_state = State(
        cursor=entry_id,
        seen_ms=stream_ms(entry_id),
        reachable=True,
        manager_state=manager_state,
        queue_running=running,
        running_item_uid=running_uid,
        env_exists=env_exists,
        env_destroying=destroying and env_exists,
        stop_pending_seen=stop_pending,
        run_last_exit=last_exit,
        history_uid=new_history_uid,
        history_tail_uid=tail_uid,
        history_tail_stop=tail_stop,
    )
    return new_state, events


def silence(state: State, now_ms: int, watching_since_ms: int, silence_ms: int) -> tuple[State, list[Event]]:
    """``manager_unreachable`` once RE Manager has published nothing for ``silence_ms``, counted
    from its last status or from when this worker began to listen, whichever is later (a
    takeover is not a silence of RE Manager)."""
    if not state.reachable or now_ms - max(state.seen_ms, watching_since_ms) < silence_ms:
        return state, []
    event = Event(
        f"manager_unreachable:{state.cursor}",
        "manager_unreachable",
        now_ms / 1000,
        {"last_status_time": state.seen_ms / 1000, "silent_seconds": round((now_ms - state.seen_ms) / 1000, 3)},
    )
    return dataclasses.replace(state, reachable=False), [event]
