"""bluesky-queueserver-api in HTTP mode against the gateway under real gunicorn (3 workers).

The client is used exactly as beamline scripts use it, with threads and with asyncio.
"""

from __future__ import annotations

import asyncio

import pytest
from bluesky_queueserver_api import BFunc, BItem, BPlan
from bluesky_queueserver_api.http import REManagerAPI
from bluesky_queueserver_api.http.aio import REManagerAPI as AsyncREManagerAPI

from .support import API_KEY


def test_environment_plans_devices_and_queue_editing(RM, manager_closed):
    RM.environment_open()
    RM.wait_for_idle(timeout=60)
    assert RM.status()["worker_environment_exists"] is True

    assert "count" in RM.plans_allowed()["plans_allowed"]
    assert "det1" in RM.devices_allowed()["devices_allowed"]
    assert "count" in RM.plans_existing()["plans_existing"]
    assert "motor" in RM.devices_existing()["devices_existing"]

    first = RM.item_add(BPlan("count", ["det1"], num=1))["item"]
    assert first["user"] == "UNAUTHENTICATED_SINGLE_USER" and first["user_group"] == "primary"
    RM.item_add_batch([BPlan("count", ["det1"], num=2), BPlan("count", ["det2"], num=3)])
    RM.item_add(BPlan("count", ["det1"], num=4), pos="front")
    assert [i["kwargs"]["num"] for i in RM.queue_get()["items"]] == [4, 1, 2, 3]

    RM.item_move(uid=first["item_uid"], pos_dest="back")
    RM.item_move_batch(uids=[first["item_uid"]], pos_dest="front")
    assert RM.item_get(pos="front")["item"]["item_uid"] == first["item_uid"]

    item = BItem(RM.item_get(uid=first["item_uid"])["item"])
    item.kwargs["num"] = 5
    assert RM.item_update(item)["item"]["kwargs"]["num"] == 5

    removed = RM.item_remove(pos="back")["item"]
    assert removed["kwargs"]["num"] == 3
    remaining = [i["item_uid"] for i in RM.queue_get()["items"]]
    RM.item_remove_batch(uids=remaining[1:])
    assert [i["item_uid"] for i in RM.queue_get()["items"]] == remaining[:1]
    RM.queue_clear()

    RM.environment_close()
    RM.wait_for_idle(timeout=60)
    assert RM.status()["worker_environment_exists"] is False


def test_start_queue_and_wait_then_history(RM, manager_open):
    RM.item_add_batch([BPlan("count", ["det1", "det2"], num=2, delay=0.05)] * 3)
    RM.queue_start()
    RM.wait_for_idle_or_running(timeout=10)
    RM.wait_for_idle(timeout=60)
    status = RM.status()
    assert status["items_in_queue"] == 0 and status["items_in_history"] == 3
    history = RM.history_get()["items"]
    assert len(history) == 3 and all(i["result"]["exit_status"] == "completed" for i in history)
    RM.history_clear()
    assert RM.history_get()["items"] == []


@pytest.mark.parametrize("ending", ["resume", "stop", "abort", "halt"])
def test_pause_then_resume_stop_abort_or_halt(RM, manager_open, ending):
    RM.item_add(BPlan("count", ["det1"], num=10, delay=0.3))
    RM.queue_start()
    RM.wait_for_condition(lambda s: s["manager_state"] == "executing_queue" and s["re_state"] == "running", timeout=20)
    RM.re_pause(option="immediate")
    RM.wait_for_idle_or_paused(timeout=20)
    assert RM.status()["manager_state"] == "paused"
    getattr(RM, f"re_{ending}")()
    RM.wait_for_idle(timeout=30)
    history = RM.history_get()["items"]
    expected = {"resume": "completed", "stop": "stopped", "abort": "aborted", "halt": "halted"}[ending]
    assert history[-1]["result"]["exit_status"] == expected


def test_lock_and_unlock_with_a_key(RM, manager_idle):
    RM.lock_environment("lock-key-e2e", note="maintenance")
    try:
        info = RM.lock_info()
        assert info["lock_info"]["environment"] is True and info["lock_info"]["note"] == "maintenance"
        with pytest.raises(RM.RequestFailedError, match="locked"):
            RM.environment_open()
        RM.lock_key = "lock-key-e2e"
        RM.enable_locked_api = True
        RM.queue_mode_set(loop=False)
    finally:
        RM.unlock("lock-key-e2e")
    assert RM.lock_info()["lock_info"]["environment"] is False


def test_script_function_and_tasks(RM, manager_open):
    task_uid = RM.script_upload("e2e_value = 7\n")["task_uid"]
    RM.wait_for_completed_task(task_uid, timeout=30)
    assert RM.task_status(task_uid)["status"] == "completed"
    assert RM.task_result(task_uid)["result"]["success"] is True
    executed = RM.function_execute(BFunc("function_sleep", 0.1))
    RM.wait_for_completed_task(executed["task_uid"], timeout=30)
    assert RM.task_result(executed["task_uid"])["result"]["success"] is True


def test_permissions_queue_mode_and_autostart(RM, manager_idle):
    permissions = RM.permissions_get()["user_group_permissions"]
    RM.permissions_set(permissions)
    RM.permissions_reload(restore_permissions=True)
    RM.queue_mode_set(loop=True)
    assert RM.status()["plan_queue_mode"]["loop"] is True
    RM.queue_mode_set(mode="default")
    RM.queue_autostart(True)
    assert RM.status()["queue_autostart_enabled"] is True
    RM.queue_autostart(False)
    assert RM.status()["queue_autostart_enabled"] is False


def test_errors_surface_as_the_client_expects(RM, manager_idle):
    with pytest.raises(RM.RequestFailedError, match="request contains no item info"):
        RM.send_request(method="queue_item_add", params={})
    with pytest.raises(RM.HTTPClientError, match="400: Request contains keys the are not supported"):
        RM.send_request(method="status", params={"unsupported": 1})
    with pytest.raises(RM.HTTPClientError, match="404: Not Found"):
        RM.send_request(method=("GET", "/api/no/such/route"))
    with pytest.raises(RM.HTTPClientError, match="401: Invalid API key"):
        other = REManagerAPI(http_server_uri=RM._http_server_uri)
        other.set_authorization_key(api_key="WRONGKEY")
        try:
            other.status()
        finally:
            other.close()
    assert RM.send_request(method=("GET", "/api/test/server/sleep"), params={"time": 0.2})["success"] is True


def test_asyncio_client(gateway_url, manager_idle):
    async def scenario() -> None:
        rm = AsyncREManagerAPI(http_server_uri=gateway_url)
        rm.set_authorization_key(api_key=API_KEY)
        try:
            results = await asyncio.gather(*(rm.item_add(BPlan("count", ["det1"], num=i)) for i in range(10)))
            assert all(r["success"] for r in results)
            queue = await rm.queue_get()
            assert sorted(i["kwargs"]["num"] for i in queue["items"]) == list(range(10))
            status = await rm.status()
            assert status["items_in_queue"] == 10
            await rm.queue_clear()
            assert (await rm.status())["items_in_queue"] == 0
        finally:
            await rm.close()

    asyncio.run(scenario())
