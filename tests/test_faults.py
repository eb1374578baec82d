"""RE Manager stopped, frozen and restarted under a running gateway (gunicorn, real client).

These tests own their RE Manager, so they can stop it without disturbing the others.
"""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from qs_gateway.serving.stack import ManagerPorts, free_port, start_gateway, start_re_manager

from .conftest import Manager
from .support import API_KEY, plan, reset_manager, wait_for, zmq_api

RECEIVE_TIMEOUT = 2.0
SEND_TIMEOUT = 0.5
TIMEOUT_PREFIX = "Request timeout: ZMQ communication error"


class RestartableManager:
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


@pytest.fixture(scope="module")
def faulty(tmp_path_factory, redis_port):
    manager = RestartableManager(tmp_path_factory.mktemp("faulty-manager"), redis_port)
    manager.start()
    env = Manager(manager.process, manager.ports, manager.workdir, redis_port).gateway_env(
        QS_GATEWAY_WORKERS="2",
        QS_GATEWAY_THREADS="8",
        QS_GATEWAY_POOL_SIZE="4",
        QS_GATEWAY_TIMEOUT_RECEIVE=str(RECEIVE_TIMEOUT),
        QS_GATEWAY_TIMEOUT_SEND=str(SEND_TIMEOUT),
        QS_GATEWAY_BREAKER_THRESHOLD="3",
        QS_GATEWAY_BREAKER_OPEN_SECONDS="1",
    )
    gateway, url = start_gateway(manager.workdir, env, log_name="gateway-faults.log")
    yield manager, url
    gateway.stop()
    manager.thaw()
    manager.stop()


@pytest.fixture
def manager(faulty):
    manager, _ = faulty
    if not manager.process.running():
        manager.start()
    rm = zmq_api(manager.ports.control_address)
    reset_manager(rm)
    rm.close()
    return manager


@pytest.fixture
def http(faulty):
    _, url = faulty
    # a fresh connection per request, so that requests spread over the workers
    with httpx.Client(
        base_url=url,
        headers={"Authorization": f"ApiKey {API_KEY}"},
        timeout=10,
        limits=httpx.Limits(max_keepalive_connections=0),
    ) as client:
        yield client


def add(http: httpx.Client, num: int) -> httpx.Response:
    return http.post("/api/queue/item/add", json={"item": plan(num=num)})


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_stopped_manager_concurrent_writes_fail_together_then_recover(manager, http):
    assert add(http, 0).json()["success"] is True
    manager.stop()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: timed(lambda: add(http, 100 + n)), range(8)))
    for response, _ in results:
        assert response.status_code == 408
        assert response.json()["detail"].startswith(TIMEOUT_PREFIX)
    # Answered side by side, within about one timeout; one after another would take 8 of them.
    slowest = max(elapsed for _, elapsed in results)
    assert slowest < RECEIVE_TIMEOUT + SEND_TIMEOUT + 1.0, slowest

    # Each worker's breaker opens after three timeouts and then answers at once.
    fast_fail = None
    for _ in range(20):
        response = http.get("/api/status", params={"reload": "true"})
        assert response.status_code == 408
        if "failing fast" in response.json()["detail"]:
            fast_fail = response
            break
    assert fast_fail is not None, "the breaker never opened"
    assert fast_fail.json()["detail"].startswith(TIMEOUT_PREFIX)
    assert int(fast_fail.headers["Retry-After"]) >= 1

    manager.start()

    def answers() -> bool:
        return http.get("/api/status").status_code == 200

    wait_for(answers, 30, "the gateway to reach the restarted RE Manager")
    for _ in range(10):  # every worker recovered, not only one
        assert http.get("/api/status").status_code == 200
    assert add(http, 1).json()["success"] is True
    # The writes that failed while RE Manager was down were never delivered, so never executed.
    assert manager.queue_nums() == [0, 1]


def test_frozen_manager_writes_time_out_and_run_at_most_once(manager, http):
    manager.freeze()
    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda n: timed(lambda: add(http, n)), range(4)))
    finally:
        manager.thaw()
    for response, elapsed in results:
        assert response.status_code == 408
        assert response.json()["detail"].startswith(TIMEOUT_PREFIX)
        assert elapsed < RECEIVE_TIMEOUT + SEND_TIMEOUT + 1.0
    wait_for(lambda: http.get("/api/status").status_code == 200, 30, "recovery after the freeze")
    nums = manager.queue_nums()
    # RE Manager may still carry out requests it received while frozen, but never twice.
    assert len(nums) == len(set(nums)) and set(nums) <= {0, 1, 2, 3}


def test_no_write_is_sent_twice_across_a_restart(manager, http):
    outcomes: dict[int, int] = {}
    stop = threading.Event()

    def writer() -> None:
        num = 0
        while not stop.is_set() and num < 5000:
            outcomes[num] = add(http, num).status_code
            num += 1

    thread = threading.Thread(target=writer)
    thread.start()
    wait_for(lambda: sum(code == 200 for code in outcomes.values()) >= 5, 30, "first writes")
    manager.stop()
    wait_for(lambda: sum(code == 408 for code in outcomes.values()) >= 3, 30, "writes failing")
    manager.start()
    wait_for(lambda: list(outcomes.values())[-3:] == [200] * 3, 60, "writes succeeding again")
    stop.set()
    thread.join()

    nums = manager.queue_nums()
    assert len(nums) == len(set(nums)), "an item was added twice"
    succeeded = {num for num, code in outcomes.items() if code == 200}
    assert succeeded <= set(nums), "an acknowledged write was lost"
    assert set(outcomes.values()) <= {200, 408}


def test_manager_kill_is_408_and_the_watchdog_brings_it_back(manager, http):
    # every worker's breaker closed again after the earlier tests
    wait_for(
        lambda: all(http.get("/api/status", params={"reload": "true"}).status_code == 200 for _ in range(8)),
        15,
        "all workers to reach RE Manager",
    )
    response = http.post("/api/test/manager/kill")
    assert response.status_code == 408
    assert response.json() == {"detail": "Request timeout: ZMQ communication error: timeout occurred"}
    # RE Manager's watchdog restarts the frozen manager loop after a few seconds
    wait_for(lambda: http.get("/api/status").status_code == 200, 30, "RE Manager restarted by its watchdog")
    assert http.get("/api/status").json()["manager_state"] == "idle"
