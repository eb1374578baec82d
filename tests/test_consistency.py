"""Several gunicorn workers behave as one gateway: what one worker wrote, every worker reads."""

from __future__ import annotations

import httpx

from .support import API_KEY, plan


def test_read_your_writes_across_workers(gateway_url, manager_idle):
    headers = {"Authorization": f"ApiKey {API_KEY}"}
    for expected in range(1, 31):
        # a new connection for each request: the kernel spreads them over the three workers
        added = httpx.post(f"{gateway_url}/api/queue/item/add", json={"item": plan(num=expected)}, headers=headers)
        assert added.json()["success"] is True
        status = httpx.get(f"{gateway_url}/api/status", headers=headers).json()
        assert status["items_in_queue"] == expected
        queue = httpx.get(f"{gateway_url}/api/queue/get", headers=headers).json()
        assert len(queue["items"]) == expected
