"""The private parts of gunicorn that the gateway's worker stands on, each exercised and named.

qs_gateway/serving/worker.py, serving/pacing.py and streaming/takeover.py build on gthread's
internals, which gunicorn may change in any release: the install pins the tested series
(setup.cfg, ``gunicorn==27.0.*``; docs/deployment.md, "Upgrading gunicorn"). Every check here
says which internal it is about, so that an upgrade that changes one fails with its name.
The first tests use gunicorn's classes on socket pairs; the last ones run gunicorn itself with
the gateway's worker and a small application (tests/gunicorn_contract_app.py).
"""

from __future__ import annotations

import contextlib
import inspect
import re
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import gunicorn
import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers import gthread

from qs_gateway.api.hooks import CONSTANT_ANSWER_HEADERS
from qs_gateway.exceptions import ClientTooSlow
from qs_gateway.serving.answers import answer_start
from qs_gateway.serving.pacing import BodyPace, PacedUnreader, WaitingPlaces
from qs_gateway.serving.stack import ManagedProcess, free_port
from qs_gateway.serving.worker import GatewayWorker
from qs_gateway.streaming.takeover import SERVER_SOCKET

from .gunicorn_contract_app import BODY_TIMEOUT, HEADER_TIMEOUT, SWITCHED
from .support import exchange, read_answer

ROOT = Path(__file__).resolve().parents[1]
PACE = BodyPace(timeout=0.3, min_rate=1024)
GET_PLAIN = b"GET /plain HTTP/1.1\r\nHost: contract\r\n\r\n"


def holds(condition: object, internal: str) -> None:
    """Fail naming the internal of gunicorn (and its version) that no longer behaves as relied on."""
    assert condition, f"gunicorn {gunicorn.__version__}: {internal}"


def test_the_installed_gunicorn_is_the_pinned_series():
    pin = re.search(r"^\s*gunicorn==(\d+\.\d+)\.\*\s*$", (ROOT / "setup.cfg").read_text(), re.MULTILINE)
    assert pin is not None, "setup.cfg must pin gunicorn to a minor release series (gunicorn==X.Y.*)"
    holds(gunicorn.__version__.startswith(pin.group(1) + "."), f"is not the pinned series {pin.group(1)}.*")


# The hooks of gthread.ThreadWorker that GatewayWorker overrides or calls, with their parameters:
# the event loop calls them by these names (accept for a listener, murder_pending and
# wait_for_and_dispatch_events every round; enqueue_req -> handle in a thread -> finish_request).
WORKER_HOOKS = {
    "init_process": [],
    "load_wsgi": [],
    "accept": ["listener"],
    "set_accept_enabled": ["enabled"],
    "on_client_socket_readable": ["conn", "client"],
    "murder_pending": [],
    "wait_for_and_dispatch_events": ["timeout"],
    "enqueue_req": ["conn"],
    "handle": ["conn"],
    "_keepalive_after": ["conn", "keepalive"],
    "finish_request": ["conn", "fs"],
}


@pytest.mark.parametrize("name", WORKER_HOOKS)
def test_gthread_worker_hooks(name):
    hook = getattr(gthread.ThreadWorker, name, None)
    holds(callable(hook), f"ThreadWorker.{name} is gone")
    parameters = list(inspect.signature(hook).parameters)[1:]
    holds(parameters == WORKER_HOOKS[name], f"ThreadWorker.{name} takes {parameters}, not {WORKER_HOOKS[name]}")


