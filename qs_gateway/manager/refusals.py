"""How RE Manager refuses each method, and the same refusal built by the gateway.

RE Manager answers a request it cannot carry out with ``success: false``, a ``msg`` that starts
with the method's own words (``Failed to add an item: ``, ``Error: ``, ...), and the rest of its
reply filled with failure values (``qsize: null``, ``item: {}``, ...). Clients branch on that
shape: bluesky-queueserver-api raises ``RequestFailedError`` for it, but ``HTTPClientError`` for
a 4xx. So when the gateway refuses a value before sending it (a value bluesky-httpserver would
have passed on for RE Manager to refuse), it answers in exactly this shape, with the reason in
readable words and the field-level ``errors`` as an extra key.

The texts and failure values are RE Manager's (bluesky_queueserver/manager/manager.py, the
``_<method>_handler`` functions), in its key order.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Submitted:
    """A failure value that is what the caller sent for ``param`` (``missing`` if nothing)."""

    param: str
    missing: Any = None


@dataclass(frozen=True)
class FromStatus:
    """A failure value that RE Manager fills from its state: the status field ``name``."""

    name: str


@dataclass(frozen=True)
class ItemBatch:
    """A batch whose items RE Manager judges one by one: ``results`` has one entry per
    submitted item, the refused ones saying why after ``item_prefix``; ``summary`` is the
    reply's ``msg``; ``items`` is what was submitted."""

    param: str
    item_prefix: str
    summary: str  # formatted with ``failed`` and ``total``


@dataclass(frozen=True)
class Refusal:
    prefix: str  # RE Manager's words before the reason
    fields: Mapping[str, Any] = field(default_factory=dict)  # the rest of its failing reply
    batch: ItemBatch | None = None


_ITEM = Submitted("item")
_TASK = {"task_uid": None}
_LOCK = {"lock_info": {}, "lock_info_uid": None}
ERROR = "Error: "

REFUSALS: Mapping[str, Refusal] = MappingProxyType(
    {
        "config_get": Refusal("", {"config": {}}),
        "plans_allowed": Refusal("", {"plans_allowed": {}, "plans_allowed_uid": None}),
        "plans_existing": Refusal("", {"plans_existing": {}, "plans_existing_uid": None}),
        "devices_allowed": Refusal("", {"devices_allowed": {}, "devices_allowed_uid": None}),
        "devices_existing": Refusal("", {"devices_existing": {}, "devices_existing_uid": None}),
        "permissions_reload": Refusal(ERROR),
        "permissions_set": Refusal(ERROR),
        "permissions_get": Refusal(ERROR, {"user_group_permissions": {}}),
        "queue_get": Refusal(ERROR, {"items": [], "running_item": {}, "plan_queue_uid": ""}),
        "queue_mode_set": Refusal("Failed to set queue mode: "),
        "queue_item_add": Refusal("Failed to add an item: ", {"qsize": None, "item": _ITEM}),
        "queue_item_add_batch": Refusal(
            "Failed to add an item: ",
            {"qsize": FromStatus("items_in_queue"), "items": [], "results": []},
            batch=ItemBatch(
                "items",
                item_prefix="Failed to add a plan: ",
                summary="Failed to add all items: validation of {failed} out of {total} submitted items failed",
            ),
        ),
        # RE Manager words a failed update as a failed add, and reports a queue size of 0
        "queue_item_update": Refusal("Failed to add an item: ", {"qsize": 0, "item": _ITEM}),
        "queue_item_get": Refusal("Failed to get an item: ", {"item": {}}),
        "queue_item_remove": Refusal("Failed to remove an item: ", {"item": {}, "qsize": None}),
        "queue_item_remove_batch": Refusal("Failed to remove a batch of items: ", {"items": [], "qsize": None}),
        "queue_item_move": Refusal("Failed to move the item: ", {"item": {}, "qsize": None}),
        "queue_item_move_batch": Refusal("Failed to move the batch of items: ", {"qsize": None, "items": []}),
        "queue_item_execute": Refusal("Failed to start execution of the item: ", {"qsize": None, "item": _ITEM}),
        "queue_clear": Refusal(ERROR),
        "queue_start": Refusal(ERROR),
        "queue_stop": Refusal(ERROR),
        "queue_stop_cancel": Refusal(ERROR),
        "queue_autostart": Refusal(ERROR),
        "history_get": Refusal(ERROR, {"items": [], "plan_history_uid": ""}),
        "history_clear": Refusal(ERROR),
        "environment_open": Refusal(ERROR),
        "environment_close": Refusal(ERROR),
        "environment_destroy": Refusal(ERROR),
        "environment_update": Refusal(ERROR, _TASK),
        "script_upload": Refusal(ERROR, _TASK),
        "function_execute": Refusal(ERROR, {"item": _ITEM, **_TASK}),
        "task_status": Refusal(ERROR, {"task_uid": Submitted("task_uid"), "status": None}),
        "task_result": Refusal(ERROR, {"task_uid": Submitted("task_uid"), "status": None, "result": None}),
        "kernel_interrupt": Refusal(ERROR),
        "re_pause": Refusal(ERROR),
        "re_resume": Refusal(ERROR),
        "re_stop": Refusal(ERROR),
        "re_abort": Refusal(ERROR),
        "re_halt": Refusal(ERROR),
        "re_runs": Refusal(ERROR, {"run_list": [], "run_list_uid": ""}),
        "re_metadata": Refusal(ERROR, {"re_metadata": {}}),
        "lock": Refusal(ERROR, _LOCK),
        "unlock": Refusal(ERROR, _LOCK),
        "lock_info": Refusal(ERROR, _LOCK),
        "manager_stop": Refusal(ERROR),
    }
)


def refusal_reply(
    refusal: Refusal,
    params: Mapping[str, Any],
    reason: str,
    errors: Mapping[str, Any],
    status: Mapping[str, Any] | None = None,
    item_reasons: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """RE Manager's failing reply to ``params``, refused for ``reason``.

    ``item_reasons`` (a batch's items that are refused, by index) gives the batch form: one
    result per submitted item. ``status`` supplies the failure values RE Manager takes from its
    state.
    """
    batch = refusal.batch
    if batch is not None and item_reasons:
        submitted = params.get(batch.param)
        items = list(submitted) if isinstance(submitted, Sequence) else []
        results = [
            {"success": False, "msg": batch.item_prefix + item_reasons[index]}
            if index in item_reasons
            else {"success": True, "msg": ""}
            for index in range(len(items))
        ]
        # RE Manager's summary first (clients match it), then which items and why
        msg = f"{batch.summary.format(failed=len(item_reasons), total=len(items))}. {reason}"
        overrides: dict[str, Any] = {"items": copy.deepcopy(items), "results": results}
    else:
        msg, overrides = refusal.prefix + reason, {}
    reply: dict[str, Any] = {"success": False, "msg": msg}
    for name, value in refusal.fields.items():
        if name in overrides:
            reply[name] = overrides[name]
        elif isinstance(value, Submitted):
            reply[name] = copy.deepcopy(params.get(value.param, value.missing))
        elif isinstance(value, FromStatus):
            reply[name] = (status or {}).get(value.name)
        else:
            reply[name] = copy.deepcopy(value)
    reply["errors"] = errors
    return reply


def needs_status(refusal: Refusal) -> bool:
    return any(isinstance(value, FromStatus) for value in refusal.fields.values())
