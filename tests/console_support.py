"""What the console test modules share: the gateway they run against (gunicorn with four workers,
one subscriber to RE Manager chosen by a one-second lease, heartbeats every 0.2 s), started once
per module that takes it (``console_gateway = console_support.console_gateway``); scripts run in
RE Manager to make output; and the console polled as a client does."""

from __future__ import annotations

import re

import httpx
import pytest
import redis

from qs_gateway.serving.stack import start_gateway

from .support import API_KEY, wait_for

HEADERS = {"Authorization": f"ApiKey {API_KEY}"}
LEASE_SECONDS = 1.0


@pytest.fixture(scope="module")
def console_gateway(stack_dir, re_manager, request):
    """The gateway (url, a Redis client, its Redis prefix), one per module that takes it: each
    module's has a Redis prefix and a log of its own."""
    module = request.module.__name__.rpartition(".")[2]
    env = re_manager.gateway_env(
        QS_GATEWAY_WORKERS="4",
        QS_GATEWAY_THREADS="6",
        QS_GATEWAY_WORKER_HEADER="1",
        QS_GATEWAY_REDIS_PREFIX=f"qs_gateway_{module}_{re_manager.ports.control}",
        QS_GATEWAY_INGEST_LEASE_SECONDS=str(LEASE_SECONDS),
        # shorter than RE Manager's status period (1 s): a status stream's quiet second always
        # holds a heartbeat, whatever the moment RE Manager publishes
        QS_GATEWAY_SSE_HEARTBEAT_SECONDS="0.2",
    )
    process, url = start_gateway(stack_dir, env, log_name=f"gateway-{module}.log")
    try:
        prefix = env["QS_GATEWAY_REDIS_PREFIX"]
        leader_key = f"{prefix}:ingest:leader"
        store = redis.Redis(port=re_manager.redis_port)
        wait_for(lambda: store.get(leader_key) is not None, 60, "a worker to take the ingest lease")
        yield url, store, prefix
    finally:
        process.stop()


def run_script(url: str, lines: int, prefix: str, delay: float = 0.0) -> None:
    script = f"import time\nfor i in range({lines}):\n    print('{prefix}', i, flush=True)\n"
    if delay:
        script += f"    time.sleep({delay})\n"
    reply = httpx.post(f"{url}/api/script/upload", json={"script": script}, headers=HEADERS).json()
    assert reply["success"] is True, reply
    task = reply["task_uid"]
    wait_for(
        lambda: (
            httpx.request("GET", f"{url}/api/task/status", json={"task_uid": task}, headers=HEADERS).json()["status"]
            == "completed"
        ),
        60,
        "the script to finish",
    )


def numbers(text: str, prefix: str) -> list[int]:
    return [int(n) for n in re.findall(rf"^{prefix} (\d+)$", text, flags=re.M)]


def poll_update(url: str, cursor: str) -> httpx.Response:
    # a new connection each time, so consecutive polls land on different workers
    return httpx.request("GET", f"{url}/api/console_output_update", json={"last_msg_uid": cursor}, headers=HEADERS)
