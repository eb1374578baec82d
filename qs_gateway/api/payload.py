"""Reading the payload of a request and explaining why it was refused.

The payload is the JSON body, on GET as on POST (that is what the clients send). A GET without
a body may give its parameters in the query string instead (browsers and the /docs page cannot
send a body on GET); the schema's fields say how each string is typed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from flask import request
from marshmallow import Schema, ValidationError, fields
from werkzeug.exceptions import RequestEntityTooLarge

from ..exceptions import InvalidPayload, UnreadableBody
from .schemas import StringOrStrings

UNKNOWN_FIELD = "Unknown field."
MISSING_FIELD = "Missing data for required field."

# A body sent without a JSON content type is still read as JSON: clients such as
# bluesky-queueserver-api send none on some calls, and ``curl -d`` labels JSON as a form.
_JSON_COMPATIBLE = {"", "application/json", "application/x-www-form-urlencoded", "text/plain"}


# What JSON counts as whitespace (bytes.strip() would also drop form feeds and vertical tabs).
JSON_WHITESPACE = b" \t\r\n"


def request_body() -> bytes:
    """The whole body; one over the size limit is a 413, also when it came without a length."""
    body = request.get_data(cache=True)
    limit = request.max_content_length
    if limit is not None and len(body) >= limit and request.content_length is None:
        # A chunked body is cut at the limit without a word (werkzeug's LimitedStream): if
        # anything is left behind the cut, the body was too large.
        if request.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()
    return body


def read_json_object() -> dict[str, Any]:
    """The request body as a JSON object; an empty body is ``{}``; anything else is a 422."""
    body = request_body()
    if not body.strip(JSON_WHITESPACE):
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
    if _deeper_than(payload, MAX_JSON_DEPTH):
        raise UnreadableBody(f"Request body is nested deeper than {MAX_JSON_DEPTH} levels")
    return payload


# Real payloads nest a few levels (plan parameters, metadata). RE Manager fails on a few
# hundred (Python's recursion limit), orjson refuses more than 1024: stop far earlier.
MAX_JSON_DEPTH = 64


def _deeper_than(value: Any, levels: int) -> bool:
    """Whether objects and arrays in ``value`` nest deeper than ``levels``; stops at the limit."""
    children = value.values() if isinstance(value, dict) else value
    for child in children:
        if isinstance(child, (dict, list)) and (levels <= 1 or _deeper_than(child, levels - 1)):
            return True
    return False


_FORM_TYPES = {"multipart/form-data", "application/x-www-form-urlencoded"}


def read_form() -> dict[str, Any]:
    """The fields and files of a form (file uploads); another kind of body is a 422."""
    if request.mimetype not in _FORM_TYPES:
        raise UnreadableBody(f"Expected a multipart/form-data body, got {request.mimetype or 'none'!r}")
    return {**request.form.to_dict(), **request.files.to_dict()}


# Query parameters that are credentials, not payload.
CREDENTIAL_PARAMETERS = frozenset({"api_key", "csrf"})


def sent_a_body(environ: dict) -> bool:
    """Whether the request came with a body (most GETs do not)."""
    return bool(environ.get("CONTENT_LENGTH")) or "HTTP_TRANSFER_ENCODING" in environ


def read_payload(schema: Schema, location: str = "json") -> dict[str, Any]:
    """The payload for ``schema`` from where the endpoint reads it: a form, the query string, or
    the JSON body (on a GET without a body, the query string typed through ``schema``)."""
    if location == "form":
        return read_form()
    environ = request.environ
    if location == "query":
        return query_payload(schema, request.args.to_dict(flat=False))
    if not sent_a_body(environ):
        # no body at all (most GETs): the query string, if any, is the payload
        if environ.get("QUERY_STRING") and request.method in ("GET", "HEAD"):
            return query_payload(schema, request.args.to_dict(flat=False))
        return {}
    body = read_json_object()
    if body or request.method not in ("GET", "HEAD") or request_body().strip(JSON_WHITESPACE):
        return body
    return query_payload(schema, request.args.to_dict(flat=False))


def query_payload(schema: Schema, args: Mapping[str, list[str]]) -> dict[str, Any]:
    """Query-string values typed for ``schema``: strings stay strings, numbers become numbers,
    anything else is read as JSON when it parses (``pos=-1``, ``uids=["a","b"]``, ``reload=true``)
    and kept as text when it does not (``pos=front``). A repeated parameter of a list field
    gives the list. Unknown names are kept, so the schema refuses them as it would in a body."""
    payload: dict[str, Any] = {}
    for name, values in args.items():
        if name in CREDENTIAL_PARAMETERS:
            continue
        field = schema.fields.get(name)
        if len(values) > 1 and isinstance(field, fields.List):
            payload[name] = [_typed(field.inner, value) for value in values]
        else:
            payload[name] = _typed(field, values[-1])
    return payload


def _typed(field: fields.Field | None, text: str) -> Any:
    if isinstance(field, fields.String):
        return text
    if isinstance(field, fields.Boolean):
        # the words marshmallow knows ("true", "1", "off" ...); a JSON body carries booleans
        if text in field.truthy:
            return True
        if text in field.falsy:
            return False
        return text
    if isinstance(field, StringOrStrings) and not text.startswith("["):
        return text  # an identifier that looks like a number stays an identifier
    if isinstance(field, fields.Integer):
        try:
            return int(text)
        except ValueError:
            pass  # "3.0" and "3e2" are read as JSON numbers below
    if isinstance(field, fields.Float):
        try:
            return float(text)
        except ValueError:
            return text
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


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


def describe(errors: Mapping[str, Any], schema: Schema | None = None, *, of_request: bool = True) -> str:
    """One readable sentence per problem; problems with the request's keys in bluesky-httpserver's
    words (``of_request=False``: the errors are of something inside it, e.g. one queue item).

    A field whose ``required`` message was customised (to keep a text clients know) is reported
    with that message alone.
    """
    fields = schema.fields if schema is not None else {}
    missing, unknown, others = [], [], []
    for path, message in _flatten(errors):
        field = fields.get(path)
        top_level = "." not in path and of_request
        if field is not None and message == field.error_messages.get("required") != MISSING_FIELD:
            others.append(message)
        elif top_level and message == MISSING_FIELD:
            missing.append(path)
        elif top_level and message == UNKNOWN_FIELD:
            unknown.append(path)
        elif path == MORE_PROBLEMS:
            others.append(message)
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


_EMPTY_LOADS: dict[int, dict[str, Any] | None] = {}


def load(schema: Schema, payload: Mapping[str, Any]) -> dict[str, Any]:
    if not payload:
        # Most requests carry no parameters: what the schema makes of {} is computed once.
        key = id(schema)
        if key not in _EMPTY_LOADS:
            try:
                _EMPTY_LOADS[key] = schema.load({})
            except ValidationError:
                _EMPTY_LOADS[key] = None
        cached = _EMPTY_LOADS[key]
        if cached is not None:
            return dict(cached)
    try:
        return schema.load(payload)
    except ValidationError as exc:
        errors = bounded(exc.normalized_messages())
        raise InvalidPayload(describe(errors, schema), errors) from None


# An error answer names the keys it refuses, but a body of unknown or huge keys must not come
# back whole: each name is cut, and so is the number of problems reported per object.
MAX_REPORTED_KEY = 64
MAX_REPORTED_PROBLEMS = 50
MORE_PROBLEMS = "\u2026"  # one character, no dot: paths are joined with dots


def _cut(key: Any) -> Any:
    if isinstance(key, str) and len(key) > MAX_REPORTED_KEY:
        return f"{key[: MAX_REPORTED_KEY - 1]}{MORE_PROBLEMS}"
    return key


def bounded(errors: Mapping[Any, Any]) -> dict[Any, Any]:
    """``errors`` with long keys cut and at most MAX_REPORTED_PROBLEMS entries per object; the
    rest are counted under the key MORE_PROBLEMS."""
    kept: dict[Any, Any] = {}
    items = list(errors.items())
    if len(items) > MAX_REPORTED_PROBLEMS:
        items.sort(key=lambda item: str(item[0]))  # the same answer to the same body
    for key, value in items[:MAX_REPORTED_PROBLEMS]:
        kept[_cut(key)] = bounded(value) if isinstance(value, Mapping) else value
    if len(items) > MAX_REPORTED_PROBLEMS:
        kept[MORE_PROBLEMS] = [f"{len(items) - MAX_REPORTED_PROBLEMS} more problems not shown."]
    return kept
