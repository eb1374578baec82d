"""Several gunicorn workers behave as one gateway: what one worker wrote, every worker reads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from .support import API_KEY, clients_on_every_worker, plan, wait_for


@contextmanager
def status_readers(url: str, count: int = 4) -> Iterator[None]:
    """Threads that read the status all along, each on a kept-alive connection the kernel gave
    to some worker: every worker holds a freshly read status (its lease) when a write comes."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            with httpx.Client(headers={"Authorization": f"ApiKey {API_KEY}"}) as client:
                while not stop.is_set():
                    client.get(f"{url}/api/status").raise_for_status()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=read, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert not errors, errors


def test_read_your_writes_across_workers(gateway_url, manager_idle):
    with status_readers(gateway_url):
        _write_then_read(gateway_url, workers=3)


def test_read_your_writes_across_workers_holding_long_leases(stack_dir, re_manager, manager_idle):
    """With a lease of 50 ms, a read reaches another worker well within the lease it took before
    the write: only the write's wait for the leases to end keeps the read from being stale."""
    from qs_gateway.serving.stack import start_gateway

    gateway, url = start_gateway(
        stack_dir,
        re_manager.gateway_env(QS_GATEWAY_WORKERS="3", QS_GATEWAY_WORKER_HEADER="1", QS_GATEWAY_STATUS_LEASE="0.05"),
        log_name="gateway-long-lease.log",
    )
    try:
        with status_readers(url, count=6):
            _write_then_read(url, workers=3)
    finally:
        gateway.stop()


def _write_then_read(gateway_url: str, workers: int) -> None:
    """Each write on one worker, then the status and the queue read on the next one."""
    with clients_on_every_worker(gateway_url, workers) as on:
        names = sorted(on)
        for expected in range(1, 31):
            writer, reader = names[expected % workers], names[(expected + 1) % workers]
            added = on[writer].post("/api/queue/item/add", json={"item": plan(num=expected)})
            assert added.json()["success"] is True
            assert added.headers["X-Gateway-Worker"] == writer
            status = on[reader].get("/api/status")
            assert status.headers["X-Gateway-Worker"] == reader
            assert status.json()["items_in_queue"] == expected
            assert len(on[reader].get("/api/queue/get").json()["items"]) == expected


def test_two_gateways_sharing_redis_act_as_one(stack_dir, re_manager, gateway_url, manager_open):
    """Two gunicorn masters (two hosts, as far as the gateway can tell) on one Redis prefix."""
    from qs_gateway.serving.stack import start_gateway

    second, second_url = start_gateway(
        stack_dir, re_manager.gateway_env(QS_GATEWAY_WORKERS="2"), log_name="gateway-second-host.log"
    )
    headers = {"Authorization": f"ApiKey {API_KEY}"}
    try:
        for expected in range(1, 11):
            writer, reader = (gateway_url, second_url) if expected % 2 else (second_url, gateway_url)
            added = httpx.post(f"{writer}/api/queue/item/add", json={"item": plan(num=expected)}, headers=headers)
            assert added.json()["success"] is True
            assert httpx.get(f"{reader}/api/status", headers=headers).json()["items_in_queue"] == expected

        # a console cursor handed out by one host is understood by the other
        cursor = httpx.request(
            "GET", f"{gateway_url}/api/console_output_update", json={"last_msg_uid": ""}, headers=headers
        ).json()["last_msg_uid"]
        httpx.post(f"{second_url}/api/script/upload", json={"script": "print('two-hosts-marker')"}, headers=headers)

        def marker_seen_on_the_second_host() -> bool:
            body = httpx.request(
                "GET", f"{second_url}/api/console_output_update", json={"last_msg_uid": cursor}, headers=headers
            ).json()
            return "two-hosts-marker" in "".join(m["msg"] for m in body["console_output_msgs"])

        wait_for(marker_seen_on_the_second_host, 20, "the script's output through the other host")
    finally:
        second.stop()
