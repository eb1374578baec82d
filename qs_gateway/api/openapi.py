"""The OpenAPI 3.1 document, generated from the declared endpoints.

Every endpoint is declared through :class:`qs_gateway.api.declare.Resource`, which records its
rule, methods, scope, payload schema, summary and RE Manager method. This module turns those
records into operations: the schema's fields become the request body (POST) or query
parameters (GET: browsers cannot send a body on GET, and the gateway reads the query string of
a GET without a body), the scope becomes a security requirement, and the error contract of
:mod:`qs_gateway.exceptions` becomes the documented error responses. Nothing is written by hand per
endpoint, so endpoints declared later (or by custom resources) are documented as they appear.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, ValidationError, fields

from .. import __version__
from ..exceptions import CONTRACT
from ..manager import method
from .access import ANY_PRINCIPAL, PUBLIC
from .browser import SAFE_METHODS
from .declare import EndpointSpec
from .idempotency import OPENAPI_PARAMETER as IDEMPOTENCY_PARAMETER
from .idempotency import STATUSES as IDEMPOTENCY_STATUSES

OPENAPI_VERSION = "3.1.0"

DESCRIPTION = """\
HTTP gateway to the Bluesky Queue Server (RE Manager), wire-compatible with bluesky-httpserver.

Payloads are JSON objects in the request body, on GET as on POST (what the clients send). A GET
without a body may give its parameters in the query string instead, e.g.
`GET /api/queue/item/get?pos=-1`; when a body is sent, the query string is not read.

Authenticate with `Authorization: ApiKey <key>` (or `?api_key=<key>`); the scope an endpoint
requires is named in its security requirement and description. RE Manager's replies are passed
on verbatim with status 200, also when they say `"success": false`.
"""

SECURITY_SCHEMES = {
    "ApiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "The API key, as `ApiKey <key>` (the single-user key, or a key of a user).",
    },
    "ApiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key", "description": "The API key."},
    "BearerToken": {"type": "http", "scheme": "bearer", "description": "An access token of a logged-in user."},
}

_BODIES: dict[str, dict[str, Any] | None] = {
    "error": {
        "type": "object",
        "properties": {"detail": {"description": "What went wrong, in words"}},
        "required": ["detail"],
    },
    "fields": {
        "type": "object",
        "properties": {
            "detail": {"type": "string", "description": "The problems, one sentence each"},
            "errors": {"type": "object", "description": "The messages per field, nested like the payload"},
        },
        "required": ["detail"],
    },
    "html": None,  # a page of the server in front (gunicorn), not JSON
}


def _component_name(status: int) -> str:
    return CONTRACT[status].__name__


_MANAGER_REPLY = "RE Manager's reply, passed on verbatim (also when it says `success: false`)."


def _manager_reply(spec: EndpointSpec) -> dict[str, Any]:
    """The 200 answer of an endpoint that sends an RE Manager method, from the method's row."""
    row = method(spec.manager_method)
    description = _MANAGER_REPLY
    refusal = row.refusal
    if refusal is not None and spec.schema is not None:
        shape = ", ".join(f"`{name}`" for name in refusal.fields)
        description += (
            " A value the gateway refuses before sending it (one bluesky-httpserver would pass on) is answered "
            f"in RE Manager's refusal shape: `success: false`, `msg` starting with `{refusal.prefix}`"
            + (f", {shape} as RE Manager fills them on failure" if shape else "")
            + ", and the field-level `errors`."
        )
    if spec.etag_field:
        description += f" Conditional: the `ETag` is RE Manager's `{spec.etag_field}`; `If-None-Match` may give 304."
    schema: dict[str, Any] = {"type": "object"}
    if refusal is not None:
        schema["properties"] = {"success": {"type": "boolean"}, "msg": {"type": "string"}}
    answers: dict[str, Any] = {"200": {"description": description, "content": {"application/json": {"schema": schema}}}}
    if spec.etag_field:
        answers["304"] = {"description": "Not modified since the `ETag` the client sent."}
    return answers


