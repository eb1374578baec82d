"""Payload schemas: what each endpoint accepts, checked before anything reaches RE Manager.

Top-level keys are strict (an unknown key is a 400). Queue items are checked as envelopes
(``item_type``, ``name``, ``args``, ``kwargs``, ...) and may carry further keys: plan names and
parameters are RE Manager's to judge, against its lists of allowed plans and devices.
When an endpoint's main key (``item``, ``items``, ``uids``, ...) is missing, the payload is sent
as it is and RE Manager's own explanation comes back, as bluesky-httpserver does.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, INCLUDE, RAISE, Schema, fields, post_load, pre_load, validate


class Payload(Schema):
    class Meta:
        unknown = RAISE


# Identifiers and short texts are bounded: a megabyte "uid" is never a real one, and refusing it
# here keeps it away from RE Manager. Scripts, plan parameters and permissions are not bounded
# (they are legitimately large; the body limit bounds them).
IDENTIFIER_MAX_LENGTH = 256  # uids, lock keys, plan and user names (RE Manager's uids are 36)
TEXT_MAX_LENGTH = 4096  # notes, tokens, codes
# Integers are 64-bit (the JSON reader turns larger ones into floats, which are refused).
INT64_MAX = 2**63 - 1


# -- reusable fields -------------------------------------------------------------------------


class Position(fields.Field):
    """A queue index (negative counts from the back) or ``"front"`` / ``"back"``."""

    default_error_messages = {"invalid": "Must be an integer or one of 'front', 'back'."}
    openapi = {
        "oneOf": [
            {"type": "integer", "minimum": -INT64_MAX, "maximum": INT64_MAX},
            {"type": "string", "enum": ["front", "back"]},
        ]
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if value in ("front", "back"):
            return value
        value = _integral(value)
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > INT64_MAX:
            raise self.make_error("invalid")
        return value


def _integral(value: Any) -> Any:
    # 3.0 is an integer in JSON Schema's words (and clients in JavaScript may send it so)
    return int(value) if isinstance(value, float) and value.is_integer() else value


class Int64(fields.Integer):
    """A JSON integer of 64 bits at most, ``minimum`` or more; not a boolean, not a string."""

    def __init__(self, *, minimum: int = -INT64_MAX, maximum: int = INT64_MAX, **kwargs: Any) -> None:
        super().__init__(strict=True, validate=validate.Range(min=minimum, max=maximum), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._deserialize(_integral(value), attr, data, **kwargs)


class StringOrStrings(fields.Field):
    """An identifier or a list of identifiers."""

    default_error_messages = {
        "invalid": "Must be a string or a list of strings.",
        "too_long": f"Longer than {IDENTIFIER_MAX_LENGTH} characters.",
    }
    _string = {"type": "string", "maxLength": IDENTIFIER_MAX_LENGTH}
    openapi = {"oneOf": [_string, {"type": "array", "items": _string}]}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        strings = [value] if isinstance(value, str) else value
        if not isinstance(strings, list) or not all(isinstance(v, str) for v in strings):
            raise self.make_error("invalid")
        if any(len(v) > IDENTIFIER_MAX_LENGTH for v in strings):
            raise self.make_error("too_long")
        return value


class Meta(fields.Field):
    default_error_messages = {"invalid": "Must be an object or a list of objects."}
    openapi = {"oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, dict) or (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
            return value
        raise self.make_error("invalid")


class Flag(fields.Boolean):
    """``true``, ``false`` or ``null`` (not set): a JSON boolean, as documented. The words of a
    query string (``reload=true``, ``=1``, ``=yes``) are read as booleans before they get here."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


def identifier(**kwargs: Any) -> fields.String:
    return fields.String(validate=validate.Length(max=IDENTIFIER_MAX_LENGTH), **kwargs)


def lock_key_field() -> fields.Field:
    # null is allowed (clients send it on lock_info); "" is dropped before sending
    return identifier(allow_none=True)


LOCK_KEY_OPENAPI = {"type": ["string", "null"], "maxLength": IDENTIFIER_MAX_LENGTH}


def flag_field() -> fields.Field:
    return Flag(allow_none=True)


def uid_field() -> fields.Field:
    return identifier(allow_none=True)


