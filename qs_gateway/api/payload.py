"""Reading the JSON payload of a request (GET included) and explaining why it was refused."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from flask import request
from marshmallow import Schema, ValidationError

from ..errors import InvalidPayload, UnreadableBody

UNKNOWN_FIELD = "Unknown field."
MISSING_FIELD = "Missing data for required field."

# A body sent without a JSON content type is still read as JSON: clients such as
# bluesky-queueserver-api send none on some calls, and ``curl -d`` labels JSON as a form.
_JSON_COMPATIBLE = {"", "application/json", "application/x-www-form-urlencoded", "text/plain"}


def read_json_object() -> dict[str, Any]:
    """The request body as a JSON object; an empty body is ``{}``; anything else is a 422."""
    body = request.get_data(cache=True)
    if not body.strip():
        return {}
    mimetype = request.mimetype
    if mimetype not in _JSON_COMPATIBLE and not mimetype.endswith("+json"):
        raise UnreadableBody(f"Unsupported Content-Type {mimetype!r}: the request body must be a JSON object")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UnreadableBody(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise UnreadableBody(f"Request body must be a JSON object, not {type(payload).__name__}")
    return payload


def _set_repr(names: list[str]) -> str:
    return "{" + ", ".join(repr(name) for name in sorted(names)) + "}"


def _flatten(errors: Mapping[Any, Any], prefix: str = "") -> list[tuple[str, str]]:
    flat = []
    for key, value in errors.items():
        path = f"{prefix}{key}" if not prefix else f"{prefix}.{key}"
        if isinstance(value, Mapping):
            flat.extend(_flatten(value, path))
        elif isinstance(value, (list, tuple)):
            for item in value:
                if isinstance(item, Mapping):
                    flat.extend(_flatten(item, path))
                else:
                    flat.append((path, str(item)))
        else:
            flat.append((path, str(value)))
    return flat


def describe(errors: Mapping[str, Any], schema: Schema | None = None) -> str:
    """One readable sentence per problem; top-level key problems in bluesky-httpserver's words.

    A field whose ``required`` message was customised (to keep a text clients know) is reported
    with that message alone.
    """
    fields = schema.fields if schema is not None else {}
    missing, unknown, others = [], [], []
    for path, message in _flatten(errors):
        field = fields.get(path)
        if field is not None and message == field.error_messages.get("required") != MISSING_FIELD:
            others.append(message)
        elif "." not in path and message == MISSING_FIELD:
            missing.append(path)
        elif "." not in path and message == UNKNOWN_FIELD:
            unknown.append(path)
        else:
            others.append(f"Invalid value of '{path}': {message}")
    parts = []
    if missing:
        parts.append(f"Some required keys are missing in the request: {_set_repr(missing)}. ")
    if unknown:
        parts.append(f"Request contains keys the are not supported: {_set_repr(unknown)}.")
    if others:
        parts.append((" " if parts else "") + " ".join(others))
    return "".join(parts).strip()


def load(schema: Schema, payload: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return schema.load(payload)
    except ValidationError as exc:
        errors = exc.normalized_messages()
        raise InvalidPayload(describe(errors, schema), errors) from None
