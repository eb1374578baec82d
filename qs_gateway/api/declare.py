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
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, g, request
from flask.sansio.blueprints import BlueprintSetupState
from marshmallow import Schema
from simple_websocket import ConnectionClosed
from simple_websocket import Server as WebSocket

from ..auth import Credentials, Principal, parse_credentials
from ..auth.credentials import API_KEY_COOKIE
from ..extensions import services
from ..manager import Reply
from .payload import load, read_payload

# Scope markers beside real scope names:
PUBLIC = None  # no authentication at all
ANY_PRINCIPAL = ""  # credentials are checked if present, but no scope is required


@dataclass(frozen=True)
class EndpointSpec:
    rule: str
    methods: tuple[str, ...]
    scope: str | None
    schema: Schema | None
    summary: str
    manager_method: str | None = None
    injects: tuple[str, ...] = ()
    blueprint: str = ""
    kind: str = "json"  # "json", "stream" (SSE or byte stream) or "websocket"
    location: str = "json"  # the payload: "json" body (or query string on a GET), "form" body, "query" string
    media_type: str = "application/json"  # of a successful answer ("*/*": files of several types)
    errors: tuple[int, ...] = ()  # statuses the view itself raises beyond the error contract's

    @property
    def required_scopes(self) -> frozenset[str]:
        return frozenset({self.scope}) if self.scope else frozenset()


@dataclass
class Call:
    """What a view receives: the validated payload, the principal and the path arguments."""

    payload: dict[str, Any]
    principal: Principal
    path: dict[str, Any] = field(default_factory=dict)

    def params(self, injects: Iterable[str] = ()) -> dict[str, Any]:
        """The payload as RE Manager parameters: ``None`` values and an empty lock key dropped,
        the principal's ``user`` / ``user_group`` injected where the endpoint says so."""
        params = {k: v for k, v in self.payload.items() if v is not None}
        if params.get("lock_key") == "":
            del params["lock_key"]
        for name in injects:
            params[name] = self.principal.displayed_name if name == "user" else self.principal.user_group
        return params


def authorize(scope: str | None, credentials: Credentials | None = None) -> Principal:
    auth = services().auth
    if scope is PUBLIC:
        principal = auth.public
    else:
        if credentials is None:
            environ = request.environ
            # the query string and the cookies are parsed only when they could hold a key
            credentials = parse_credentials(
                environ.get("HTTP_AUTHORIZATION"),
                request.args.get("api_key") if "api_key" in environ.get("QUERY_STRING", "") else None,
                request.cookies.get(API_KEY_COOKIE) if "HTTP_COOKIE" in environ else None,
            )
        g.credentials = credentials
        principal = auth.authenticate(credentials)
        auth.require(principal, frozenset({scope}) if scope else frozenset())
    g.principal = principal
    return principal


def websocket_credentials() -> Credentials:
    """Websockets authenticate only with ``Authorization: ApiKey <key>`` (that exact prefix), as
    bluesky-httpserver does; anything else is an anonymous request."""
    header = request.headers.get("Authorization", "")
    return (
        Credentials(api_key=header[len("ApiKey ") :], api_key_source="header")
        if header.startswith("ApiKey ")
        else Credentials()
    )


