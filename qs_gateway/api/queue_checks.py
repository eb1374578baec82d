"""Questions about queue items that change nothing: would RE Manager accept this item, and
what became of that one. Both are answered by the gateway from cached lists, queue and history.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app
from marshmallow import fields

from ..extensions import services
from ..manager import ManagerClient
from ..manager.item_state import ItemStates
from ..manager.validation import ItemValidator
from .declare import Call, Resource
from .schemas import Payload, identifier

queue_checks = Resource("queue_checks", __name__)


class AnyJson(fields.Raw):
    """Any JSON value: an item is judged by RE Manager's rules, which answer even a non-object."""

    openapi = {"description": "A queue item: `item_type`, `name`, `args`, `kwargs`, `meta`."}


class ItemValidate(Payload):
    item = AnyJson(allow_none=True)


class ItemValidateBatch(Payload):
    items = fields.List(AnyJson(allow_none=True))


class ItemState(Payload):
    uid = identifier(required=True)


# Statuses beyond the error contract: a cache miss asks RE Manager (status, lists, queue, history).
MAY_ASK_MANAGER = (408,)

T = TypeVar("T")


def _per_app(key: str, build: Callable[[ManagerClient], T]) -> T:
    """One ``build(manager)`` per app, made on first use: the indexes and decoded lists it keeps
    live as long as the app's cache does."""
    extensions = current_app.extensions
    found = extensions.get(key)
    if found is None:
        found = extensions.setdefault(key, build(services().manager))
    return found


def _validator() -> ItemValidator:
    return _per_app("qs_gateway.item_validator", ItemValidator)


# Validating reads the lists of allowed plans and devices, hence their scope.
VALIDATION: dict[str, Any] = {"methods": ("POST",), "scope": "read:resources", "errors": MAY_ASK_MANAGER}


@queue_checks.endpoint("/queue/item/validate", schema=ItemValidate, **VALIDATION)
def item_validate(call: Call) -> dict[str, Any]:
    """Would `queue_item_add` accept this item for the caller's user group? Nothing is queued.

    Answers `{"success", "msg", "errors"}`: `msg` is what RE Manager's refusal would say, `errors`
    maps plan parameters to their problem.
    """
    return _validator().check(call.payload, call.principal.user_group)


@queue_checks.endpoint("/queue/item/validate/batch", schema=ItemValidateBatch, **VALIDATION)
def item_validate_batch(call: Call) -> dict[str, Any]:
    """Would `queue_item_add_batch` accept these items? Nothing is queued.

    Answers `{"success", "msg", "results": [{"success", "msg", "errors"}, ...]}`, one result per item.
    """
    return _validator().check_batch(call.payload, call.principal.user_group)


@queue_checks.endpoint("/queue/item/state", scope="read:queue", schema=ItemState, errors=MAY_ASK_MANAGER)
def item_state(call: Call) -> dict[str, Any]:
    """What became of the item with this uid: queued (and where), running, or how it ended.

    `state` is `queued`, `running`, `completed`, `failed`, `stopped`, `aborted`, `halted` or
    `unknown`; `position`, `exit_status`, `msg`, `time_start` and `time_stop` say more.
    """
    return _per_app("qs_gateway.item_states", ItemStates).fate(call.payload["uid"])
