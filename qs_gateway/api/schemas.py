"""Payload schemas: what each endpoint accepts, checked before anything reaches RE Manager.

Top-level keys are strict (an unknown key is a 400). Queue items are checked as envelopes
(``item_type``, ``name``, ``args``, ``kwargs``, ...) and may carry further keys: plan names and
parameters are RE Manager's to judge, against its lists of allowed plans and devices.
When an endpoint's main key (``item``, ``items``, ``uids``, ...) is missing, the payload is sent
as it is and RE Manager's own explanation comes back, as bluesky-httpserver does.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, INCLUDE, RAISE, Schema, ValidationError, fields, post_load, pre_load, validate


class Payload(Schema):
    class Meta:
        unknown = RAISE


# -- reusable fields -------------------------------------------------------------------------


class Position(fields.Field):
    """A queue index (negative counts from the back) or ``"front"`` / ``"back"``."""

    default_error_messages = {"invalid": "Must be an integer or one of 'front', 'back'."}
    openapi = {"oneOf": [{"type": "integer"}, {"type": "string", "enum": ["front", "back"]}]}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not (isinstance(value, int) or value in ("front", "back")):
            raise self.make_error("invalid")
        return value


class StringOrStrings(fields.Field):
    default_error_messages = {"invalid": "Must be a string or a list of strings."}
    openapi = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise self.make_error("invalid")


class Meta(fields.Field):
    default_error_messages = {"invalid": "Must be an object or a list of objects."}
    openapi = {"oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, dict) or (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
            return value
        raise self.make_error("invalid")


def lock_key_field() -> fields.Field:
    # null is allowed (clients send it on lock_info); "" is dropped before sending
    return fields.String(allow_none=True)


def flag_field() -> fields.Field:
    return fields.Boolean(allow_none=True)


def uid_field() -> fields.Field:
    return fields.String(allow_none=True)


class ItemSchema(Schema):
    """A queue item envelope; further keys (``user``, ``result``, ...) pass through."""

    class Meta:
        unknown = INCLUDE

    item_type = fields.String(required=True, validate=validate.OneOf(("plan", "instruction", "function")))
    name = fields.String(required=True, validate=validate.Length(min=1))
    args = fields.List(fields.Raw())
    kwargs = fields.Dict(keys=fields.String(), values=fields.Raw())
    meta = Meta()
    item_uid = fields.String(allow_none=True)


class FunctionItemSchema(ItemSchema):
    item_type = fields.String(required=True, validate=validate.Equal("function"))


def item_field(schema: type[Schema] = ItemSchema, **kwargs: Any) -> fields.Field:
    return fields.Nested(schema(unknown=INCLUDE), **kwargs)


# -- general ---------------------------------------------------------------------------------


class Empty(Payload):
    pass


class Reload(Payload):
    reload = flag_field()


class LockKeyOnly(Payload):
    lock_key = lock_key_field()


# -- queue -----------------------------------------------------------------------------------


class QueueAutostart(Payload):
    enable = fields.Raw(required=True)
    lock_key = lock_key_field()

    @post_load
    def coerce(self, data: dict, **kwargs: Any) -> dict:
        data["enable"] = bool(data["enable"])
        return data


class QueueModeSet(Payload):
    """``{"mode": {...} | "default"}``, or the mode's keys given directly at the top level."""

    mode = fields.Raw(required=True)
    lock_key = lock_key_field()

    @pre_load
    def gather_mode(self, data: dict, **kwargs: Any) -> dict:
        if isinstance(data, dict) and "mode" not in data:
            rest = {k: v for k, v in data.items() if k != "lock_key"}
            data = {"mode": rest, **({"lock_key": data["lock_key"]} if "lock_key" in data else {})}
        return data

    @post_load
    def check_mode(self, data: dict, **kwargs: Any) -> dict:
        mode = data["mode"]
        if not (mode == "default" or isinstance(mode, dict)):
            raise ValidationError("Must be an object of queue mode options or 'default'.", "mode")
        return data


class ItemAdd(Payload):
    item = item_field()
    pos = Position(allow_none=True)
    before_uid = uid_field()
    after_uid = uid_field()
    lock_key = lock_key_field()


class ItemAddBatch(Payload):
    items = fields.List(item_field())
    pos = Position(allow_none=True)
    before_uid = uid_field()
    after_uid = uid_field()
    lock_key = lock_key_field()


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
    uids = fields.List(fields.String())
    ignore_missing = flag_field()
    lock_key = lock_key_field()


class ItemMove(Payload):
    pos = Position(allow_none=True)
    uid = uid_field()
    pos_dest = Position(allow_none=True)
    before_uid = uid_field()
    after_uid = uid_field()
    lock_key = lock_key_field()


class ItemMoveBatch(Payload):
    uids = fields.List(fields.String())
    pos_dest = Position(allow_none=True)
    before_uid = uid_field()
    after_uid = uid_field()
    reorder = flag_field()
    lock_key = lock_key_field()


# -- history ---------------------------------------------------------------------------------


class HistoryClear(Payload):
    size = fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=0))
    item_uid = uid_field()
    lock_key = lock_key_field()


