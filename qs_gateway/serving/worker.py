"""The gateway's gunicorn worker: gthread, made safe to expose to slow or silent clients.

gunicorn's gthread worker gives a connection to a thread as soon as its first byte arrives (or
after 5 s of silence), and the thread then waits for the rest of the request line, the headers
and the body as long as the client likes: sixteen slow connections take every thread. Here:

* **No thread waits for headers.** A request is served by a thread only once its request line
  and headers have arrived whole, within ``header_timeout`` of the connection (or of the first
  byte of the next request on a kept-alive one); otherwise it is answered 408 and closed
  (silently, if it never sent a byte). Headers over 64 KiB: 431. The event loop reads heads as
  they come; on a kept-alive connection a thread first takes what has arrived without waiting
  (usually the whole head) and gives a part back to the loop.
* **Bodies are read at a pace** (:mod:`.pacing`): the application authenticates before it reads
  a body, so a request without credentials is answered 401 at once; a thread waits for a body
  only within ``body_timeout`` / ``body_min_rate`` (then 408), and at most ``threads -
  reserved_threads`` threads wait at once (then 503): the rest are kept for requests that have
  arrived whole.
* **A body the application did not read** is drained only as far as it has arrived; if more is
  to come, the connection is closed (the answer says so) instead of waiting for it.
* **Connections are spread over the workers** (:mod:`.turns`): a worker lets another that holds
  fewer connections take a new one, for at most 10 ms.
* **Closing never blocks the event loop**: the lingering read that lets a client receive the
  last answer before the connection goes (RFC 9112 section 9.6) is done by the loop as data
  arrives, for at most 2 s, instead of a blocking read in the loop's thread.

TLS must be terminated in front of the gateway (nginx, see deploy/nginx.conf).
"""

from __future__ import annotations

import errno
import os
import select
import selectors
import socket
import threading
import time
from functools import partial
from typing import Any

from gunicorn.workers.base import Worker
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn, ThreadWorker

from ..api.hooks import DRAIN_BODY, SECURITY_HEADERS
from ..api.payload import sent_a_body
from ..config.gateway import ServingSettings
from ..extensions import EXTENSION_KEY
from .answers import answer_start
from .pacing import BodyPace, PacedUnreader, WaitingPlaces, raw_answer
from .turns import RECHECK_SECONDS, YIELD_AT_MOST_SECONDS, shared_counts

MAX_HEAD = 64 * 1024
HEAD_CHUNK = 16 * 1024
LINGER_SECONDS = 2.0
AWAIT_HEAD = object()  # a thread's answer: the head is not whole yet, the event loop awaits it
HEADER_TIMEOUT_DETAIL = "Request timeout: the request line and headers did not arrive in time"
HEADERS_TOO_LARGE_DETAIL = f"Request headers are larger than {MAX_HEAD} bytes"


