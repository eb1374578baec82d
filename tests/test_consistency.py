"""Several gunicorn workers behave as one gateway: what one worker wrote, every worker reads."""

from __future__ import annotations

import httpx

from .support import API_KEY, plan


def test_read_your_writes_across_workers(gateway_url, manager_idle):
    headers = {"Authorization": f"ApiKey {API_KEY}"}
    crossings = 0
    for expected in range(1, 31):
        # a new connection for each request: the kernel spreads them over the three workers
        added = httpx.post(f"{gateway_url}/api/queue/item/add", json={"item": plan(num=expected)}, headers=headers)
        assert added.json()["success"] is True
        status = httpx.get(f"{gateway_url}/api/status", headers=headers)
        assert status.json()["items_in_queue"] == expected
        crossings += added.headers["X-Gateway-Worker"] != status.headers["X-Gateway-Worker"]
        queue = httpx.get(f"{gateway_url}/api/queue/get", headers=headers).json()
        assert len(queue["items"]) == expected
    # the write and the read were served by different workers at least sometimes
    assert crossings > 0, "every read went to the worker that wrote: the test proved nothing"
