"""Strangers' websockets hold no request thread, under real gunicorn, directly and behind nginx.

A stranger opens ``/api/status/ws`` without credentials and never logs in: the socket is closed
with 4401 after :data:`AUTH_MESSAGE_SECONDS`. Some strangers then trickle a byte every 1.5 s
instead of answering the close. With one worker of four threads, none of this may slow
``GET /api/status``: each answer comes within a second, from the first handshake until the
last stranger's connection is closed by the gateway.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from qs_gateway.api.websockets import AUTH_MESSAGE_SECONDS, CLOSE_NO_CREDENTIALS
from qs_gateway.serving.proxy import PREFIX, behind_nginx
from qs_gateway.serving.stack import start_gateway

from .support import API_KEY

ONE_WORKER_OF_FOUR = {"QS_GATEWAY_WORKERS": "1", "QS_GATEWAY_THREADS": "4"}
BARE, TRICKLING = 16, 4
TRICKLE_PERIOD = 1.5
STATUS_WITHIN = 1.0
# the close comes after AUTH_MESSAGE_SECONDS (and a tick); the connection goes a few seconds later
ALL_CUT_WITHIN = AUTH_MESSAGE_SECONDS + 20


@dataclass
class Target:
    status_url: str
    address: tuple[str, int]
    path: str
    tls: ssl.SSLContext | None = None
    verify: ssl.SSLContext | bool = True


@pytest.fixture(scope="module")
def direct(tmp_path_factory, re_manager) -> Iterator[Target]:
    workdir = tmp_path_factory.mktemp("ws-strangers")
    env = re_manager.gateway_env(**ONE_WORKER_OF_FOUR)
    process, url = start_gateway(workdir, env, log_name="gateway-ws-strangers.log")
    host, _, port = url.removeprefix("http://").partition(":")
    try:
        yield Target(f"{url}/api/status", (host, int(port)), "/api/status/ws")
    finally:
        process.stop()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory, re_manager) -> Iterator[Target]:
    workdir = tmp_path_factory.mktemp("ws-strangers-nginx")
    socket_path = workdir / "gateway.sock"
    env = re_manager.gateway_env(QS_GATEWAY_PROXY_HOPS="1", **ONE_WORKER_OF_FOUR)
    gateway, _ = start_gateway(workdir, env, unix_socket=socket_path, log_name="gateway-ws-strangers-nginx.log")
    proxy = None
    try:
        proxy = behind_nginx(workdir / "nginx", socket_path)
        trust = ssl.create_default_context(cafile=proxy.cert)
        port = int(proxy.url.removeprefix("https://localhost:").partition("/")[0])
        yield Target(f"{proxy.url}/api/status", ("127.0.0.1", port), f"{PREFIX}/api/status/ws", trust, trust)
    finally:
        if proxy is not None:
            proxy.stop()
        gateway.stop()


@dataclass(eq=False)  # a thread is hashable
class Stranger(threading.Thread):
    """Opens a websocket without credentials, waits for the server's close, then (if
    ``trickle``) sends a byte every TRICKLE_PERIOD instead of its own close, until the server
    closes the connection."""

    target: Target
    trickle: bool
    upgraded: bool = False
    close_code: int | None = None
    closed_after_close: float | None = None  # seconds from the close frame to the end of the connection
    error: str = ""
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)

    def run(self) -> None:
        try:
            with socket.create_connection(self.target.address, timeout=5) as raw:
                sock = raw if self.target.tls is None else self.target.tls.wrap_socket(raw, server_hostname="localhost")
                self._talk(sock)
        except OSError as exc:
            self.error = repr(exc)
        finally:
            self.done.set()

    def _talk(self, sock: socket.socket) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET {self.target.path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        received = self._read(sock, lambda data: b"\r\n\r\n" in data, ALL_CUT_WITHIN)
        head, _, rest = received.partition(b"\r\n\r\n")
        self.upgraded = head.startswith(b"HTTP/1.1 101 ")
        if not self.upgraded:
            self.error = f"no handshake: {received[:200]!r}"
            return
        rest += self._read(sock, lambda data: len(data) >= 4, ALL_CUT_WITHIN, rest)  # the close frame's code
        if rest[:1] != b"\x88":
            self.error = f"not a close: {rest[:40]!r}"
            return
        self.close_code = int.from_bytes(rest[2:4], "big")
        closed_at = time.monotonic()
        while time.monotonic() - closed_at < ALL_CUT_WITHIN:
            sock.settimeout(TRICKLE_PERIOD)
            try:
                if sock.recv(4096) == b"":
                    self.closed_after_close = time.monotonic() - closed_at
                    return
            except TimeoutError:
                if self.trickle:
                    sock.sendall(b"x")  # never the close frame the server waits for

    @staticmethod
    def _read(sock: socket.socket, enough, within: float, have: bytes = b"") -> bytes:
        received = b""
        deadline = time.monotonic() + within
        while not enough(have + received) and time.monotonic() < deadline:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
        return received


def _status_stays_quick_while_strangers_wait(target: Target) -> None:
    strangers = [Stranger(target, trickle=False) for _ in range(BARE)]
    strangers += [Stranger(target, trickle=True) for _ in range(TRICKLING)]
    slowest, polls = 0.0, 0
    with httpx.Client(verify=target.verify, headers={"Authorization": f"ApiKey {API_KEY}"}) as client:
        assert client.get(target.status_url, timeout=10).status_code == 200  # warm: the worker is up
        for stranger in strangers:
            stranger.start()
        deadline = time.monotonic() + ALL_CUT_WITHIN + 5
        while not all(stranger.done.is_set() for stranger in strangers) and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                # a fresh connection each time: accepting must not wait either
                response = client.get(target.status_url, timeout=STATUS_WITHIN, headers={"Connection": "close"})
            except httpx.TimeoutException:
                pytest.fail(f"GET /api/status took over {STATUS_WITHIN} s with {len(strangers)} strangers waiting")
            slowest = max(slowest, time.monotonic() - started)
            assert response.status_code == 200, response.text
            polls += 1
            time.sleep(0.1)
    for stranger in strangers:
        stranger.join(5)
    assert slowest < STATUS_WITHIN and polls >= AUTH_MESSAGE_SECONDS  # one a second at the very least
    # every stranger was upgraded, told 4401, and cut by the gateway soon after, trickling or not
    assert [s.error for s in strangers if s.error] == []
    assert {s.close_code for s in strangers} == {CLOSE_NO_CREDENTIALS}
    lingered = [s.closed_after_close for s in strangers]
    assert None not in lingered and max(lingered) < 3 * TRICKLE_PERIOD + 1, lingered


def test_strangers_hold_no_thread_exposed_directly(direct, manager_idle):
    _status_stays_quick_while_strangers_wait(direct)


def test_strangers_hold_no_thread_behind_nginx(proxied, manager_idle):
    _status_stays_quick_while_strangers_wait(proxied)
