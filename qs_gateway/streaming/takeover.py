"""Taking a client connection over from gunicorn, so that no request thread is held by a stream.

A WSGI application answers and returns; gunicorn then closes the connection (or keeps it for the
next request). A stream instead needs the connection for as long as the client listens. The
stream endpoints therefore take the connection: they keep a duplicate of its descriptor, and
point gunicorn's descriptor at a decoy, an already-closed socket pair, so that whatever gunicorn
does next to "its" connection (a graceful shutdown, a close) happens to the decoy. The view
then ends the request by raising ``StopIteration`` from the response, which gunicorn's workers
(sync and gthread) take as "close this connection, write nothing", at debug level.

Only a plain socket is taken (gunicorn's own TLS would need its TLS state too); without one the
stream is served the ordinary way, holding its thread.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Mapping
from typing import Any

SERVER_SOCKET = "gunicorn.socket"


def can_take(environ: Mapping[str, Any]) -> bool:
    sock = environ.get(SERVER_SOCKET)
    return isinstance(sock, socket.socket) and not isinstance(sock, ssl.SSLSocket) and sock.fileno() >= 0


def take(environ: Mapping[str, Any]) -> socket.socket:
    """The request's connection, ours from now on (blocking, as gunicorn had it)."""
    server_side = environ[SERVER_SOCKET]
    ours = server_side.dup()
    decoy, its_peer = socket.socketpair()
    with decoy, its_peer:
        os.dup2(decoy.fileno(), server_side.fileno(), inheritable=False)
    ours.setblocking(True)
    return ours


def end_request() -> None:
    """Called by a response instead of returning a body: the connection is no longer gunicorn's.

    gunicorn closes it (the decoy, that is) without writing anything and logs "Closing
    connection" at debug level."""
    raise StopIteration()
