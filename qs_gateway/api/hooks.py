"""One home for per-request behaviour: everything the gateway does around its views, registered by
:func:`register_request_hooks` in the order a request meets it, each with what it guarantees.

Before any of this, the gunicorn worker (:mod:`qs_gateway.serving.worker`) has read the request
line and headers without holding a thread, and bounds how long the body may take. What happens
inside a view (authentication first, then the body) is :mod:`.declare`'s.
"""

from __future__ import annotations

import os
import socket
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, request
from werkzeug.middleware.proxy_fix import ProxyFix

from ..config import Settings
from ..extensions import EXTENSION_KEY
from ..observability import ANSWER_REQUEST_ID, REQUEST_ID_HEADER, account_for_request, start_request
from .browser import check_csrf, register_cors, set_cookies
from .payload import sent_a_body

# Offered by a server (the gateway's gunicorn worker) in the WSGI environ: a callable that reads
# what is left of the request body as far as it has arrived, and says whether that was all of it.
DRAIN_BODY = "qs_gateway.drain_body"

# On every answer, also those of the metrics listener.
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)
# Answers other than the /docs page (which sets its own) are data, never a page to run or frame.
DATA_CSP = "default-src 'none'; frame-ancestors 'none'"
NO_STORE = "no-store"
REVALIDATE = "private, no-cache"  # an answer with an ETag (see AnswerHeaders)
JSON_CONTENT_TYPE = ("Content-Type", "application/json")
# Headers that are the same on most answers, valid as written: a server may skip checking them.
CONSTANT_ANSWER_HEADERS = frozenset(
    (
        *SECURITY_HEADERS,
        ("Content-Security-Policy", DATA_CSP),
        ("Cache-Control", NO_STORE),
        ("Cache-Control", REVALIDATE),
        JSON_CONTENT_TYPE,
    )
)

Step = Callable[[Response], Response]


def register_request_hooks(app: Flask, settings: Settings) -> None:
    """Every per-request hook, in the order a request meets them."""
    # 1. WSGI middleware, outermost first (see wrap_wsgi).
    wrap_wsgi(app, settings)

    # 2. Before the view, in this order.
    before: tuple[Callable[[], None], ...] = (
        start_request,  # the request id and start time exist for every line written about it
        check_csrf,  # a write authenticated by the API-key cookie carries that key's CSRF token, or 403
    )

    @app.before_request
    def before_view() -> None:
        for step in before:
            step()

    # 3. After the view (or the error handler), in this order. Flask runs after-request hooks
    # last-registered first, so they are one hook here and flask-cors's (4.) runs before them.
    after: list[Step] = [
        finish_request_body,  # the connection is kept alive only if the body was read to its end
        set_cookies,  # the API-key cookie of a ?api_key= request and the CSRF cookie bound to it
    ]
    if settings.http.worker_header:
        after.append(worker_header(f"{socket.gethostname()}:{os.getpid()}"))  # which worker answered
    after += [
        unbuffered_streams,  # a proxy passes streams on as they are produced
        account_for_request,  # last: X-Request-ID, metrics, the request line and the audit line
    ]
    chain = tuple(after)

    @app.after_request
    def after_view(response: Response) -> Response:
        for step in chain:
            response = step(response)
        return response

    # 4. CORS (flask-cors): the configured origins may call the API with credentials; preflights
    # allow only the methods and headers the API uses. Runs before after_view (see 3.).
    register_cors(app, settings.browser.allow_origins)


def finish_request_body(response: Response) -> Response:
    """Read what is left of the request body (e.g. after an early 401) so that the connection can
    serve the next request; if the rest has not arrived, close the connection instead of waiting.
    A body over the size limit is never read."""
    environ = request.environ
    if not sent_a_body(environ):
        return response
    drain = environ.get(DRAIN_BODY)
    try:
        if drain is not None:
            finished = drain()
        else:  # another server (tests, a development server): its input is at hand or blocking
            stream = request.stream
            while stream.read(65536):
                pass
            finished = True
    except Exception:
        finished = False
    if not finished:
        response.headers["Connection"] = "close"
    return response


def worker_header(worker: str) -> Step:
    def name_the_worker(response: Response) -> Response:
        response.headers["X-Gateway-Worker"] = worker
        return response

    return name_the_worker


def unbuffered_streams(response: Response) -> Response:
    # A proxy must pass a stream on as it is produced (nginx honours this header); files (direct
    # passthrough) may be buffered.
    if response.is_streamed and not response.direct_passthrough:
        response.headers.setdefault("X-Accel-Buffering", "no")
    return response


# -- WSGI middleware ------------------------------------------------------------------------------


