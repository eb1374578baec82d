"""Several gunicorn workers behave as one gateway: what one worker wrote, every worker reads."""

from __future__ import annotations

import httpx

from .support import API_KEY, plan, wait_for


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
