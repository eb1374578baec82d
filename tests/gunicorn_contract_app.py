"""A WSGI application shaped like the gateway's Flask app, for gunicorn with the gateway's worker
(tests/test_gunicorn_contract.py): it carries its serving settings where the worker looks for
them, and its ``__call__`` goes through ``wsgi_app``, which the worker wraps.

* ``/plain``: 200 with a short body;
* ``/close``: 200 with ``Connection: close`` (the worker must make gunicorn close);
* ``/body``: reads the whole body (200 with its length), or 408 / 503 as the worker's pace says;
* ``/taken``: takes the connection over (qs_gateway.streaming.takeover) and echoes on it from a
  thread of its own, after a ``101``, until the client closes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from types import SimpleNamespace

from qs_gateway.config.gateway import ServingSettings
from qs_gateway.exceptions import ClientTooSlow, ServiceUnavailable
from qs_gateway.extensions import EXTENSION_KEY
from qs_gateway.serving.worker import GatewayWorker
from qs_gateway.streaming.takeover import end_request, take

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
SWITCHED = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n"


def _echo(connection) -> None:  # noqa: ANN001
    with connection:
        while data := connection.recv(4096):
            connection.sendall(data)


class ContractApp:
    extensions = {
        EXTENSION_KEY: SimpleNamespace(
            settings=SimpleNamespace(
                serving=ServingSettings(header_timeout=HEADER_TIMEOUT, body_timeout=BODY_TIMEOUT, reserved_threads=0)
            )
        )
    }

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        return self.wsgi_app(environ, start_response)

    def wsgi_app(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        if path == "/taken":
            connection = take(environ)
            connection.sendall(SWITCHED)
            threading.Thread(target=_echo, args=(connection,), daemon=True).start()
            end_request()
        status, headers, body = "200 OK", [("Content-Type", "text/plain")], b"plain"
        if path == "/close":
            headers.append(("Connection", "close"))
        elif path == "/body":
            try:
                body = str(len(environ["wsgi.input"].read())).encode()
            except ClientTooSlow:
                status, body = "408 Request Timeout", b"too slow"
            except ServiceUnavailable:
                status, body = "503 Service Unavailable", b"busy"
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [body]


app = ContractApp()


class PatientWorker(GatewayWorker):
    """The gateway's worker, waiting as long as it takes for a worker that holds fewer connections
    to accept a new one: which worker takes a connection is then decided by the counts alone
    (tests/test_accept_turns.py), not by how soon a worker is scheduled."""

    yield_at_most = 120.0