def wrap_wsgi(app: Flask, settings: Settings) -> None:
    """ProxyFix (innermost): the client's address, scheme, host and prefix from exactly
    ``proxy_hops`` proxies. The metrics listener: connections accepted on ``metrics_bind`` get
    ``/metrics`` and nothing else. The answer headers (outermost): on every answer."""
    http = settings.http
    hops = http.proxy_hops
    if hops:
        # Trust exactly as many X-Forwarded-* values as there are proxies: a client could forge more.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops)
    if http.metrics_bind:
        services = app.extensions[EXTENSION_KEY]
        app.wsgi_app = MetricsListener(app.wsgi_app, http.metrics_bind, lambda: services.metrics)
    app.wsgi_app = AnswerHeaders(app.wsgi_app)


def listener_address(bind: str) -> str | int:
    """What a connection accepted on ``bind`` sees as its local address: the socket path of a
    unix socket, else the port (the host part may be a wildcard or a name)."""
    if bind.startswith("unix:"):
        return bind[len("unix:") :]
    return int(bind.rpartition(":")[2])


class MetricsListener:
    """WSGI middleware: connections accepted on the metrics address get ``/metrics`` and nothing else.

    The listener is recognised from the connection's own socket (gunicorn puts it in the
    environ), never from headers a client could forge.
    """

    def __init__(self, app: Callable, bind: str, get_metrics: Callable[[], Any]) -> None:
        self.app = app
        self.address = listener_address(bind)
        self.get_metrics = get_metrics
        # Per connection, asked once: getsockname() is a system call, and under load a thread
        # that gave up the interpreter lock for one waits to win it back (up to a switch interval).
        self._known: weakref.WeakKeyDictionary[socket.socket, bool] = weakref.WeakKeyDictionary()

    def _on_metrics_listener(self, environ: dict) -> bool:
        sock = environ.get("gunicorn.socket")
        if sock is None:
            return False
        try:
            return self._known[sock]
        except KeyError:
            pass
        except TypeError:  # a server's socket stand-in that cannot be weakly referenced
            return self._accepted_on_metrics_bind(sock)
        on_metrics_bind = self._known[sock] = self._accepted_on_metrics_bind(sock)
        return on_metrics_bind

    def _accepted_on_metrics_bind(self, sock: Any) -> bool:
        local = sock.getsockname()
        if isinstance(self.address, str):
            return local == self.address or local == self.address.encode()
        return isinstance(local, tuple) and local[1] == self.address

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if not self._on_metrics_listener(environ):
            return self.app(environ, start_response)
        collected = self.get_metrics()
        if environ.get("PATH_INFO", "").rstrip("/") != "/metrics" or collected is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"Not Found: this address serves /metrics only\n"]
        body, content_type = collected.exposition()
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        start_response("200 OK", headers)
        return [body]


# Replaced on every answer: a view's own are dropped.
_REPLACED_NAMES = frozenset(name.lower() for name, _ in (*SECURITY_HEADERS, (REQUEST_ID_HEADER, "")))


class AnswerHeaders:
    """WSGI middleware: the security headers on every answer (replacing any the view set), the
    request's ``X-Request-ID`` (see :mod:`qs_gateway.observability`), the data CSP and the cache
    policy unless the view set its own. Answers carry credentials' data
    (and tokens): nothing may be stored, by a browser or a proxy. An answer with an ETag (RE
    Manager's uid of what it shows) may be kept by the browser for revalidation
    (``If-None-Match`` → 304), never by a shared cache.

    Added to the header list the server receives rather than through the response object:
    they are the same on every answer, and werkzeug would check each one again per request."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, with_answer_headers(headers, environ.get(ANSWER_REQUEST_ID)), exc_info)

        return self.app(environ, start)


def with_answer_headers(headers: list[tuple[str, str]], request_id: str | None = None) -> list[tuple[str, str]]:
    """``headers`` with the security headers (and the request id, if given) replaced and the CSP
    and cache policy defaulted."""
    answer = []
    csp = cache = etag = False
    for header in headers:
        name = header[0].lower()
        if name in _REPLACED_NAMES:
            if request_id is None and name == "x-request-id":
                answer.append(header)
            continue
        if name == "content-security-policy":
            csp = True
        elif name == "cache-control":
            cache = True
        elif name == "etag":
            etag = True
        answer.append(header)
    answer += SECURITY_HEADERS
    if request_id is not None:
        answer.append((REQUEST_ID_HEADER, request_id))
    if not csp:
        answer.append(("Content-Security-Policy", DATA_CSP))
    if not cache:
        answer.append(("Cache-Control", REVALIDATE if etag else NO_STORE))
    return answer
