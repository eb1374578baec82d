"""What payload schemas are made of: the base schema, the fields many endpoints share (positions,
uids, lock keys, flags, queue items, uploads) and the payloads of no or one common parameter.

Each resource declares its own payload schemas beside its endpoints (``api/queue.py``, ...).

Top-level keys are strict (an unknown key is a 400). Queue items are checked as envelopes
(``item_type``, ``name``, ``args``, ``kwargs``, ...) and may carry further keys: plan names and
parameters are RE Manager's to judge, against its lists of allowed plans and devices.
When an endpoint's main key (``item``, ``items``, ``uids``, ...) is missing, the payload is sent
as it is and RE Manager's own explanation comes back, as bluesky-httpserver does.

A value of the wrong kind is refused before it reaches RE Manager. How the refusal is answered
follows bluesky-httpserver: a field marked :data:`CHECKED` is one that bluesky-httpserver checks
itself (a 400); any other is one it passes on for RE Manager to refuse, so the gateway answers
in RE Manager's refusal shape (see :mod:`qs_gateway.api.refusing`). A field wrapped in
:class:`PassedOn` is not refused at all: RE Manager's refusal of it carries what only RE Manager
makes, so the gateway sends the value and passes its answer on.
"""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema
from marshmallow import missing as missing_
from werkzeug.datastructures import FileStorage


class Payload(Schema):
    class Meta:
        unknown = RAISE


class OneOfKeys(Payload):
    """A payload that takes exactly one of the keys ``one_of`` (e.g. ``item`` or ``items``); the
    OpenAPI document says so too (``oneOf`` of their ``required``)."""

    one_of: tuple[str, ...] = ()

    @validates_schema
    def exactly_one(self, data: dict[str, Any], **kwargs: Any) -> None:
        if sum(key in data for key in self.one_of) != 1:
            raise ValidationError(f"Exactly one of {', '.join(self.one_of)} is required.", self.one_of[0])


# Field metadata: bluesky-httpserver refuses a wrong value of this field itself, with a 400.
CHECKED = {"checked_by_server": True}


def is_checked(field: fields.Field) -> bool:
    return bool(field.metadata.get("checked_by_server"))


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


class PassedOn(fields.Raw):
    """Any value, sent on for RE Manager to judge: its refusal of a wrong one carries what only
    RE Manager makes (the item it prepared, with a new ``item_uid``), which a refusal made by the
    gateway could not reproduce. ``documented`` is what the OpenAPI document says is accepted.

    Only a value longer than any identifier (a hostile one: RE Manager's uids have 36
    characters) is still refused here, so that it is neither sent nor echoed back."""

    def __init__(self, documented: fields.Field) -> None:
        super().__init__(allow_none=True, validate=validate.Length(max=IDENTIFIER_MAX_LENGTH))
        self.openapi = dict(getattr(documented, "openapi", {})) or {
            "type": "string",
            "maxLength": IDENTIFIER_MAX_LENGTH,
        }

    def _validate(self, value: Any) -> None:
        if isinstance(value, str | list | dict):
            super()._validate(value)


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


class Truthy(fields.Raw):
    """Any value, read for its truth (``null`` too: false), as bluesky-httpserver reads it."""

    openapi = {"description": "Any value; it counts by its truth (`null`: false)."}

    def deserialize(self, value: Any, attr: str | None = None, data: Any = None, **kwargs: Any) -> Any:
        if value is missing_:
            return super().deserialize(value, attr, data, **kwargs)
        return bool(value)


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
    return identifier(allow_none=True, metadata=CHECKED)


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


def reload_field() -> fields.Field:
    return Flag(allow_none=True, metadata=CHECKED)  # read by the gateway, never sent


class Reload(Payload):
    reload = reload_field()


class LockKeyOnly(Payload):
    lock_key = lock_key_field()


# -- uploads (multipart forms) ---------------------------------------------------------------


class Upload(fields.Field):
    """A file of a multipart form."""

    default_error_messages = {"invalid": "Must be a file."}
    openapi = {"type": "string", "format": "binary"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, FileStorage):
            raise self.make_error("invalid")
        return value


class SpreadsheetUpload(Payload):
    spreadsheet = Upload(required=True)
    data_type = identifier(allow_none=True)