class ItemSchema(Schema):
    """A queue item envelope; further keys (``user``, ``result``, ...) pass through."""

    class Meta:
        unknown = INCLUDE

    item_type = fields.String(required=True, validate=validate.OneOf(("plan", "instruction", "function")))
    name = fields.String(required=True, validate=validate.Length(min=1, max=IDENTIFIER_MAX_LENGTH))
    # plan parameters may be null (e.g. ``md=None``)
    args = fields.List(fields.Raw(allow_none=True))
    kwargs = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True))
    meta = Meta()
    item_uid = uid_field()


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
    # Any value, read for its truth as bluesky-httpserver does (null too: false)
    enable = fields.Raw(required=True, allow_none=True)
    lock_key = lock_key_field()

    @post_load
    def coerce(self, data: dict, **kwargs: Any) -> dict:
        data["enable"] = bool(data["enable"])
        return data


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
    uids = fields.List(identifier())
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
    uids = fields.List(identifier())
    pos_dest = Position(allow_none=True)
    before_uid = uid_field()
    after_uid = uid_field()
    reorder = flag_field()
    lock_key = lock_key_field()


# -- history ---------------------------------------------------------------------------------


class HistoryClear(Payload):
    size = Int64(minimum=0, allow_none=True)
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
    task_uid = identifier()


# -- lock ------------------------------------------------------------------------------------


LOCK_KEY_NOT_SET = "Failed to format the 'lock' request: Lock key is not set"


class Lock(Payload):
    lock_key = fields.String(
        required=True,
        validate=[validate.Length(min=1, error=LOCK_KEY_NOT_SET), validate.Length(max=IDENTIFIER_MAX_LENGTH)],
        error_messages={"required": LOCK_KEY_NOT_SET, "null": LOCK_KEY_NOT_SET},
    )
    environment = flag_field()
    queue = flag_field()
    note = fields.String(allow_none=True, validate=validate.Length(max=TEXT_MAX_LENGTH))

    @post_load
    def drop_defaults(self, data: dict, **kwargs: Any) -> dict:
        # RE Manager is sent only what was asked for: true flags and a non-empty note
        return {k: v for k, v in data.items() if k == "lock_key" or v}


class Unlock(Payload):
    lock_key = fields.String(
        required=True,
        validate=validate.Length(min=1, max=IDENTIFIER_MAX_LENGTH),
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
    nlines = Int64(minimum=0, allow_none=True, load_default=200)


class ConsoleOutputUpdate(Payload):
    last_msg_uid = identifier(required=True)


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
    spreadsheet = Upload(required=True)
    data_type = identifier(allow_none=True)


# -- authentication --------------------------------------------------------------------------


class PasswordLogin(Payload):
    """OAuth2 password-flow form fields; only username and password are used."""

    username = fields.String(required=True, validate=validate.Length(min=1, max=IDENTIFIER_MAX_LENGTH))
    password = fields.String(required=True, validate=validate.Length(min=1, max=TEXT_MAX_LENGTH))
    grant_type = identifier(allow_none=True)
    scope = fields.String(allow_none=True, validate=validate.Length(max=TEXT_MAX_LENGTH))
    client_id = identifier(allow_none=True)
    client_secret = fields.String(allow_none=True, validate=validate.Length(max=TEXT_MAX_LENGTH))


class AuthorizationCode(Schema):
    """The identity provider's redirect carries more (state, session_state, ...): only code counts."""

    class Meta:
        unknown = EXCLUDE

    code = fields.String(required=True, validate=validate.Length(min=1, max=TEXT_MAX_LENGTH))


class SessionRefresh(Payload):
    refresh_token = fields.String(required=True, validate=validate.Length(max=TEXT_MAX_LENGTH))


class ApiKeyNew(Payload):
    # seconds; at most a century (null: never expires)
    expires_in = Int64(minimum=1, maximum=100 * 365 * 24 * 3600, required=True, allow_none=True)
    scopes = fields.List(identifier(), allow_none=True)
    note = fields.String(allow_none=True, validate=validate.Length(max=255))


class ApiKeyDelete(Payload):
    first_eight = fields.String(required=True, validate=validate.Length(equal=8))