def _success(spec: EndpointSpec) -> dict[str, Any]:
    if spec.kind == "websocket":
        return {"101": {"description": "The websocket is open (a request without `Upgrade: websocket` gets 400)."}}
    if spec.media_type == "application/json":
        if spec.manager_method:
            return _manager_reply(spec)
        return {"200": {"description": "The answer.", "content": {"application/json": {"schema": {}}}}}
    description = "A stream that stays open until the client leaves." if spec.kind == "stream" else "The content."
    return {"200": {"description": description, "content": {spec.media_type: {}}}}


_PATH_ARGUMENT = re.compile(r"<(?:(?P<converter>[a-zA-Z_]+)(?:\((?P<args>[^)]*)\))?:)?(?P<name>[a-zA-Z_]\w*)>")


def _openapi_path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    """A Flask rule as an OpenAPI path, and its path parameters."""
    parameters = []

    def replace(match: re.Match) -> str:
        schema: dict[str, Any] = {"type": "string"}
        converter, args = match.group("converter"), match.group("args")
        if converter == "int":
            schema = {"type": "integer"}
        elif converter == "float":
            schema = {"type": "number"}
        elif converter == "any" and args:
            schema["enum"] = [a.strip().strip("'\"") for a in args.split(",")]
        parameters.append({"in": "path", "name": match.group("name"), "required": True, "schema": schema})
        return "{" + match.group("name") + "}"

    return _PATH_ARGUMENT.sub(replace, rule), parameters


def _field_openapi(self: Any, field: fields.Field, **kwargs: Any) -> dict:
    # Custom fields say what they accept in an ``openapi`` class attribute (see api/schemas.py).
    described = dict(getattr(field, "openapi", {}))
    if described and field.allow_none:
        if "oneOf" in described:
            described["oneOf"] = [*described["oneOf"], {"type": "null"}]
        elif "type" in described:
            described["type"] = [described["type"], "null"]
    return described


def _schema_name(schema: type[Schema] | Schema) -> str:
    cls = schema if isinstance(schema, type) else type(schema)
    return cls.__name__


def _security(scope: str | None) -> list[dict[str, list[str]]]:
    if scope is PUBLIC:
        return []
    scopes = [scope] if scope else []
    requirements = [{name: scopes} for name in SECURITY_SCHEMES]
    if scope == ANY_PRINCIPAL:
        requirements.insert(0, {})  # credentials are optional
    return requirements


def _description(spec: EndpointSpec) -> str:
    parts = []
    if spec.scope is PUBLIC:
        parts.append("No authentication.")
    elif spec.scope == ANY_PRINCIPAL:
        parts.append("Any caller; credentials, if sent, must be valid.")
    else:
        parts.append(f"Requires scope `{spec.scope}`.")
    if spec.manager_method:
        parts.append(f"RE Manager method `{spec.manager_method}`.")
    if spec.injects:
        parts.append("The gateway adds " + ", ".join(f"`{name}`" for name in spec.injects) + " from the caller.")
    return " ".join(parts)


def _accepts_nothing(schema: Schema) -> bool:
    """Whether no body (read as ``{}``) passes the schema, i.e. whether the body is optional."""
    try:
        schema.load({})
    except ValidationError:
        return False
    return True


def _has_files(schema: Any) -> bool:
    return any(getattr(field, "openapi", {}).get("format") == "binary" for field in schema.fields.values())