# -- environment, run engine -------------------------------------------------------------------


class EnvironmentUpdate(Payload):
    run_in_background = flag_field()
    lock_key = lock_key_field()


class KernelInterrupt(Payload):
    interrupt_task = flag_field()
    interrupt_plan = flag_field()
    lock_key = lock_key_field()


class RePause(Payload):
    option = fields.String(allow_none=True, validate=validate.OneOf(("deferred", "immediate")))
    lock_key = lock_key_field()


RUN_OPTIONS = (None, "active", "open", "closed")


class ReRuns(Payload):
    option = fields.String(
        allow_none=True,
        validate=validate.OneOf(
            RUN_OPTIONS[1:], error=f"Unsupported option {{input!r}}. Supported options: {RUN_OPTIONS}"
        ),
    )
    reload = flag_field()


# -- plans, devices, permissions ---------------------------------------------------------------


class PlansList(Payload):
    reduced = flag_field()


class PermissionsReload(Payload):
    restore_plans_devices = flag_field()
    restore_permissions = flag_field()
    lock_key = lock_key_field()


class PermissionsSet(Payload):
    user_group_permissions = fields.Dict(keys=fields.String())
    lock_key = lock_key_field()


# -- scripts, functions, tasks -----------------------------------------------------------------


class ScriptUpload(Payload):
    script = fields.String()
    update_lists = flag_field()
    update_re = flag_field()
    run_in_background = flag_field()
    lock_key = lock_key_field()


class FunctionExecute(Payload):
    item = item_field(FunctionItemSchema)
    run_in_background = flag_field()
    lock_key = lock_key_field()


class TaskStatus(Payload):
    task_uid = StringOrStrings()


class TaskResult(Payload):
    task_uid = fields.String()


# -- lock ------------------------------------------------------------------------------------


LOCK_KEY_NOT_SET = "Failed to format the 'lock' request: Lock key is not set"


class Lock(Payload):
    lock_key = fields.String(
        required=True,
        validate=validate.Length(min=1, error=LOCK_KEY_NOT_SET),
        error_messages={"required": LOCK_KEY_NOT_SET, "null": LOCK_KEY_NOT_SET},
    )
    environment = flag_field()
    queue = flag_field()
    note = fields.String(allow_none=True)

    @post_load
    def drop_defaults(self, data: dict, **kwargs: Any) -> dict:
        # RE Manager is sent only what was asked for: true flags and a non-empty note
        return {k: v for k, v in data.items() if k == "lock_key" or v}


class Unlock(Payload):
    lock_key = fields.String(
        required=True,
        validate=validate.Length(min=1),
        error_messages={"required": "Failed to format the 'unlock' request: Lock key is not set"},
    )


class LockInfo(Payload):
    lock_key = lock_key_field()
    reload = flag_field()


# -- manager and testing ---------------------------------------------------------------------


class ManagerStop(Payload):
    option = fields.String(allow_none=True, validate=validate.OneOf(("safe_on", "safe_off")))


class ServerSleep(Payload):
    time = fields.Float(
        required=True,
        validate=validate.Range(min=0, max=300),
        error_messages={"required": "The required parameter 'time' is missing in the API call"},
    )


# -- console output --------------------------------------------------------------------------


class ConsoleOutput(Payload):
    nlines = fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=0), load_default=200)


class ConsoleOutputUpdate(Payload):
    last_msg_uid = fields.String(required=True)


# -- uploads (multipart forms) ---------------------------------------------------------------


class Upload(fields.Field):
    """A file of a multipart form."""

    default_error_messages = {"invalid": "Must be a file."}
    openapi = {"type": "string", "format": "binary"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        from werkzeug.datastructures import FileStorage

        if not isinstance(value, FileStorage):
            raise self.make_error("invalid")
        return value


class SpreadsheetUpload(Payload):
    spreadsheet = Upload()
    data_type = fields.String(allow_none=True)


# -- authentication --------------------------------------------------------------------------


class PasswordLogin(Payload):
    """OAuth2 password-flow form fields; only username and password are used."""

    username = fields.String(required=True, validate=validate.Length(min=1))
    password = fields.String(required=True, validate=validate.Length(min=1))
    grant_type = fields.String(allow_none=True)
    scope = fields.String(allow_none=True)
    client_id = fields.String(allow_none=True)
    client_secret = fields.String(allow_none=True)


class AuthorizationCode(Schema):
    """The identity provider's redirect carries more (state, session_state, ...): only code counts."""

    class Meta:
        unknown = EXCLUDE

    code = fields.String(required=True, validate=validate.Length(min=1))


class SessionRefresh(Payload):
    refresh_token = fields.String(required=True)


class ApiKeyNew(Payload):
    expires_in = fields.Integer(required=True, allow_none=True, strict=True, validate=validate.Range(min=1))
    scopes = fields.List(fields.String(), allow_none=True)
    note = fields.String(allow_none=True, validate=validate.Length(max=255))


class ApiKeyDelete(Payload):
    first_eight = fields.String(required=True, validate=validate.Length(equal=8))