def test_gthread_event_loop_calls_the_hooks_the_worker_overrides():
    run, handle = inspect.getsource(gthread.ThreadWorker.run), inspect.getsource(gthread.ThreadWorker.handle)
    for call in ("self.wait_for_and_dispatch_events(", "self.murder_pending()"):
        holds(call in run, f"ThreadWorker.run no longer calls {call}...) every round")
    holds("self.accept" in inspect.getsource(gthread.ThreadWorker.set_accept_enabled),
          "listeners are no longer registered with ThreadWorker.accept")  # fmt: skip
    holds("self.set_accept_enabled(" in run, "ThreadWorker.run no longer turns the listeners on and off with "
          "set_accept_enabled (the worker keeps them off while it yields its turn, serving/turns.py)")  # fmt: skip
    holds(all("self.nr_conns -= 1" in inspect.getsource(getattr(gthread.ThreadWorker, name))
              for name in ("murder_keepalived", "finish_request")),
          "ThreadWorker no longer counts its connections in self.nr_conns (the worker shares that count)")  # fmt: skip
    holds("self._keepalive_after(" in handle, "ThreadWorker.handle no longer asks _keepalive_after")
    holds(isinstance(gthread.STOP_KEEPALIVE_LINGER, int | float), "gthread.STOP_KEEPALIVE_LINGER is gone")
    enqueue = inspect.getsource(gthread.ThreadWorker.enqueue_req)
    holds("self.tpool.submit(" in enqueue and "self.method_queue.defer(self.finish_request" in enqueue,
          "ThreadWorker.enqueue_req no longer submits to self.tpool and defers finish_request to "
          "self.method_queue (the worker does the same for a kept-alive connection's next request)")  # fmt: skip


