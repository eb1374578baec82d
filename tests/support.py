"""Helpers shared by the tests: plans, waiting, RE Manager seen directly over ZeroMQ, and the
RE Manager and applications the fixtures make."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import zmq
from bluesky_queueserver_api.http import REManagerAPI
from flask import Flask

from qs_gateway.app import create_app
from qs_gateway.config import load_settings
from qs_gateway.serving.proxy import self_signed_certificate  # noqa: F401 - the tests take it from here
from qs_gateway.serving.stack import ManagedProcess, ManagerPorts, free_port, start_gateway, start_re_manager

# At least 32 letters and digits: a shorter single-user key is warned about, under 8 refused.
API_KEY = "TestApiKeyOfTheGatewaySuite20261125"

PLAN_COUNT = {"item_type": "plan", "name": "count", "args": [["det1", "det2"]]}
# About five seconds: long enough to pause, resume and stop while it runs.
PLAN_SLOW = {"item_type": "plan", "name": "count", "args": [["det1", "det2"]], "kwargs": {"num": 10, "delay": 0.5}}
INSTRUCTION_STOP = {"item_type": "instruction", "name": "queue_stop"}


def plan(name: str = "count", **kwargs: Any) -> dict:
    item = {"item_type": "plan", "name": name, "args": [["det1", "det2"]]}
    if kwargs:
        item["kwargs"] = kwargs
    return item


class SentToManager(list):
    """The RE Manager method names an app sent, in order; ``calls`` has them with their params."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, dict]] = []


def spy_on(app: Any) -> SentToManager:
    """Record what ``app`` sends to RE Manager from now on (nothing is changed on the way)."""
    from qs_gateway.extensions import EXTENSION_KEY

    pool = app.extensions[EXTENSION_KEY].pool
    original = pool.request
    sent = SentToManager()

    def spy(message: dict, **kwargs: Any) -> Any:
        sent.append(message["method"])
        sent.calls.append((message["method"], message["params"]))
        return original(message, **kwargs)

    pool.request = spy
    return sent