def _operation(path: str, http_method: str, spec: EndpointSpec, path_parameters: list[dict]) -> dict[str, Any]:
    responses = _success(spec)
    statuses = set(spec.errors)
    if spec.schema is not None:
        statuses |= {400, 413, 422}
    if spec.scope is not PUBLIC:
        # 400: a malformed Authorization header; 429: the caller's address failed too many credential
        # checks (auth.throttle); 503: auth state in Redis
        statuses |= {400, 401, 429, 503}
    if http_method.upper() not in SAFE_METHODS:
        statuses.add(403)  # the CSRF check of browsers that authenticate by cookie
    if path_parameters:
        statuses.add(404)
    if spec.manager_method:
        statuses |= {408, 502, 503}
    if spec.idempotent:
        statuses |= set(IDEMPOTENCY_STATUSES)

    operation: dict[str, Any] = {
        "operationId": f"{http_method}{re.sub(r'[^a-zA-Z0-9]+', '_', path)}".rstrip("_"),
        "summary": spec.summary,
        "description": _description(spec),
        "tags": [spec.blueprint or "other"],
        "security": _security(spec.scope),
        "responses": responses,
        "parameters": list(path_parameters),
    }
    if spec.scope:
        operation["x-scope"] = spec.scope
    if spec.manager_method:
        operation["x-manager-method"] = spec.manager_method
        refusal = method(spec.manager_method).refusal
        if refusal is not None and spec.schema is not None:
            # a wrong value may be answered 200 in RE Manager's refusal shape, not 400
            operation["x-refusal"] = {"prefix": refusal.prefix, "fields": list(refusal.fields)}
            if refusal.batch is not None:
                operation["x-refusal"]["batch"] = {
                    "summary": refusal.batch.summary,
                    "item_prefix": refusal.batch.item_prefix,
                }
    if spec.location == "form":
        content_type = "multipart/form-data" if _has_files(spec.schema) else "application/x-www-form-urlencoded"
        body = getattr(spec.schema, "openapi", spec.schema)  # as for JSON bodies below
        operation["requestBody"] = {"required": True, "content": {content_type: {"schema": body}}}
    elif spec.schema is not None and spec.schema.fields:
        if http_method in ("get", "head", "delete") or spec.location == "query":
            operation["parameters"].append({"in": "query", "schema": spec.schema})
        else:
            # a schema may describe itself where its fields cannot (see queue.QueueModeSet)
            body = getattr(spec.schema, "openapi", spec.schema)
            if getattr(spec.schema, "one_of", ()):
                body = {"allOf": [body], "oneOf": [{"required": [key]} for key in spec.schema.one_of]}
            operation["requestBody"] = {
                "required": not _accepts_nothing(spec.schema),
                "content": {"application/json": {"schema": body}},
            }
    elif spec.schema is not None and http_method not in ("get", "head", "delete"):
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": {"type": "object", "maxProperties": 0}}},
        }
    if operation["parameters"]:
        statuses.add(414)  # (a URL with its query string, not a header, can be too long)
    if spec.idempotent:
        operation["parameters"].append(IDEMPOTENCY_PARAMETER)
    if not operation["parameters"]:
        del operation["parameters"]
    for status in sorted(statuses):
        responses[str(status)] = {"$ref": f"#/components/responses/{_component_name(status)}"}
    return operation


def build_document(endpoints: Iterable[tuple[str, EndpointSpec]], server_url: str = "/") -> dict[str, Any]:
    """The OpenAPI document of ``endpoints`` (pairs of full URL rule and declaration)."""
    plugin = MarshmallowPlugin(schema_name_resolver=_schema_name)
    document = APISpec(
        title="qs-gateway",
        version=__version__,
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": DESCRIPTION},
        servers=[{"url": server_url}],
    )
    plugin.converter.add_attribute_function(_field_openapi)
    for name, scheme in SECURITY_SCHEMES.items():
        document.components.security_scheme(name, scheme)
    for error in CONTRACT.values():
        schema = _BODIES[error.body]
        content = {"text/html": {}} if schema is None else {"application/json": {"schema": schema}}
        document.components.response(error.__name__, {"description": error.description, "content": content})

    operations_by_path: dict[str, dict[str, Any]] = {}
    for rule, spec in endpoints:
        path, path_parameters = _openapi_path(rule)
        operations = operations_by_path.setdefault(path, {})
        for http_method in spec.methods:
            operations[http_method.lower()] = _operation(path, http_method.lower(), spec, path_parameters)
    for path in sorted(operations_by_path):
        document.path(path=path, operations=operations_by_path[path])
    return document.to_dict()
