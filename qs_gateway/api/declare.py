"""How an endpoint is declared: its contract once, its domain action in a few lines.

Every endpoint states its path, HTTP methods, required scope and payload schema; the machinery
here authenticates, checks the scope, reads and validates the JSON payload, calls the view and
turns its result into a response. Errors are raised as exceptions and rendered by
:mod:`qs_gateway.errors`, so no view repeats a try/except.

``Resource.forward`` covers the common case (validated payload → one RE Manager method →
the reply, verbatim); ``Resource.endpoint`` decorates views that need more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from flask import Blueprint, Flask, Response, g, request
from flask.sansio.blueprints import BlueprintSetupState
from marshmallow import Schema

from ..auth import Principal
from ..exceptions import InvalidPayload
from ..extensions import services
from ..manager import Reply, method
from ..observability import hand_over_reply
from .access import ANY_PRINCIPAL, PUBLIC, authorize
from .hooks import JSON_CONTENT_TYPE
from .idempotency import REPLAYED_HEADER, answer_once
from .payload import load, read_payload
from .refusing import in_managers_shape
from .websockets import serve_websocket


@dataclass(frozen=True)
class EndpointSpec:
    rule: str
    methods: tuple[str, ...]
    scope: str | None
    schema: Schema | None
    summary: str
    manager_method: str | None = None
    etag: bool = False  # conditional answers, versioned by the method's guard (the status's *_uid)
    blueprint: str = ""
    kind: str = "json"  # "json", "stream" (SSE or byte stream) or "websocket"
    location: str = "json"  # the payload: "json" body (or query string on a GET), "form" body, "query" string
    media_type: str = "application/json"  # of a successful answer ("*/*": files of several types)
    errors: tuple[int, ...] = ()  # statuses the view itself raises beyond the error contract's
    idempotent: bool = False  # reads Idempotency-Key: a retry gets the first answer (see .idempotency)

    @property
    def injects(self) -> tuple[str, ...]:
        """Who the caller is, as the RE Manager method takes it (``user``, ``user_group``)."""
        return method(self.manager_method).identity if self.manager_method else ()

    @property
    def etag_field(self) -> str | None:
        return method(self.manager_method).guard if self.etag and self.manager_method else None


@dataclass
class Call:
    """What a view receives: the validated payload, the principal and the path arguments."""

    payload: dict[str, Any]
    principal: Principal
    path: dict[str, Any] = field(default_factory=dict)
    scope: str | None = None  # the one the endpoint requires (a stream checks it again while open)

    def params(self, injects: Iterable[str] = ()) -> dict[str, Any]:
        """The payload as RE Manager parameters: ``None`` values and an empty lock key dropped,
        the principal's ``user`` / ``user_group`` injected where the endpoint says so."""
        params = {k: v for k, v in self.payload.items() if v is not None}
        if params.get("lock_key") == "":
            del params["lock_key"]
        for name in injects:
            params[name] = self.principal.displayed_name if name == "user" else self.principal.user_group
        return params


def to_response(result: Any, etag_field: str | None = None) -> Response:
    """The view's result as JSON; conditional (ETag) and compressed (gzip) where that pays."""
    if isinstance(result, Response):
        return result
    reply = result if isinstance(result, Reply) else Reply(result)
    hand_over_reply(reply)  # the audit line reads the verdict from it, not from the (maybe gzipped) body
    current = request._get_current_object()  # one proxy lookup instead of several
    environ = current.environ
    headers = [JSON_CONTENT_TYPE]  # given as a header, werkzeug sets no content type of its own
    if etag_field is not None:
        version = reply.peek(etag_field)
        if version is not None:
            # RE Manager's uid of what the body shows: a new uid for every change
            headers.append(("ETag", f'W/"{version}"'))
            if "HTTP_IF_NONE_MATCH" in environ and current.if_none_match.contains_weak(version):
                return Response(status=304, headers=headers[1:])
    body = reply.body
    minimum = services().gzip_min_bytes
    if minimum and len(body) >= minimum and "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
        body = reply.gzipped
        headers += (("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding"))
    return Response(body, headers=headers)


def _as_schema(schema: type[Schema] | Schema | None) -> Schema | None:
    return schema() if isinstance(schema, type) else schema


REGISTERED_KEY = "qs_gateway.resources"


def registered_endpoints(app: Flask) -> list[tuple[str, EndpointSpec]]:
    """Every endpoint declared on ``app`` (custom resources included), with its full URL rule."""
    return [
        ((prefix or "").rstrip("/") + spec.rule, spec)
        for resource, prefix in app.extensions.get(REGISTERED_KEY, ())
        for spec in resource.specs
    ]