def test_a_quit_signal_inside_tpool_submit_does_not_deadlock_the_worker():
    """gthread's handle_quit calls tpool.shutdown(), which takes the lock that tpool.submit()
    holds; the event loop's thread submits work and receives the signals. The worker's own
    handle_quit must exit without taking that lock."""
    pool_source = inspect.getsource(gthread.ThreadWorker.handle_quit)
    holds("self.tpool.shutdown(" in pool_source,
          "ThreadWorker.handle_quit no longer shuts the pool down (GatewayWorker.handle_quit may go)")  # fmt: skip

    class LockedPool:
        def shutdown(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("handle_quit took the pool's lock, which tpool.submit() holds: deadlock")

    worker = SimpleNamespace(alive=True, cfg=SimpleNamespace(worker_int=lambda worker: None), tpool=LockedPool())
    with pytest.raises(SystemExit):
        GatewayWorker.handle_quit(worker, signal.SIGQUIT, None)
    assert worker.alive is False


@pytest.fixture
def connection() -> Iterator[tuple[gthread.TConn, socket.socket]]:
    """A TConn over one end of a socket pair, initialized, with the gateway's unreader; and the client end."""
    server, client = socket.socketpair()
    conn = gthread.TConn(Config(), server, "127.0.0.1", ("127.0.0.1", 60000))
    holds(server.getblocking() is False, "TConn() no longer makes its socket non-blocking (the loop reads heads)")
    conn.head, conn.head_registered = bytearray(), False  # the worker keeps its own state on a TConn
    holds(not conn.initialized, "TConn.initialized is not False before TConn.init()")
    conn.init()
    holds(conn.initialized and conn.sock is server, "TConn.init() does not initialize the same socket")
    holds(isinstance(conn.parser.unreader, SocketUnreader), "TConn.parser.unreader is not a SocketUnreader")
    conn.parser.unreader = PacedUnreader(conn.sock, PACE, WaitingPlaces(1))
    yield conn, client
    conn.close()
    client.close()


def test_tconn_data_ready_skips_the_wait_for_a_first_byte(connection):
    conn, _ = connection
    conn.data_ready = True
    started = time.monotonic()
    holds(conn.wait_for_data(5) is True and time.monotonic() - started < 1,
          "TConn.data_ready=True no longer skips TConn.wait_for_data (threads would wait for first bytes)")  # fmt: skip
    conn.set_timeout()
    holds(conn.timeout > time.monotonic(), "TConn.set_timeout() no longer sets TConn.timeout (keep-alive)")


def test_headers_read_by_the_loop_are_parsed_from_the_unreader(connection):
    conn, _ = connection
    head = b"POST /body HTTP/1.1\r\nHost: contract\r\nContent-Length: 5\r\n\r\n"
    conn.parser.unreader.unread(head + b"hello" + GET_PLAIN)  # nothing is on the socket itself
    request = next(conn.parser)
    holds((request.method, request.path) == ("POST", "/body"),
          "next(TConn.parser) does not parse the request the worker put back with unreader.unread()")  # fmt: skip
    holds(("CONTENT-LENGTH", "5") in request.headers, "Request.headers lost the headers read by the loop")
    holds(request.body.read() == b"hello", "Request.body does not read what unreader.unread() put back")
    holds(conn.parser.unreader.take_buffered() == GET_PLAIN,
          "Unreader.take_buffered() does not give the pipelined next request back")  # fmt: skip
    holds(conn.parser.unreader.take_buffered() == b"", "Unreader.take_buffered() does not empty the buffer")


def test_a_body_is_read_through_unreader_chunk_and_its_pace(connection):
    conn, client = connection
    unreader = conn.parser.unreader
    holds(isinstance(unreader.mxchunk, int) and isinstance(unreader.max_body_chunk, int),
          "SocketUnreader.mxchunk / max_body_chunk are gone (PacedUnreader.chunk sizes reads by them)")  # fmt: skip
    unreader.unread(b"POST /body HTTP/1.1\r\nHost: contract\r\nContent-Length: 10\r\n\r\n")
    request = next(conn.parser)
    client.sendall(b"abc")  # 3 of 10 bytes: the rest never comes
    started = time.monotonic()
    with pytest.raises(ClientTooSlow):
        while request.body.read(1024):
            pass
    holds(unreader.received == 3, "the body was not read through SocketUnreader.chunk()")
    holds(time.monotonic() - started < PACE.timeout + 2, "the body read waited beyond the pace: chunk() is bypassed")


def test_finish_body_drains_only_what_came_and_honours_max_bytes(connection):
    conn, client = connection
    unreader = conn.parser.unreader
    unreader.unread(b"POST /body HTTP/1.1\r\nHost: contract\r\nContent-Length: 10\r\n\r\nabc")
    next(conn.parser)  # the application reads none of the body
    client.sendall(b"defghij" + GET_PLAIN)  # all of it came (in two pieces), and the next request
    holds(unreader.finish_without_waiting(conn.parser.finish_body) is True,
          "Parser.finish_body(max_bytes=) does not report a body that had arrived as drained")  # fmt: skip
    holds(next(conn.parser).path == "/plain", "after Parser.finish_body() the next request is not where it should be")
    unreader.unread(b"POST /body HTTP/1.1\r\nHost: contract\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000)
    next(conn.parser)
    holds(conn.parser.finish_body(max_bytes=1024) is False,
          "Parser.finish_body(max_bytes=1024) drained 5000 bytes: the cap is ignored")  # fmt: skip
    holds(conn.parser.finish_body() is True, "Parser.finish_body() does not drain the rest of a body that came")
    unreader.unread(b"POST /body HTTP/1.1\r\nHost: contract\r\nContent-Length: 10\r\n\r\nabc")
    next(conn.parser)
    started = time.monotonic()
    holds(unreader.finish_without_waiting(conn.parser.finish_body) is False and time.monotonic() - started < 1,
          "Parser.finish_body(max_bytes=) waited for a body that had not arrived, or called it drained")  # fmt: skip


def test_the_response_and_environ_the_worker_and_takeover_use(connection):
    conn, _ = connection
    conn.parser.unreader.unread(GET_PLAIN)
    request = next(conn.parser)
    response, environ = wsgi.create(request, conn.sock, conn.client, conn.server, conn.cfg)
    holds(environ.get(SERVER_SOCKET) is conn.sock, f"environ[{SERVER_SOCKET!r}] is not the connection's socket")
    holds(getattr(response.start_response, "__self__", None) is response,
          "start_response is no longer a bound method of gunicorn's Response")  # fmt: skip
    response.start_response("200 OK", [("Content-Length", "0")])
    holds(not response.should_close(), "Response.should_close() is true for a kept-alive answer")
    response.force_close()
    holds(response.should_close(), "Response.force_close() no longer makes Response.should_close() true")


def test_headers_added_to_the_response_after_start_response_are_sent(connection):
    # qs_gateway/serving/answers.py: the gateway's constant headers skip Response.process_headers
    # and go straight into Response.headers, the list Response.send_headers() writes.
    conn, client = connection
    conn.parser.unreader.unread(GET_PLAIN)
    response, _ = wsgi.create(next(conn.parser), conn.sock, conn.client, conn.server, conn.cfg)
    start = answer_start(response.start_response)
    constant = sorted(CONSTANT_ANSWER_HEADERS)[:2]
    write = start("200 OK", [*constant, ("Content-Length", "2"), ("Connection", "close"), ("X-Own", "a b ")])
    write(b"ok")
    client.settimeout(5)
    head = read_answer(client, 5, enough=b"\r\n\r\nok").partition(b"\r\n\r\n")[0].decode("latin-1")
    lines = head.split("\r\n")
    for name, value in constant:
        holds(
            lines.count(f"{name}: {value}") == 1,
            f"Response.headers appended to is not what send_headers() sends ({name})",
        )
    holds("X-Own: a b" in lines, "Response.process_headers() no longer checks and strips the other headers")
    holds("Connection: close" in lines and response.should_close(), "Response.force_close() is not honoured")


# -- gunicorn itself, with the gateway's worker ---------------------------------------------------


@pytest.fixture(scope="module")
def gunicorn_process(tmp_path_factory) -> Iterator[tuple[tuple[str, int], ManagedProcess]]:
    """gunicorn with the gateway's worker (1 x 4) serving tests/gunicorn_contract_app.py: (address, process)."""
    port, workdir = free_port(), tmp_path_factory.mktemp("gunicorn-contract")
    (workdir / "empty.conf.py").write_text("")  # not the checkout's gunicorn.conf.py
    process = ManagedProcess(
        "gunicorn",
        [sys.executable, "-m", "gunicorn", "--config", str(workdir / "empty.conf.py"),
         "--worker-class", "qs_gateway.serving.worker.GatewayWorker",
         "--workers", "1", "--threads", "4", "--bind", f"127.0.0.1:{port}", "--log-level", "debug",
         "tests.gunicorn_contract_app:app"],
        workdir / "gunicorn.log", cwd=ROOT,
    ).start()  # fmt: skip
    try:
        process.wait_until(lambda: _plain_is_served(("127.0.0.1", port)), 30, "serving")
        yield ("127.0.0.1", port), process
    finally:
        process.stop()


@pytest.fixture
def served(gunicorn_process) -> tuple[str, int]:
    return gunicorn_process[0]


def _plain_is_served(address: tuple[str, int]) -> bool:
    return exchange(address, GET_PLAIN, 5, first=True).startswith(b"HTTP/1.1 200")


def test_a_taken_connection_is_left_alone_by_gunicorn(gunicorn_process):
    served, process = gunicorn_process
    closings = process.log_path.read_text().count("Closing connection")
    with socket.create_connection(served, timeout=5) as sock:
        sock.sendall(b"GET /taken HTTP/1.1\r\nHost: contract\r\n\r\n")
        holds(read_answer(sock, 5, enough=SWITCHED) == SWITCHED,
              "a response raising StopIteration made gunicorn write to the taken connection")  # fmt: skip
        process.wait_until(lambda: process.log_path.read_text().count("Closing connection") > closings, 10,
                           "logging that it closes its connection (StopIteration from the response)")  # fmt: skip
        holds(_plain_is_served(served), "the worker stopped serving after a take-over")
        for word in (b"one", b"two"):
            sock.sendall(word)
            holds(read_answer(sock, 5, enough=word) == word,
                  "gunicorn closed or read the connection it handed over (the decoy did not stand in)")  # fmt: skip


def test_keep_alive_pipelining_and_connection_close(served):
    answers = exchange(served, GET_PLAIN * 3 + b"GET /close HTTP/1.1\r\nHost: contract\r\n\r\n", 5)
    holds(answers.count(b"HTTP/1.1 200") == 4, "pipelined requests on a kept-alive connection were not all served")
    holds(answers.endswith(b"<closed>") and b"connection: close" in answers.lower(),
          "an application's Connection: close did not close the connection (Response.force_close)")  # fmt: skip


def test_headers_are_read_by_the_loop_and_cut_in_time(served):
    with socket.create_connection(served, timeout=5) as sock:
        sock.sendall(GET_PLAIN[:10])
        sock.sendall(GET_PLAIN[10:])  # a second write: the loop puts the head together
        holds(read_answer(sock, 5, first=True).startswith(b"HTTP/1.1 200"), "a head in two writes was not served")
    started = time.monotonic()
    answer = exchange(served, GET_PLAIN[:20], HEADER_TIMEOUT + 10)
    holds(answer.startswith(b"HTTP/1.1 408") and answer.endswith(b"<closed>"),
          f"an unfinished head was not cut with 408 (murder_pending, ...): {answer[:80]!r}")  # fmt: skip
    holds(time.monotonic() - started < HEADER_TIMEOUT + 5, "an unfinished head was cut late")


def test_a_kept_alive_connections_next_head_never_holds_a_thread(served):
    """A thread takes a kept-alive connection's next request only as far as it has arrived
    (ThreadWorker.tpool.submit, method_queue.defer back to the loop): half heads on more
    connections than the worker has threads leave it serving, and each is finished or cut."""
    plain = b"\r\n\r\nplain"
    with contextlib.ExitStack() as stack:
        stalled = []
        for _ in range(6):  # the worker has 4 threads
            sock = stack.enter_context(socket.create_connection(served, timeout=5))
            sock.sendall(GET_PLAIN)
            holds(plain in read_answer(sock, 5, enough=plain), "a first request was not served")
            sock.sendall(GET_PLAIN[:20])  # the next request's head stops halfway
            stalled.append(sock)
        holds(_plain_is_served(served),
              "kept-alive connections with half a head took the threads (tpool / method_queue)")  # fmt: skip
        stalled[0].sendall(GET_PLAIN[20:])
        holds(plain in read_answer(stalled[0], 5, enough=plain),
              "the rest of a kept-alive connection's head, sent later, was not served")  # fmt: skip
        started = time.monotonic()
        answer = read_answer(stalled[1], HEADER_TIMEOUT + 10)
        holds(answer.startswith(b"HTTP/1.1 408") and answer.endswith(b"<closed>"),
              f"a kept-alive connection's unfinished head was not cut with 408: {answer[:80]!r}")  # fmt: skip
        holds(time.monotonic() - started < HEADER_TIMEOUT + 5, "a kept-alive connection's unfinished head was cut late")


def test_a_body_is_waited_for_at_its_pace(served):
    head = b"POST /body HTTP/1.1\r\nHost: contract\r\nContent-Length: 10\r\n\r\n"
    holds(
        # the answer may come in pieces on a busy machine: read up to its body
        exchange(served, head + b"0123456789", 5, enough=b"\r\n\r\n10").split(b"\r\n\r\n")[-1] == b"10",
        "a whole body was not read",
    )
    started = time.monotonic()
    answer = exchange(served, head + b"abc", BODY_TIMEOUT + 10, first=True)
    holds(answer.startswith(b"HTTP/1.1 408"), f"a body that stopped was not cut by the pace: {answer[:80]!r}")
    holds(time.monotonic() - started < BODY_TIMEOUT + 5, "a body that stopped was waited for beyond its pace")
