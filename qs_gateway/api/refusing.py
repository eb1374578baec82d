"""Which refused payloads are answered in RE Manager's shape instead of a 400.

bluesky-httpserver checks some things itself and answers 400: unknown keys, missing required
keys, and the few values it (or its client library) checks (fields marked ``CHECKED``, an item
that is not an object, a list of items that is not a list). Every other value it passes on, and
RE Manager refuses it: HTTP 200, ``success: false``. Clients branch on that difference, so the
gateway, which refuses such values before sending anything, answers them the way RE Manager
would have, in the shape of the endpoint's RE Manager method (:mod:`qs_gateway.manager.refusals`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import Schema, fields

from ..exceptions import InvalidPayload
from ..extensions import services
from ..manager import Reply, method
from .payload import MISSING_FIELD, UNKNOWN_FIELD, describe
from .schemas import is_checked


@dataclass
class SplitErrors:
    request: dict[str, Any] = field(default_factory=dict)  # answered 400, as bluesky-httpserver does
    values: dict[str, Any] = field(default_factory=dict)  # RE Manager's to refuse
    items: dict[int, Any] = field(default_factory=dict)  # RE Manager's to refuse, item by item
    items_key: str = ""  # the list the items are in


def _names_the_key(field_: fields.Field | None, messages: Any) -> bool:
    """An unknown key, or a required one that is missing."""
    if field_ is None:
        return True
    required = field_.error_messages.get("required")
    return isinstance(messages, list) and any(m in (UNKNOWN_FIELD, MISSING_FIELD, required) for m in messages)


def _nested(field_: fields.Field) -> bool:
    return isinstance(field_, fields.Nested)


def _of_contents(messages: Any) -> bool:
    """Problems with what an object holds, not with it being an object (``_schema``)."""
    return isinstance(messages, Mapping) and set(messages) != {"_schema"}


def split_errors(errors: Mapping[str, Any], schema: Schema) -> SplitErrors:
    split = SplitErrors()
    for key, messages in errors.items():
        field_ = schema.fields.get(key)
        if _names_the_key(field_, messages) or is_checked(field_):
            split.request[key] = messages
        elif _nested(field_):
            # an item that is not an object is the server's to refuse; what it holds, RE Manager's
            (split.values if _of_contents(messages) else split.request)[key] = messages
        elif isinstance(field_, fields.List) and _nested(field_.inner) and isinstance(messages, Mapping):
            for index, item_messages in messages.items():
                if _of_contents(item_messages) and isinstance(index, int):
                    split.items[index], split.items_key = item_messages, key
                else:
                    split.request.setdefault(key, {})[index] = item_messages
        elif isinstance(field_, fields.List) and _nested(field_.inner):
            split.request[key] = messages  # not a list at all
        else:
            split.values[key] = messages
    return split


def in_managers_shape(
    manager_method: str | None, schema: Schema, submitted: Mapping[str, Any], invalid: InvalidPayload
) -> Reply | None:
    """RE Manager's refusal of ``submitted`` for the problems of ``invalid``, or None when the
    answer is a 400 (or the endpoint sends no RE Manager method)."""
    if manager_method is None or method(manager_method).refusal is None:
        return None
    split = split_errors(invalid.errors, schema)
    if split.request:
        return None
    item_reasons = None
    if split.items and not split.values:
        item_reasons = {index: describe(messages, of_request=False) for index, messages in split.items.items()}
    reason = describe({**split.values, **({split.items_key: split.items} if split.items else {})}, schema)
    return services().manager.refuse(manager_method, submitted, reason, invalid.errors, item_reasons)
