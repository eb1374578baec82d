"""RE Manager's request methods as the gateway uses them: which only read, which change state.

A read may be repeated and may be served from a cache. Anything else is a write: it is sent at
most once, and the gateway forgets the cached status once it has been sent.
"""

from __future__ import annotations

READ_METHODS = frozenset(
    {
        "status",
        "ping",
        "config_get",
        "queue_get",
        "queue_item_get",
        "history_get",
        "plans_allowed",
        "devices_allowed",
        "plans_existing",
        "devices_existing",
        "permissions_get",
        "re_runs",
        "re_metadata",
        "task_status",
        "task_result",
        "lock_info",
    }
)

WRITE_METHODS = frozenset(
    {
        "queue_start",
        "queue_stop",
        "queue_stop_cancel",
        "queue_clear",
        "queue_autostart",
        "queue_mode_set",
        "queue_item_add",
        "queue_item_add_batch",
        "queue_item_update",
        "queue_item_remove",
        "queue_item_remove_batch",
        "queue_item_move",
        "queue_item_move_batch",
        "queue_item_execute",
        "history_clear",
        "environment_open",
        "environment_close",
        "environment_destroy",
        "environment_update",
        "re_pause",
        "re_resume",
        "re_stop",
        "re_abort",
        "re_halt",
        "kernel_interrupt",
        "permissions_reload",
        "permissions_set",
        "script_upload",
        "function_execute",
        "lock",
        "unlock",
        "manager_stop",
        "manager_kill",
    }
)

ALL_METHODS = READ_METHODS | WRITE_METHODS


def is_read(method: str) -> bool:
    if method not in ALL_METHODS:
        raise KeyError(f"unknown RE Manager method {method!r}")
    return method in READ_METHODS
