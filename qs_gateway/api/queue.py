"""The plan queue and its items: the payloads, then the endpoints; and two questions about items
that change nothing: would RE Manager accept this item, and what became of that one."""

from __future__ import annotations

from typing import Any

from marshmallow import fields, pre_load
from werkzeug.routing import BaseConverter

from ..extensions import services
from ..manager import Reply
from .declare import Call, Resource
from .schemas import (
    LOCK_KEY_OPENAPI,
    Empty,
    LockKeyOnly,
    PassedOn,
    Payload,
    Position,
    Reload,
    Truthy,
    flag_field,
    identifier,
    item_field,
    lock_key_field,
    uid_field,
)

# -- payloads ----------------------------------------------------------------------------------


class QueueAutostart(Payload):
    enable = Truthy(required=True, allow_none=True)
    lock_key = lock_key_field()


class QueueMode(fields.Field):
    default_error_messages = {"invalid": "Must be an object of queue mode options or 'default'."}
    openapi = {
        "oneOf": [
            {"type": "object", "description": 'The options to change, e.g. `{"loop": true}`'},
            {"type": "string", "enum": ["default"]},
        ]
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if value == "default" or isinstance(value, dict):
            return value
        raise self.make_error("invalid")


class QueueModeSet(Payload):
    """``{"mode": {...} | "default"}``, or the mode's options given directly at the top level."""

    mode = QueueMode(required=True)
    lock_key = lock_key_field()

    # The document shows both shapes: the fields alone cannot say the second.
    openapi = {
        "oneOf": [
            {
                "type": "object",
                "properties": {"mode": QueueMode.openapi, "lock_key": LOCK_KEY_OPENAPI},
                "required": ["mode"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "description": 'The mode\'s options at the top level, e.g. `{"loop": true}`',
                "properties": {"lock_key": LOCK_KEY_OPENAPI},
                "not": {"required": ["mode"]},
            },
        ]
    }

    @pre_load
    def gather_mode(self, data: dict, **kwargs: Any) -> dict:
        if isinstance(data, dict) and "mode" not in data:
            rest = {k: v for k, v in data.items() if k != "lock_key"}
            data = {"mode": rest, **({"lock_key": data["lock_key"]} if "lock_key" in data else {})}
        return data


class Destination(Payload):
    """Where items go relative to another item; RE Manager checks the uids exist."""

    before_uid = uid_field()
    after_uid = uid_field()
    lock_key = lock_key_field()


class Placement(Payload):
    """Where an added item goes. RE Manager prepares the item (a new uid, the user) before it
    places it, and its refusal of a bad place carries that item: the place is its to judge."""

    pos = PassedOn(Position())
    before_uid = PassedOn(identifier())
    after_uid = PassedOn(identifier())
    lock_key = lock_key_field()


class ItemAdd(Placement):
    item = item_field()


class ItemAddBatch(Placement):
    items = fields.List(item_field())


class ItemExecute(Payload):
    item = item_field()
    lock_key = lock_key_field()


class ItemUpdate(Payload):
    item = item_field(required=True)
    replace = flag_field()
    lock_key = lock_key_field()


class ItemGet(Payload):
    pos = Position(allow_none=True)
    uid = uid_field()


class ItemRemove(ItemGet):
    lock_key = lock_key_field()


class ItemRemoveBatch(Payload):
    uids = fields.List(identifier())
    ignore_missing = flag_field()
    lock_key = lock_key_field()


class ItemMove(Destination):
    pos = Position(allow_none=True)
    uid = uid_field()
    pos_dest = Position(allow_none=True)


class ItemMoveBatch(Destination):
    uids = fields.List(identifier())
    pos_dest = Position(allow_none=True)
    reorder = flag_field()


class AnyJson(fields.Raw):
    """Any JSON value: an item is judged by RE Manager's rules, which answer even a non-object."""

    openapi = {"description": "A queue item: `item_type`, `name`, `args`, `kwargs`, `meta`."}


class ItemValidate(Payload):
    item = AnyJson(allow_none=True)


class ItemValidateBatch(Payload):
    items = fields.List(AnyJson(allow_none=True))


class ItemState(Payload):
    uid = identifier(required=True)


# -- endpoints ---------------------------------------------------------------------------------

queue = Resource("queue", __name__)

queue.forward("/queue/get", "queue_get", methods=("GET",), scope="read:queue", schema=Reload)
queue.forward("/queue/clear", "queue_clear", scope="write:queue:edit", schema=LockKeyOnly)
queue.forward("/queue/start", "queue_start", scope="write:queue:control", schema=LockKeyOnly)
queue.forward("/queue/stop", "queue_stop", scope="write:queue:control", schema=LockKeyOnly)
queue.forward("/queue/stop/cancel", "queue_stop_cancel", scope="write:queue:control", schema=LockKeyOnly)
queue.forward("/queue/autostart", "queue_autostart", scope="write:queue:control", schema=QueueAutostart)
queue.forward("/queue/mode/set", "queue_mode_set", scope="write:queue:control", schema=QueueModeSet)

# A retry carrying the first request's Idempotency-Key gets its answer instead of adding again.
ONCE = {"idempotent": True}
queue.forward("/queue/item/add", "queue_item_add", scope="write:queue:edit", schema=ItemAdd, **ONCE)
queue.forward("/queue/item/add/batch", "queue_item_add_batch", scope="write:queue:edit", schema=ItemAddBatch, **ONCE)
queue.forward("/queue/item/execute", "queue_item_execute", scope="write:execute", schema=ItemExecute, **ONCE)
queue.forward("/queue/item/update", "queue_item_update", scope="write:queue:edit", schema=ItemUpdate)
queue.forward("/queue/item/get", "queue_item_get", methods=("GET",), scope="read:queue", schema=ItemGet)
queue.forward("/queue/item/remove", "queue_item_remove", scope="write:queue:edit", schema=ItemRemove)
queue.forward("/queue/item/remove/batch", "queue_item_remove_batch", scope="write:queue:edit", schema=ItemRemoveBatch)
queue.forward("/queue/item/move", "queue_item_move", scope="write:queue:edit", schema=ItemMove)
queue.forward("/queue/item/move/batch", "queue_item_move_batch", scope="write:queue:edit", schema=ItemMoveBatch)


# -- questions about items that change nothing (the gateway answers them from its caches) ---

# Statuses beyond the error contract: a cache miss asks RE Manager (status, lists, queue, history).
MAY_ASK_MANAGER = (408, 502, 503)

# Validating reads the lists of allowed plans and devices, hence their scope.
VALIDATION: dict[str, Any] = {"methods": ("POST",), "scope": "read:resources", "errors": MAY_ASK_MANAGER}


@queue.endpoint("/queue/item/validate", schema=ItemValidate, **VALIDATION)
def item_validate(call: Call) -> dict[str, Any]:
    """Would `queue_item_add` accept this item for the caller's user group? Nothing is queued.

    Answers `{"success", "msg", "errors"}`: `msg` is what RE Manager's refusal would say, `errors`
    maps plan parameters to their problem.
    """
    return services().item_validator.check(call.payload, call.principal.user_group)


@queue.endpoint("/queue/item/validate/batch", schema=ItemValidateBatch, **VALIDATION)
def item_validate_batch(call: Call) -> dict[str, Any]:
    """Would `queue_item_add_batch` accept these items? Nothing is queued.

    Answers `{"success", "msg", "results": [{"success", "msg", "errors"}, ...]}`, one result per item.
    """
    return services().item_validator.check_batch(call.payload, call.principal.user_group)


@queue.endpoint("/queue/item/state", scope="read:queue", schema=ItemState, errors=MAY_ASK_MANAGER)
def item_state(call: Call) -> dict[str, Any]:
    """What became of the item with this uid: queued (and where), running, or how it ended.

    `state` is `queued`, `running`, `completed`, `failed`, `stopped`, `aborted`, `halted` or
    `unknown`; `position`, `exit_status`, `msg`, `time_start` and `time_stop` say more.
    """
    return services().item_states.fate(call.payload["uid"])


# Newer web clients read an item at /queue/item/<uid>. The uid must not be one of the names of
# the endpoints beside it, so that e.g. GET /queue/item/add stays a 405, not a lookup of "add".
_SIBLINGS = sorted({spec.rule.split("/")[3] for spec in queue.specs if spec.rule.startswith("/queue/item/")})


class ItemUidConverter(BaseConverter):
    regex = rf"(?!(?:{'|'.join(_SIBLINGS)})(?![^/]))[^/]+"


queue.record(lambda state: state.app.url_map.converters.setdefault("item_uid", ItemUidConverter))


@queue.endpoint("/queue/item/<item_uid:item_uid>", scope="read:queue", schema=Empty, manager_method="queue_item_get")
def queue_item_by_uid(call: Call) -> Reply:
    """The queue item with this uid (as `/queue/item/get` with `{"uid": ...}`)."""
    return services().manager.read("queue_item_get", {"uid": call.path["item_uid"]})
