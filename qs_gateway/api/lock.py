"""Locking the environment and/or the queue with a key."""

from __future__ import annotations

from typing import Any

from marshmallow import fields, post_load, validate

from .declare import Resource
from .schemas import (
    CHECKED,
    IDENTIFIER_MAX_LENGTH,
    TEXT_MAX_LENGTH,
    Payload,
    Truthy,
    lock_key_field,
    reload_field,
)

LOCK_KEY_NOT_SET = "Failed to format the '{}' request: Lock key is not set"  # bluesky-queueserver-api's words


def required_lock_key(request: str) -> fields.Field:
    message = LOCK_KEY_NOT_SET.format(request)
    return fields.String(
        required=True,
        validate=[validate.Length(min=1, error=message), validate.Length(max=IDENTIFIER_MAX_LENGTH)],
        error_messages={"required": message, "null": message},
        metadata=CHECKED,
    )


class Lock(Payload):
    lock_key = required_lock_key("lock")
    # read for their truth, as bluesky-queueserver-api does
    environment = Truthy(allow_none=True)
    queue = Truthy(allow_none=True)
    note = fields.String(allow_none=True, validate=validate.Length(max=TEXT_MAX_LENGTH), metadata=CHECKED)

    @post_load
    def drop_defaults(self, data: dict, **kwargs: Any) -> dict:
        # RE Manager is sent only what was asked for: true flags and a non-empty note
        return {k: v for k, v in data.items() if k == "lock_key" or v}


class Unlock(Payload):
    lock_key = required_lock_key("unlock")


class LockInfo(Payload):
    lock_key = lock_key_field()
    reload = reload_field()


lock = Resource("lock", __name__)

lock.forward("/lock", "lock", scope="write:lock", schema=Lock)
lock.forward("/unlock", "unlock", scope="write:lock", schema=Unlock)
# cached while lock_info_uid stays; with a lock_key RE Manager checks that key
lock.forward("/lock/info", "lock_info", methods=("GET",), scope="read:lock", schema=LockInfo)