class Resource(Blueprint):
    """A blueprint for one resource of the API; it records each endpoint's contract."""

    def __init__(self, name: str, import_name: str, **kwargs: Any) -> None:
        super().__init__(name, import_name, **kwargs)
        self.specs: list[EndpointSpec] = []
        self.record(self._remember_registration)

    def _remember_registration(self, state: BlueprintSetupState) -> None:
        # The OpenAPI document is built from what an app registered, under the prefix it used.
        state.app.extensions.setdefault(REGISTERED_KEY, []).append((self, state.url_prefix))

    def endpoint(
        self,
        rule: str | tuple[str, ...],
        *,
        methods: Iterable[str] = ("GET",),
        scope: str | None,
        schema: type[Schema] | Schema | None = None,
        summary: str | None = None,
        manager_method: str | None = None,
        kind: str = "json",
        location: str = "json",
        etag: bool = False,
        media_type: str = "application/json",
        errors: Iterable[int] = (),
        idempotent: bool = False,
    ) -> Callable[[Callable[[Call], Any]], Callable[[Call], Any]]:
        """Declare an endpoint whose view receives a :class:`Call`.

        ``manager_method`` names the RE Manager method the view sends (its row in the method
        table says which identity the caller is given, how a refused value is answered and
        what the OpenAPI document promises); ``etag`` makes answers conditional on its guard;
        ``idempotent`` answers a retry carrying the same ``Idempotency-Key`` with the first answer.
        """
        if location not in ("json", "form", "query"):
            raise ValueError(f"payload location must be json, form or query, not {location!r}")
        schema_instance = _as_schema(schema)
        rules = (rule,) if isinstance(rule, str) else tuple(rule)
        methods = tuple(methods)

        def decorator(view: Callable[[Call], Any]) -> Callable[[Call], Any]:
            summary_text = summary or (view.__doc__ or view.__name__).strip().splitlines()[0]

            declared = EndpointSpec(
                rule=rules[0],
                methods=methods,
                scope=scope,
                schema=schema_instance,
                summary=summary_text,
                manager_method=manager_method,
                etag=etag,
                blueprint=self.name,
                kind=kind,
                location=location,
                media_type=media_type,
                errors=tuple(errors),
                idempotent=idempotent,
            )

            def handler(**path_args: Any) -> Response:
                principal = authorize(scope)
                payload: dict[str, Any] = {}
                submitted: Any = {}
                if schema_instance is not None:
                    submitted = read_payload(schema_instance, location)
                    try:
                        payload = load(schema_instance, submitted)
                    except InvalidPayload as invalid:
                        refusal = in_managers_shape(manager_method, schema_instance, submitted, invalid)
                        if refusal is None:
                            raise
                        return to_response(refusal)
                call = Call(payload, principal, path_args, scope)
                if not idempotent:
                    return to_response(view(call), declared.etag_field)
                response = to_response(answer_once(principal, submitted, lambda: view(call)), declared.etag_field)
                if g.get("idempotent_replayed"):
                    response.headers[REPLAYED_HEADER] = "true"
                return response

            handler.__name__ = view.__name__
            handler.__doc__ = view.__doc__
            for each_rule in rules:
                self.add_url_rule(each_rule, view.__name__, handler, methods=list(methods))
                self.specs.append(replace(declared, rule=each_rule))
            return view

        return decorator

    def websocket(
        self,
        rule: str,
        *,
        scope: str,
        stream: str,
        summary: str,
        accept: Callable[[bytes], bool] = lambda data: True,
    ) -> None:
        """Declare a websocket that sends each message of a Redis stream (``stream``: "console"
        or "info", see :class:`qs_gateway.streaming.keys.StreamKeys`) that ``accept`` lets
        through, as a text frame. Who may open one: :mod:`.websockets`."""
        name = rule.strip("/").replace("/", "_")

        def handler() -> Response:
            return serve_websocket(scope, getattr(services().stream_keys, stream), name, accept)

        handler.__name__ = name
        self.add_url_rule(rule, name, handler, methods=["GET"], websocket=True)
        self.specs.append(
            EndpointSpec(
                rule=rule,
                methods=("GET",),
                scope=scope,
                schema=None,
                summary=summary,
                blueprint=self.name,
                kind="websocket",
            )
        )

    def forward(
        self,
        rule: str | tuple[str, ...],
        manager_method: str,
        *,
        scope: str,
        schema: type[Schema] | Schema | None,
        methods: Iterable[str] = ("POST",),
        summary: str | None = None,
        idempotent: bool = False,
    ) -> None:
        """Declare an endpoint that sends its validated payload to ``manager_method``.

        Everything else follows from the method's row: the caller's identity is added as the
        method takes it; a read is served from the cache its guard allows (``reload`` skips
        it) and answered conditionally (ETag); a write is sent once.
        """
        row = method(manager_method)

        def view(call: Call) -> Reply:
            params = call.params(row.identity)
            if not row.reads:
                return services().manager.call(manager_method, params)
            reload = bool(params.pop("reload", False))
            return services().manager.read(manager_method, params, reload=reload)

        view.__name__ = manager_method
        self.endpoint(
            rule,
            methods=methods,
            scope=scope,
            schema=schema,
            summary=summary or f"RE Manager `{manager_method}`",
            manager_method=manager_method,
            etag=row.reads and row.guard is not None,
            idempotent=idempotent,
        )(view)


# What facility code builds its own resources with (see docs/extending.md).
__all__ = [
    "ANY_PRINCIPAL",
    "PUBLIC",
    "Call",
    "EndpointSpec",
    "Resource",
    "authorize",
    "registered_endpoints",
    "to_response",
]