def wait_for(condition: Callable[[], bool], timeout: float, what: str, period: float = 0.1) -> None:
    """Poll ``condition`` until it holds; a bounded loop, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(period)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def read_answer(sock: socket.socket, within: float, *, first: bool = False, enough: bytes = b"") -> bytes:
    """What the peer sends on ``sock`` within ``within`` seconds, ending in ``<closed>`` if it closed
    the connection; it stops early after the first piece (``first``) or once ``enough`` came."""
    received = b""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and not (enough and enough in received):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        if not data:
            return received + b"<closed>"
        received += data
        if first:
            break
    return received


def exchange(address: tuple[str, int], data: bytes, within: float, **read: Any) -> bytes:
    """Send ``data`` on a new connection, then :func:`read_answer` (``read``: its options)."""
    with socket.create_connection(address, timeout=within) as sock:
        sock.sendall(data)
        return read_answer(sock, within, **read)


def one_per_worker(
    held: ExitStack, connect: Callable[[ExitStack], tuple[str, Any]], workers: int, within: float
) -> dict[str, Any]:
    """``connect(held)`` (which opens a new connection, kept in ``held``, and says which worker
    served it and what it got) until each of ``workers`` gunicorn workers has served one; the
    first of each, keyed by worker. The workers take turns at accepting
    (qs_gateway/serving/turns.py), so the next new connection goes to a worker that holds fewer,
    and one that holds more connections than the others (a stream, nginx's kept-alive ones) is
    reached once they hold as many: every connection stays open until all have answered. It goes
    on for up to ``within`` seconds, not a fixed number of times. The gateway must run with
    ``QS_GATEWAY_WORKER_HEADER=1``."""
    found: dict[str, Any] = {}
    deadline = time.monotonic() + within
    while len(found) < workers:
        if time.monotonic() > deadline:
            raise AssertionError(f"in {within} s only workers {sorted(found)} answered, of {workers}")
        worker, got = connect(held)
        found.setdefault(worker, got)
    return found


def answers_of_every_worker(
    send: Callable[[httpx.Client], httpx.Response],
    workers: int,
    within: float = 30.0,
    client: Callable[[], httpx.Client] = httpx.Client,
) -> dict[str, httpx.Response]:
    """One answer of each of ``workers`` gunicorn workers to ``send(c)``, keyed by worker, each
    ``send`` on a new client (``client()``: a new connection); see :func:`one_per_worker`."""

    def connect(held: ExitStack) -> tuple[str, httpx.Response]:
        response = send(held.enter_context(client()))
        return response.headers["X-Gateway-Worker"], response

    with ExitStack() as held:
        return one_per_worker(held, connect, workers, within)


@contextmanager
def clients_on_every_worker(url: str, workers: int, within: float = 30.0) -> Iterator[dict[str, httpx.Client]]:
    """A kept-alive client on each of ``workers`` gunicorn workers, keyed by worker: what a test
    sends on one is served by that worker (see :func:`one_per_worker`)."""

    def connect(held: ExitStack) -> tuple[str, httpx.Client]:
        client = held.enter_context(
            httpx.Client(
                base_url=url,
                headers={"Authorization": f"ApiKey {API_KEY}"},
                timeout=10,
                limits=httpx.Limits(max_connections=1),  # one connection: one worker
            )
        )
        return client.get("/api/status").headers["X-Gateway-Worker"], client

    with ExitStack() as held:
        yield one_per_worker(held, connect, workers, within)


class DirectManager:
    """RE Manager over plain ZeroMQ, a fresh REQ socket per request: the tests' own view of it,
    independent of the gateway's transport.

    Not bluesky-queueserver's threaded ZeroMQ client: when its two threads switch at the wrong
    moment it answers a request with "No received data was found" without waiting for the reply
    (seen in CI under load), and leaves its socket out of step.
    """

    def __init__(self, control_address: str, timeout: float = 10.0) -> None:
        self.address = control_address
        self.timeout = timeout
        self._context = zmq.Context()

    def request(self, method: str, params: dict | None = None) -> dict:
        sock = self._context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(self.address)
            sock.send_json({"method": method, "params": params or {}})
            if not sock.poll(int(self.timeout * 1000)):
                raise TimeoutError(f"RE Manager at {self.address} did not answer {method!r} in {self.timeout} s")
            return sock.recv_json()
        finally:
            sock.close()

    def close(self) -> None:
        self._context.term()

    # The methods the tests use, named as bluesky-queueserver-api names them.
    _WITHOUT_PARAMETERS = frozenset(
        {"status", "queue_get", "queue_clear", "history_clear", "queue_stop", "re_stop", "re_abort"}
        | {"environment_open", "environment_close"}
    )

    def __getattr__(self, method: str) -> Callable[[], dict]:
        if method in self._WITHOUT_PARAMETERS:
            return lambda: self.request(method)
        raise AttributeError(method)

    def queue_mode_set(self, mode: Any) -> dict:
        return self.request("queue_mode_set", {"mode": mode})

    def queue_autostart(self, enable: bool) -> dict:
        return self.request("queue_autostart", {"enable": enable})


def zmq_api(control_address: str) -> DirectManager:
    """RE Manager as it is, without the gateway in between."""
    return DirectManager(control_address)


def reset_manager(rm: DirectManager, *, environment: bool | None = None) -> None:
    """Bring RE Manager back to a known state between tests.

    ``environment``: True opens it, False closes it, None leaves it as it is.
    """
    status = rm.status()
    if status["manager_state"] == "paused":
        rm.re_stop()
    if status["manager_state"] in ("executing_queue", "starting_queue", "paused"):
        rm.queue_stop()
        wait_for(lambda: rm.status()["manager_state"] in ("idle", "paused"), 30, "queue to stop")
        if rm.status()["manager_state"] == "paused":
            rm.re_abort()
    wait_for(lambda: rm.status()["manager_state"] == "idle", 30, "RE Manager idle")
    if rm.status()["lock"]["environment"] or rm.status()["lock"]["queue"]:
        raise AssertionError("a test left RE Manager locked")
    rm.queue_clear()
    rm.history_clear()
    rm.queue_mode_set(mode="default")
    rm.queue_autostart(False)
    exists = rm.status()["worker_environment_exists"]
    if environment is True and not exists:
        rm.environment_open()
        wait_for(
            lambda: rm.status()["worker_environment_exists"] and rm.status()["manager_state"] == "idle",
            60,
            "environment open",
        )
    elif environment is False and exists:
        rm.environment_close()
        wait_for(
            lambda: not rm.status()["worker_environment_exists"] and rm.status()["manager_state"] == "idle",
            60,
            "environment closed",
        )


def http_api(url: str) -> Any:
    """bluesky-queueserver-api's threaded client in HTTP mode, with the single-user key."""
    rm = REManagerAPI(http_server_uri=url)
    rm.set_authorization_key(api_key=API_KEY)
    return rm


def keyed_client(app: Any) -> Any:
    """A Flask test client of ``app`` that sends the single-user API key."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"ApiKey {API_KEY}"
    return client


@dataclass
class Manager:
    process: ManagedProcess
    ports: ManagerPorts
    workdir: Path
    redis_port: int

    @property
    def control_address(self) -> str:
        return self.ports.control_address

    def gateway_env(self, **extra: str) -> dict[str, str]:
        """Environment for a gateway in front of this RE Manager."""
        return {
            "QSERVER_ZMQ_CONTROL_ADDRESS": self.ports.control_address,
            "QSERVER_ZMQ_INFO_ADDRESS": self.ports.info_address,
            "QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY": API_KEY,
            "QS_GATEWAY_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            # one cache namespace per RE Manager
            "QS_GATEWAY_REDIS_PREFIX": f"qs_gateway_test_{self.ports.control}",
            **extra,
        }


def make_app(manager: Manager, **env: str) -> Flask:
    return create_app(load_settings(environ=manager.gateway_env(**env)))


class RestartableManager:
    """An RE Manager of one test module, stopped, frozen and started again on the same ports."""

    def __init__(self, workdir: Path, redis_port: int) -> None:
        self.workdir = workdir
        self.redis_port = redis_port
        self.ports = ManagerPorts(free_port(), free_port())
        self.process = None

    def start(self) -> None:
        self.process, _ = start_re_manager(
            self.workdir, redis_port=self.redis_port, ports=self.ports, name_prefix="qs_gateway_faults"
        )

    def stop(self) -> None:
        self.process.stop()

    def freeze(self) -> None:
        self.process.signal_group(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.signal_group(signal.SIGCONT)

    def queue_nums(self) -> list[int]:
        rm = zmq_api(self.ports.control_address)
        try:
            return [item["kwargs"]["num"] for item in rm.queue_get()["items"]]
        finally:
            rm.close()


@contextmanager
def gateway_in_front(workdir: Path, redis_port: int, **env: str) -> Iterator[tuple[RestartableManager, str]]:
    """A restartable RE Manager and a gateway in front of it (``env`` its settings)."""
    manager = RestartableManager(workdir, redis_port)
    manager.start()
    try:
        environment = Manager(manager.process, manager.ports, manager.workdir, redis_port).gateway_env(**env)
        gateway, url = start_gateway(manager.workdir, environment, log_name="gateway-faults.log")
        try:
            yield manager, url
        finally:
            gateway.stop()
    finally:
        manager.thaw()
        manager.stop()


@contextmanager
def fresh_connections(url: str) -> Iterator[httpx.Client]:
    """A client that opens a fresh connection per request, so that requests spread over the workers."""
    with httpx.Client(
        base_url=url,
        headers={"Authorization": f"ApiKey {API_KEY}"},
        timeout=10,
        limits=httpx.Limits(max_keepalive_connections=0),
    ) as client:
        yield client