def to_response(result: Any, etag_field: str | None = None) -> Response:
    """The view's result as JSON; conditional (ETag) and compressed (gzip) where that pays."""
    if isinstance(result, Response):
        return result
    reply = result if isinstance(result, Reply) else Reply(result)
    environ = request.environ
    headers = {}
    if etag_field is not None:
        version = reply.peek(etag_field)
        if version is not None:
            # RE Manager's uid of what the body shows: a new uid for every change
            etag = f'W/"{version}"'
            headers["ETag"] = etag
            if "HTTP_IF_NONE_MATCH" in environ and request.if_none_match.contains_weak(version):
                return Response(status=304, headers=headers)
    body = reply.body
    minimum = services().gzip_min_bytes
    if minimum and len(body) >= minimum and "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
        body = reply.gzipped
        headers["Content-Encoding"] = "gzip"
        headers["Vary"] = "Accept-Encoding"
    return Response(body, mimetype="application/json", headers=headers)


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
        injects: Iterable[str] = (),
        kind: str = "json",
        location: str = "json",
        etag: str | None = None,
        media_type: str = "application/json",
        errors: Iterable[int] = (),
    ) -> Callable[[Callable[[Call], Any]], Callable[[Call], Any]]:
        if location not in ("json", "form", "query"):
            raise ValueError(f"payload location must be json, form or query, not {location!r}")
        schema_instance = _as_schema(schema)
        rules = (rule,) if isinstance(rule, str) else tuple(rule)
        methods = tuple(methods)

        def decorator(view: Callable[[Call], Any]) -> Callable[[Call], Any]:
            summary_text = summary or (view.__doc__ or view.__name__).strip().splitlines()[0]

            def handler(**path_args: Any) -> Response:
                principal = authorize(scope)
                payload = (
                    load(schema_instance, read_payload(schema_instance, location))
                    if schema_instance is not None
                    else {}
                )
                return to_response(view(Call(payload, principal, path_args)), etag)

            handler.__name__ = view.__name__
            handler.__doc__ = view.__doc__
            for each_rule in rules:
                self.add_url_rule(each_rule, view.__name__, handler, methods=list(methods))
                self.specs.append(
                    EndpointSpec(
                        rule=each_rule,
                        methods=methods,
                        scope=scope,
                        schema=schema_instance,
                        summary=summary_text,
                        manager_method=manager_method,
                        injects=tuple(injects),
                        blueprint=self.name,
                        kind=kind,
                        location=location,
                        media_type=media_type,
                        errors=tuple(errors),
                    )
                )
            return view

        return decorator

    def websocket(
        self, rule: str, *, scope: str, summary: str | None = None
    ) -> Callable[[Callable[[Any, Call], None]], Callable[[Any, Call], None]]:
        """Declare a websocket endpoint; the view receives the accepted connection and the call.

        Credentials are checked before the handshake, so a refused client never gets a socket.
        """

        def decorator(view: Callable[[Any, Call], None]) -> Callable[[Any, Call], None]:
            def handler(**path_args: Any) -> Response:
                principal = authorize(scope, websocket_credentials())
                ws = WebSocket(request.environ)
                try:
                    view(ws, Call({}, principal, path_args))
                except ConnectionClosed:
                    pass
                finally:
                    try:
                        ws.close()
                    except ConnectionClosed:  # the client closed it first, the usual ending
                        pass
                return _websocket_done(ws)

            handler.__name__ = view.__name__
            self.add_url_rule(rule, view.__name__, handler, methods=["GET"], websocket=True)
            self.specs.append(
                EndpointSpec(
                    rule=rule,
                    methods=("GET",),
                    scope=scope,
                    schema=None,
                    summary=summary or (view.__doc__ or view.__name__).strip().splitlines()[0],
                    blueprint=self.name,
                    kind="websocket",
                )
            )
            return view

        return decorator

    def forward(
        self,
        rule: str,
        manager_method: str,
        *,
        scope: str,
        schema: type[Schema] | Schema | None,
        methods: Iterable[str] = ("POST",),
        injects: Iterable[str] = (),
        summary: str | None = None,
    ) -> None:
        """Declare an endpoint that sends its validated payload to ``manager_method``."""
        injects = tuple(injects)

        def view(call: Call) -> Reply:
            return services().manager.call(manager_method, call.params(injects))

        view.__name__ = manager_method
        self.endpoint(
            rule,
            methods=methods,
            scope=scope,
            schema=schema,
            summary=summary or f"RE Manager `{manager_method}`",
            manager_method=manager_method,
            injects=injects,
        )(view)


def _websocket_done(ws: WebSocket) -> Response:
    """What the view returns once the websocket has ended: nothing more may be written.

    Under gunicorn the connection was taken over by the websocket, and raising StopIteration
    when the response is called tells gunicorn to close it without writing a response.
    """

    class Done(Response):
        def __call__(self, environ: Any, start_response: Any) -> Any:
            if ws.mode == "gunicorn":
                raise StopIteration()
            return super().__call__(environ, start_response)

    return Done()
