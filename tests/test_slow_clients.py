"""Slow and silent clients against the gateway under real gunicorn, exposed directly.

Each slow client is a real socket that trickles its request (or says nothing) and reconnects
when the gateway closes it. Deadlines are short here (``header_timeout`` and ``body_timeout``
1 s) so that the tests take seconds; workers and threads are the defaults (2 × 16).
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from qs_gateway.serving.stack import start_gateway

from .support import API_KEY, exchange, read_answer, self_signed_certificate, wait_for
from .test_deploy import PREFIX, start_nginx

BODY_LENGTH = 1000
VALIDATE = "/api/queue/item/validate"


@pytest.fixture(scope="module")
def exposed(tmp_path_factory, re_manager) -> Iterator[tuple[str, int]]:
    """The default deployment (2 workers × 16 threads), with 1-second deadlines."""
    workdir = tmp_path_factory.mktemp("slow-clients")
    process, url = start_gateway(
        workdir,
        re_manager.gateway_env(QS_GATEWAY_HEADER_TIMEOUT="1", QS_GATEWAY_BODY_TIMEOUT="1"),
        log_name="gateway-slow-clients.log",
    )
    host, _, port = url.removeprefix("http://").partition(":")
    yield host, int(port)
    process.stop()


def _request_head(path: str = "/api/queue/item/add", *, key: bool = True, length: int = BODY_LENGTH) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: gateway", "Content-Type: application/json", f"Content-Length: {length}"]
    if key:
        lines.append(f"Authorization: ApiKey {API_KEY}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _answer_status(data: bytes) -> str:
    return data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1 ") else "closed"


class SlowClient(threading.Thread):
    """One connection at a time that sends ``first`` at once, then ``trickle`` a byte every
    ``period`` seconds (nothing at all if ``trickle`` is empty), until the gateway answers or
    closes; then it connects again, until stopped. ``answers`` counts how each ended."""

    def __init__(self, address: tuple[str, int], first: bytes, trickle: bytes, stop: threading.Event,
                 answers: Counter, period: float = 0.25, tls: ssl.SSLContext | None = None) -> None:  # fmt: skip
        super().__init__(daemon=True)
        self.address, self.first, self.trickle, self.period = address, first, trickle, period
        self.stop, self.answers, self.tls = stop, answers, tls

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with socket.create_connection(self.address, timeout=5) as sock:
                    if self.tls is not None and (self.first or self.trickle):  # silence: not even a handshake
                        sock = self.tls.wrap_socket(sock, server_hostname="localhost")
                    self.answers[self._one_connection(sock)] += 1
            except OSError:
                self.answers["error"] += 1
                time.sleep(self.period)

    def _one_connection(self, sock: socket.socket) -> str:
        if self.first:
            sock.sendall(self.first)
        sent = 0
        while not self.stop.is_set():
            sock.settimeout(self.period)
            try:
                data = sock.recv(4096)
                return _answer_status(data)
            except TimeoutError:
                pass
            except OSError:  # reset by the peer
                return "closed"
            if sent < len(self.trickle):
                sock.sendall(self.trickle[sent : sent + 1])
                sent += 1
        return "stopped"


def _slow_clients(address, stop, answers, counts, prefix="", tls=None) -> list[SlowClient]:
    whole_header = _request_head(prefix + "/api/queue/item/add")
    kinds = {
        # bodies, with credentials and without
        "body with key": (whole_header, b"x" * BODY_LENGTH),
        "body without key": (_request_head(prefix + "/api/queue/item/add", key=False), b"x" * BODY_LENGTH),
        # the request line and the headers a byte at a time
        "headers": (b"", whole_header),
        # nothing at all
        "silent": (b"", b""),
    }
    clients = []
    for kind, (first, trickle) in kinds.items():
        answers[kind] = Counter()
        clients += [SlowClient(address, first, trickle, stop, answers[kind], tls=tls) for _ in range(counts[kind])]
    return clients


def _poll_status_meanwhile(clients, url: str, seconds: float, **httpx_args) -> int:
    """Start the slow clients, then ask for the status for ``seconds``, each answer within 2 s."""
    for client in clients:
        client.start()
    polls = 0
    try:
        time.sleep(0.5)  # every slow connection is open and talking
        polled_until = time.monotonic() + seconds
        while time.monotonic() < polled_until:
            # a fresh connection each time: accepting must not wait either
            response = httpx.get(f"{url}/api/status", headers={"Authorization": f"ApiKey {API_KEY}"}, timeout=2,
                                 **httpx_args)  # fmt: skip
            assert response.status_code == 200
            polls += 1
            time.sleep(0.1)
    finally:
        clients[0].stop.set()
        for client in clients:
            client.join(5)
    return polls


def test_48_slow_clients_do_not_stop_status(exposed, manager_idle):
    url = f"http://{exposed[0]}:{exposed[1]}"
    stop, answers = threading.Event(), {}
    counts = {"body with key": 8, "body without key": 8, "headers": 16, "silent": 16}
    clients = _slow_clients(exposed, stop, answers, counts)
    assert len(clients) == 48
    assert _poll_status_meanwhile(clients, url, 5) > 0
    # the gateway cut them, it did not merely outlast them
    assert answers["headers"]["408"] >= 16
    assert answers["body without key"]["401"] >= 8
    assert answers["body with key"]["408"] + answers["body with key"]["503"] >= 8
    assert answers["silent"]["closed"] >= 16


def test_401_comes_before_the_body_and_the_connection_closes(exposed):
    # 30 bytes are announced, one is sent: no credentials, so the body is never waited for
    answer = exchange(exposed, _request_head(key=False, length=30) + b"{", 3)
    assert answer.startswith(b"HTTP/1.1 401 "), answer
    assert b"Not enough permissions" in answer and answer.endswith(b"<closed>")
    assert b"connection: close" in answer.lower()


def test_413_comes_before_the_body(exposed):
    answer = exchange(exposed, _request_head(length=1 << 30) + b"{", 3)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert answer.endswith(b"<closed>")


def test_a_body_too_slow_is_cut_with_408(exposed):
    with socket.create_connection(exposed, timeout=5) as sock:
        sock.sendall(_request_head(length=30))
        started = time.monotonic()
        sock.settimeout(0.3)
        answer = b""
        while not answer and time.monotonic() - started < 6:  # 30 bytes at 3 a second: 10 s
            sock.sendall(b" ")
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                pass
        answer += read_answer(sock, 2)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"did not arrive in time" in answer


def test_slow_headers_get_408_and_silence_is_closed(exposed):
    answer = exchange(exposed, b"GET /api/status HTTP/1.1\r\nHost: gateway\r\n", 4)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"headers did not arrive in time" in answer and answer.endswith(b"<closed>")
    assert exchange(exposed, b"", 4) == b"<closed>"


def test_pipelined_and_kept_alive_requests_are_served(exposed):
    request = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n"
    answer = exchange(exposed, request * 3, 1)
    assert answer.count(b"HTTP/1.1 200 ") == 3
    with httpx.Client(base_url=f"http://{exposed[0]}:{exposed[1]}") as client:
        for _ in range(5):
            assert client.post("/api/queue/item/validate", json={"item": {}}, headers={
                "Authorization": f"ApiKey {API_KEY}"}).status_code == 200  # fmt: skip


@pytest.fixture(scope="module")
def one_waiting_place(tmp_path_factory, re_manager) -> Iterator[tuple[str, int]]:
    """One worker of 4 threads, 3 of them kept for requests that arrived whole."""
    workdir = tmp_path_factory.mktemp("one-waiting-place")
    process, url = start_gateway(
        workdir,
        re_manager.gateway_env(
            QS_GATEWAY_WORKERS="1", QS_GATEWAY_THREADS="4", QS_GATEWAY_RESERVED_THREADS="3",
            QS_GATEWAY_BODY_TIMEOUT="3",
        ),
        log_name="gateway-one-waiting-place.log",
    )  # fmt: skip
    host, _, port = url.removeprefix("http://").partition(":")
    yield host, int(port)
    process.stop()


def test_only_so_many_requests_wait_for_bodies(one_waiting_place):
    with socket.create_connection(one_waiting_place, timeout=5) as waiting:
        waiting.sendall(_request_head(VALIDATE, length=30) + b"{")
        time.sleep(0.3)  # it waits for the rest, in the one place there is
        answer = exchange(one_waiting_place, _request_head(VALIDATE, length=30) + b"{", 2)
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert b"Retry-After: " in answer and b"still sending their bodies" in answer
        # whole requests are served meanwhile
        status = httpx.get(f"http://{one_waiting_place[0]}:{one_waiting_place[1]}/api/status",
                           headers={"Authorization": f"ApiKey {API_KEY}"}, timeout=2)  # fmt: skip
        assert status.status_code == 200
        waiting.sendall(b'"item": {}' + b" " * 18 + b"}")
        waiting.settimeout(3)
        assert waiting.recv(65536).startswith(b"HTTP/1.1 200 ")
    whole = b'{"item": {}}'
    wait_for(
        lambda: (
            exchange(one_waiting_place, _request_head(VALIDATE, length=len(whole)) + whole[:1], 0.5) == b""
        ),  # it waits for the rest (read_for passes): the place is free again
        5,
        "the waiting place to be free again",
    )


# -- behind the shipped nginx configuration --------------------------------------------------------

# The shipped timeouts, shortened for the test (the directives must be there to be shortened).
NGINX_TIMEOUTS = {"client_header_timeout 10s;": "client_header_timeout 2s;",
                  "client_body_timeout 10s;": "client_body_timeout 2s;"}  # fmt: skip


@pytest.fixture(scope="module")
def behind_nginx(tmp_path_factory, re_manager):
    """deploy/nginx.conf over TLS in front of a gateway on a unix socket: (https url, address, trust, log)."""
    workdir = tmp_path_factory.mktemp("slow-behind-nginx")
    cert, key = self_signed_certificate(workdir)
    socket_path = workdir / "gateway.sock"
    gateway, _ = start_gateway(
        workdir,
        re_manager.gateway_env(QS_GATEWAY_PROXY_HOPS="1", QS_GATEWAY_LOG_FORMAT="json"),
        unix_socket=socket_path,
        log_name="gateway-behind-nginx.log",
    )
    nginx = None
    try:
        nginx, port = start_nginx(workdir, f"unix:{socket_path}", cert, key, edits=NGINX_TIMEOUTS)
        trust = ssl.create_default_context(cafile=cert)
        url = f"https://localhost:{port}{PREFIX}"
        nginx.wait_until(lambda: httpx.get(f"{url}/healthz", verify=trust).status_code == 200, 15, "proxying")
        yield url, ("127.0.0.1", port), trust, gateway.log_path
    finally:
        if nginx is not None:
            nginx.stop()
        gateway.stop()


def test_50_slow_clients_through_nginx_never_reach_the_gateway(behind_nginx, manager_idle):
    url, address, trust, gateway_log = behind_nginx
    stop, answers = threading.Event(), {}
    counts = {"body with key": 8, "body without key": 8, "headers": 17, "silent": 17}
    clients = _slow_clients(address, stop, answers, counts, prefix=PREFIX, tls=trust)
    assert len(clients) == 50
    assert _poll_status_meanwhile(clients, url, 4, verify=trust) > 0
    # nginx ended the slow headers and the silent connections itself, after client_header_timeout
    assert answers["headers"]["closed"] + answers["headers"]["408"] >= 17
    assert answers["silent"]["closed"] >= 17
    # and passed on no request that had not arrived whole: the gateway saw only the status polls
    seen = {json.loads(line).get("path") for line in gateway_log.read_text().splitlines() if line.startswith("{")}
    assert "/api/queue/item/add" not in seen and "/api/status" in seen