class GatewayWorker(ThreadWorker):
    accept_slot: int | None = None  # in the shared connection counts (set by the master, see .turns)
    yield_at_most = YIELD_AT_MOST_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._conns = 0
        self.counts = None  # the shared connection counts, once this worker has claimed its slot
        self.yielding_since: float | None = None  # a new connection is left to a worker with fewer
        self.accepting_again_at: float | None = None  # listeners are off until then
        super().__init__(*args, **kwargs)
        self.heads: dict[TConn, float] = {}  # connections whose headers are awaited -> deadline
        self.lingering: dict[socket.socket, float] = {}  # closing connections -> when to give up
        self.current = threading.local()  # the PacedUnreader of the request a thread serves
        self.header_timeout = ServingSettings().header_timeout
        self.pace = BodyPace(ServingSettings().body_timeout, ServingSettings().body_min_rate)
        self.places = WaitingPlaces(1)
        self.keepalive_seconds = self.cfg.keepalive  # read once: gunicorn's cfg attributes are slow

    def init_process(self) -> None:
        if self.cfg.is_ssl:
            raise RuntimeError("qs-gateway does not terminate TLS itself: put nginx in front (deploy/nginx.conf)")
        counts = shared_counts()
        if counts is not None and self.accept_slot is not None:
            counts.claim(self.accept_slot, os.getpid())
            self.counts = counts
        super().init_process()

    @property
    def nr_conns(self) -> int:
        return self._conns

    @nr_conns.setter
    def nr_conns(self, value: int) -> None:
        # gthread counts its connections here; the other workers read the count (see .turns)
        self._conns = value
        if self.counts is not None:
            self.counts.hold(self.accept_slot, value)

    def handle_quit(self, sig: int, frame: Any) -> None:
        """SIGQUIT/SIGINT: stop at once, as gunicorn's base worker does, without gthread's
        ``tpool.shutdown()`` first: that takes the pool's lock, which this same (main) thread holds
        while it is inside ``tpool.submit()``; a signal arriving then deadlocked the worker until
        the arbiter killed it after the graceful timeout. Exiting joins the pool's threads anyway."""
        Worker.handle_quit(self, sig, frame)

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app = self.wsgi
        services = getattr(app, "extensions", {}).get(EXTENSION_KEY)
        serving = services.settings.serving if services is not None else ServingSettings()
        self.header_timeout = serving.header_timeout
        self.pace = BodyPace(serving.body_timeout, serving.body_min_rate)
        self.places = WaitingPlaces(max(1, self.cfg.threads - serving.reserved_threads))
        if hasattr(app, "wsgi_app"):
            app.wsgi_app = partial(self._serve_paced, app.wsgi_app)

    # -- in a thread ----------------------------------------------------------------------------

    def _serve_paced(self, app: Any, environ: dict, start_response: Any) -> Any:
        """Offer the application a drain that never waits, honour its ``Connection: close``
        (gunicorn drops an application's hop-by-hop headers) and hand its constant headers to
        gunicorn's answer unchecked."""
        if sent_a_body(environ):
            unreader = getattr(self.current, "unreader", None)
            if unreader is not None:
                environ[DRAIN_BODY] = partial(unreader.drain, environ["wsgi.input"])

        return app(environ, answer_start(start_response))

    def handle(self, conn: TConn) -> Any:
        unreader = conn.parser.unreader
        unreader.begin()
        self.current.unreader = unreader
        try:
            return super().handle(conn)
        finally:
            self.current.unreader = None
            unreader.end()

    def _keepalive_after(self, conn: TConn, keepalive: bool) -> bool:
        return bool(keepalive) and conn.parser.unreader.finish_without_waiting(conn.parser.finish_body)

    def _next_request(self, conn: TConn) -> Any:
        """Serve a kept-alive connection's next request if its head has arrived whole; else hand
        what came back to the event loop (AWAIT_HEAD), which awaits the rest under the header
        deadline: no thread waits for a client's bytes."""
        try:
            data = conn.sock.recv(HEAD_CHUNK)  # non-blocking (see finish_request)
        except (BlockingIOError, InterruptedError):
            data = None
        except OSError:
            data = b""
        if not data:
            conn.head = bytearray() if data is None else None  # None: the client went away
            return AWAIT_HEAD
        if data.find(b"\r\n\r\n") < 0:
            conn.head = bytearray(data)
            return AWAIT_HEAD
        conn.parser.unreader.unread(data)
        conn.data_ready = True
        return self.handle(conn)

    # -- in the event loop ------------------------------------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        if self.counts is not None and self._yields_turn():
            return
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client_sock, client_addr, listener.getsockname())  # non-blocking
        self._await_head(conn, bytearray())

    def _yields_turn(self) -> bool:
        """Whether to leave the connection waiting on the listener to a worker holding fewer:
        then the listeners are off until RECHECK_SECONDS have passed (see murder_pending)."""
        if not self.counts.another_holds_fewer(self.accept_slot, self._conns):
            self.yielding_since = None
            return False
        now = time.monotonic()
        if self.yielding_since is None:
            self.yielding_since = now
        elif now - self.yielding_since >= self.yield_at_most:
            self.yielding_since = None  # the other did not take it in time: take it here
            return False
        self.accepting_again_at = now + RECHECK_SECONDS
        ThreadWorker.set_accept_enabled(self, False)
        return True

    def set_accept_enabled(self, enabled: bool) -> None:
        # gthread's loop turns the listeners on every round unless the worker is full
        if enabled and self.accepting_again_at is not None:
            return
        if not enabled and not self.alive and self.counts is not None:
            self.counts.withdraw(self.accept_slot)  # stopping: the others must not yield to it
        super().set_accept_enabled(enabled)

    def _resume_accepting(self, now: float) -> None:
        if self.accepting_again_at is None or now < self.accepting_again_at:
            return
        self.accepting_again_at = None
        try:
            waiting = select.select(self.sockets, [], [], 0)[0]
        except (OSError, ValueError):
            waiting = []
        if not waiting:  # another worker took it: the next connection starts a new wait
            self.yielding_since = None

    def on_client_socket_readable(self, conn: TConn, client: Any) -> None:
        # The next request on a kept-alive connection: a thread takes what has arrived without
        # waiting (the loop's own recv would give up the GIL, and win it back only after a busy
        # request thread's switch interval, once per request); a part of a head comes back here.
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        future = self.tpool.submit(self._next_request, conn)
        future.add_done_callback(lambda done: self.method_queue.defer(self.finish_request, conn, done))

    def _await_head(self, conn: TConn, head: bytearray) -> None:
        """Read the request line and headers as they come (what is there already at once)."""
        conn.head = head
        conn.head_registered = False
        self.heads[conn] = time.monotonic() + self.header_timeout
        if b"\r\n\r\n" in head:
            self._dispatch(conn)
            return
        self._read_head(conn)
        if conn in self.heads:
            self._register(conn.sock, partial(self._on_head_readable, conn))
            conn.head_registered = True

    def _register(self, sock: socket.socket, callback: Any) -> None:
        try:
            self.poller.register(sock, selectors.EVENT_READ, callback)
        except KeyError:
            # The descriptor is reused: a socket registered before was closed by another thread
            # (a websocket's reader closes its socket when it ends). Forget that one.
            self.poller.unregister(sock)
            self.poller.register(sock, selectors.EVENT_READ, callback)

    def _on_head_readable(self, conn: TConn, _fileobj: Any) -> None:
        self._read_head(conn)

    def _read_head(self, conn: TConn) -> None:
        try:
            data = conn.sock.recv(HEAD_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away
            self._forget_head(conn)
            self.nr_conns -= 1
            conn.close()
            return
        head = conn.head
        searched_from = max(0, len(head) - 3)
        head += data
        if head.find(b"\r\n\r\n", searched_from) >= 0:
            self._forget_head(conn)
            self._dispatch(conn)
        elif len(head) > MAX_HEAD:
            self._forget_head(conn)
            self._refuse(conn, "431 Request Header Fields Too Large", HEADERS_TOO_LARGE_DETAIL)

    def _forget_head(self, conn: TConn) -> None:
        self.heads.pop(conn, None)
        if conn.head_registered:
            conn.head_registered = False
            self.poller.unregister(conn.sock)

    def _dispatch(self, conn: TConn) -> None:
        """The headers are here: the request gets a thread, which parses them from the buffer."""
        if not conn.initialized:
            conn.init()
            conn.parser.unreader = PacedUnreader(conn.sock, self.pace, self.places)
        conn.parser.unreader.unread(bytes(conn.head))
        conn.head = None
        conn.data_ready = True  # never wait in a thread for a first byte
        self.enqueue_req(conn)

    def _refuse(self, conn: TConn, status: str, detail: str) -> None:
        try:
            conn.sock.send(raw_answer(status, detail, SECURITY_HEADERS))
        except OSError:
            pass
        self.nr_conns -= 1
        self._linger(conn.sock)

    def murder_pending(self) -> None:
        """Called by the event loop after every wait: ends what is overdue. Both tables are in
        deadline order (each entry was added a fixed time after the one before)."""
        super().murder_pending()
        now = time.monotonic()
        self._resume_accepting(now)
        while self.heads:
            conn, deadline = next(iter(self.heads.items()))
            if deadline > now and (self.alive or conn.head):
                break
            self._forget_head(conn)
            if conn.head:
                self._refuse(conn, "408 Request Timeout", HEADER_TIMEOUT_DETAIL)
            else:  # never said a word (or the worker stops): nothing to answer
                self.nr_conns -= 1
                conn.close()
        while self.lingering:
            sock, deadline = next(iter(self.lingering.items()))
            if deadline > now:
                break
            self._close_lingering(sock)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        deadlines = [next(iter(pending.values())) for pending in (self.heads, self.lingering) if pending]
        if self.accepting_again_at is not None:
            deadlines.append(self.accepting_again_at)
        if deadlines:
            timeout = max(0.0, min(timeout, min(deadlines) - time.monotonic()))
        super().wait_for_and_dispatch_events(timeout)

    def finish_request(self, conn: TConn, fs: Any) -> None:
        """A thread is done with a connection: keep it alive (its next request's headers are read
        by the loop, also when the client sent them already), or close it without blocking."""
        try:
            result = fs.result() if not fs.cancelled() else False
        except Exception:
            result = False
        if result is AWAIT_HEAD:
            head, conn.head = conn.head, None
            if head is not None:
                self._await_head(conn, head)
            else:  # the client went away
                self.nr_conns -= 1
                conn.close()
            return
        keep = bool(result)
        if keep:
            try:
                conn.sock.setblocking(False)
            except OSError:
                keep = False
        if not keep:
            self.nr_conns -= 1
            self._linger(conn.sock)
            return
        pipelined = conn.parser.unreader.take_buffered()
        if pipelined:
            self._await_head(conn, bytearray(pipelined))
            return
        conn.timeout = time.monotonic() + self.keepalive_seconds  # as conn.set_timeout()
        if not self.alive:
            conn.timeout = min(conn.timeout, time.monotonic() + STOP_KEEPALIVE_LINGER)
        self.keepalived_conns.append(conn)
        self._register(conn.sock, partial(self.on_client_socket_readable, conn))

    def _linger(self, sock: socket.socket) -> None:
        """Close after the answer has gone: stop sending, read (and drop) what the client still
        sends until it closes too, or for LINGER_SECONDS at most. On a descriptor of its own: the
        thread that served the connection may still close its socket (a websocket's reader)."""
        try:
            own = sock.dup()
        except OSError:  # closed already
            return
        finally:
            sock.close()
        try:
            own.setblocking(False)
            own.shutdown(socket.SHUT_WR)
            self._register(own, self._read_lingering)
        except (OSError, ValueError):
            own.close()
            return
        self.lingering[own] = time.monotonic() + LINGER_SECONDS

    def _read_lingering(self, sock: socket.socket) -> None:
        try:
            if sock.recv(65536):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._close_lingering(sock)

    def _close_lingering(self, sock: socket.socket) -> None:
        self.lingering.pop(sock, None)
        try:
            self.poller.unregister(sock)
        except (KeyError, ValueError, OSError):
            pass
        sock.close()
