"""The socket pool: its rules, then CurveZMQ and msgpack against a real RE Manager.

The first tests need a peer that can stay silent on purpose, which RE Manager cannot be made
to do; a ZeroMQ ROUTER socket in a thread plays that peer. Only transport rules are tested
with it.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import zmq

from qs_gateway.extensions import EXTENSION_KEY
from qs_gateway.serving.stack import free_port, start_re_manager
from qs_gateway.transport import CircuitBreaker, CircuitOpen, Codec, PoolExhausted, RequestTimeout, SocketPool, Timeouts

from .support import API_KEY, PLAN_COUNT, Manager, keyed_client, make_app, wait_for

FAST = Timeouts(send=0.2, receive=0.3)


class Peer:
    """A ROUTER socket that answers ``{"echo": params}``, or stays silent while ``silent`` is set."""

    def __init__(self, port: int | None = None) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        if port is None:
            port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        else:
            self.socket.bind(f"tcp://127.0.0.1:{port}")
        self.address = f"tcp://127.0.0.1:{port}"
        self.received: list[dict] = []
        self.silent = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        codec = Codec("json")
        while not self.stopping.is_set():
            if not self.socket.poll(50):
                continue
            identity, empty, frame = self.socket.recv_multipart()
            message = codec.decode(frame)
            self.received.append(message)
            if not self.silent.is_set():
                self.socket.send_multipart([identity, empty, codec.encode({"echo": message["params"]})])

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(2)
        self.socket.close(linger=0)
        self.context.term()


@pytest.fixture
def peer():
    peer = Peer()
    yield peer
    peer.close()


def make_pool(address: str, **kwargs) -> SocketPool:
    kwargs.setdefault("breaker", CircuitBreaker(threshold=100, open_seconds=0))
    return SocketPool(address, **kwargs)


def request(pool: SocketPool, n: int, repeatable: bool = False, timeouts: Timeouts = FAST) -> dict:
    return pool.request({"method": "m", "params": {"n": n}}, timeouts=timeouts, repeatable=repeatable)


def test_timed_out_socket_is_replaced_not_reused(peer):
    pool = make_pool(peer.address, size=1)
    try:
        assert request(pool, 1) == {"echo": {"n": 1}}
        peer.silent.set()
        with pytest.raises(RequestTimeout) as raised:
            request(pool, 2)
        assert raised.value.delivered is True
        assert pool.sockets_open == 0  # closed, not returned
        peer.silent.clear()
        # A reused REQ socket would fail here (it still waits for reply 2) or return reply 2.
        assert request(pool, 3) == {"echo": {"n": 3}}
        assert pool.sockets_open == 1
    finally:
        pool.close()


def test_a_delivered_request_is_never_sent_again(peer):
    pool = make_pool(peer.address, size=2)
    peer.silent.set()
    try:
        for repeatable in (False, True):  # neither a write nor a delivered read is repeated
            with pytest.raises(RequestTimeout):
                request(pool, 10, repeatable=repeatable)
        assert [m["params"]["n"] for m in peer.received] == [10, 10]
    finally:
        pool.close()


def test_an_undelivered_read_is_tried_once_more_a_write_is_not(monkeypatch):
    with zmq.Context() as context:
        sock = context.socket(zmq.ROUTER)
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        sock.close(linger=0)  # nobody listens on this port now
    pool = make_pool(f"tcp://127.0.0.1:{port}", size=2)
    attempts = []
    original = SocketPool._exchange

    def counting(sock, frame, timeouts, deadline):
        attempts.append(frame)
        return original(sock, frame, timeouts, deadline)

    monkeypatch.setattr(SocketPool, "_exchange", staticmethod(counting))
    try:
        with pytest.raises(RequestTimeout) as raised:
            request(pool, 1, repeatable=True)
        assert raised.value.delivered is False and len(attempts) == 2
        attempts.clear()
        with pytest.raises(RequestTimeout):
            request(pool, 2, repeatable=False)
        assert len(attempts) == 1
    finally:
        pool.close()


def test_an_open_breaker_fails_at_once_while_the_port_is_closed_and_closes_when_the_peer_is_back():
    port = free_port()
    pool = make_pool(f"tcp://127.0.0.1:{port}", size=2, breaker=CircuitBreaker(threshold=1, open_seconds=600))
    peer = None
    try:
        with pytest.raises(RequestTimeout):
            request(pool, 1)  # nothing delivered: the breaker opens
        slow = Timeouts(send=10, receive=10)
        for n in range(5):  # each tries a new connection, refused at once: no wait for the send timeout
            started = time.monotonic()
            with pytest.raises(CircuitOpen, match=r"takes no connection \(connection refused\)"):
                request(pool, n, timeouts=slow)
            assert time.monotonic() - started < slow.send / 2
        peer = Peer(port)
        # the very next request goes through (the open time of 600 s plays no part here)
        assert request(pool, 6, timeouts=slow) == {"echo": {"n": 6}}
        assert pool.breaker.state == "closed"
        peer.silent.set()  # the peer takes requests but does not answer: then the open time counts
        with pytest.raises(RequestTimeout):
            request(pool, 7)
        with pytest.raises(CircuitOpen, match="failing fast for another"):
            request(pool, 8)
        assert [m["params"]["n"] for m in peer.received] == [6, 7]  # 8 was never sent
    finally:
        pool.close()
        if peer is not None:
            peer.close()


def test_exhausted_pool_answers_pool_exhausted(peer):
    pool = make_pool(peer.address, size=1, checkout_timeout=0.1)
    peer.silent.set()
    try:
        blocker = threading.Thread(
            target=lambda: pytest.raises(
                RequestTimeout, pool.request, {"method": "m", "params": {}}, timeouts=Timeouts(0.5, 1.0)
            )
        )
        blocker.start()
        wait_for(lambda: pool.sockets_in_use == 1, 5, "the first request to hold the only socket", period=0.01)
        with pytest.raises(PoolExhausted):
            request(pool, 1)
        blocker.join()
    finally:
        pool.close()


def test_many_threads_share_a_small_pool(peer):
    # generous deadlines: this is about sharing, and a loaded machine must not fail it
    pool = make_pool(peer.address, size=3, checkout_timeout=10)
    patient = Timeouts(send=5, receive=5)
    try:
        with ThreadPoolExecutor(16) as executor:
            replies = list(executor.map(lambda n: request(pool, n, timeouts=patient), range(800)))
        assert replies == [{"echo": {"n": n}} for n in range(800)]
        assert pool.sockets_open <= 3
    finally:
        pool.close()


def test_pool_works_in_a_forked_child(peer):
    pool = make_pool(peer.address, size=2)
    try:
        assert request(pool, 1) == {"echo": {"n": 1}}  # the parent has a context and sockets now
        pid = os.fork()
        if pid == 0:  # child: must not touch the parent's context
            code = 0
            try:
                code = 0 if request(pool, 2) == {"echo": {"n": 2}} else 1
            except BaseException:
                code = 2
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert request(pool, 3) == {"echo": {"n": 3}}
    finally:
        pool.close()


# -- a real RE Manager with CurveZMQ and msgpack ------------------------------------------------


@pytest.fixture(scope="module")
def secure_manager(tmp_path_factory, redis_port):
    public, secret = zmq.curve_keypair()
    workdir = tmp_path_factory.mktemp("secure-manager")
    process, ports = start_re_manager(
        workdir,
        redis_port=redis_port,
        extra_args=["--zmq-encoding", "msgpack"],
        env={"QSERVER_ZMQ_PRIVATE_KEY_FOR_SERVER": secret.decode()},
        encoding="msgpack",
        public_key=public.decode(),
        name_prefix="qs_gateway_secure",
    )
    yield Manager(process, ports, workdir, redis_port), public.decode()
    process.stop()


def test_curve_and_msgpack_with_a_real_manager(secure_manager):
    manager, public_key = secure_manager
    app = make_app(manager, QSERVER_ZMQ_PUBLIC_KEY=public_key, QSERVER_ZMQ_ENCODING="msgpack")
    client = keyed_client(app)
    try:
        assert client.get("/api/status").get_json()["manager_state"] == "idle"
        added = client.post("/api/queue/item/add", json={"item": PLAN_COUNT}).get_json()
        assert added["success"] is True
        assert client.get("/api/queue/get").get_json()["items"][0]["item_uid"] == added["item"]["item_uid"]
        assert client.post("/api/queue/clear").get_json()["success"] is True
    finally:
        app.extensions[EXTENSION_KEY].close()


def test_wrong_curve_key_times_out(secure_manager):
    manager, _ = secure_manager
    other_public, _ = zmq.curve_keypair()
    app = make_app(
        manager,
        QSERVER_ZMQ_PUBLIC_KEY=other_public.decode(),
        QSERVER_ZMQ_ENCODING="msgpack",
        QS_GATEWAY_TIMEOUT_RECEIVE="0.5",
    )
    client = app.test_client()
    try:
        response = client.get("/api/status", headers={"Authorization": f"ApiKey {API_KEY}"})
        assert response.status_code == 408
        assert response.get_json()["detail"].startswith("Request timeout: ZMQ communication error")
    finally:
        app.extensions[EXTENSION_KEY].close()
