"""Every resource of the API, in-process (Flask test client) against a real RE Manager."""

from __future__ import annotations

import pytest

from .support import PLAN_COUNT, plan, wait_for


def test_status_ping_and_root_return_manager_status(client, manager_idle):
    # manager_idle cleared the queue behind the gateway's back: its cached status catches up
    # within the status's documented age (published_status_max_age)
    wait_for(
        lambda: client.get("/api/status").get_json()["plan_queue_uid"] == manager_idle.status()["plan_queue_uid"],
        10,
        "the cached status to catch up with a change made directly at RE Manager",
    )
    direct = manager_idle.status()
    for path in ("/api/status", "/api/ping", "/api/", "/api"):
        response = client.get(path)
        assert response.status_code == 200, path
        body = response.get_json()
        assert body["msg"].startswith("RE Manager")
        assert body["manager_state"] == "idle"
        # clients cache by these uids: they must be RE Manager's own
        for key in ("plan_queue_uid", "plan_history_uid", "plans_allowed_uid", "lock_info_uid", "run_list_uid"):
            assert body[key] == direct[key]


def test_status_is_served_from_cache_and_reload_bypasses_it(client, manager_idle, sent):
    client.get("/api/status", json={"reload": True})
    client.get("/api/status")
    client.get("/api/status")
    assert sent.count("status") == 1
    client.get("/api/status", json={"reload": True})
    assert sent.count("status") == 2


def test_config_get(client, manager_idle):
    body = client.get("/api/config/get", json={}).get_json()
    assert body["success"] is True
    assert body["config"]["ip_connect_info"] == {}


def test_queue_autostart_and_mode(client, manager_idle):
    assert client.post("/api/queue/autostart", json={"enable": True}).get_json()["success"] is True
    assert client.get("/api/status").get_json()["queue_autostart_enabled"] is True
    # the value is coerced like bool() in the reference server
    assert client.post("/api/queue/autostart", json={"enable": 0}).get_json()["success"] is True
    assert client.get("/api/status").get_json()["queue_autostart_enabled"] is False

    assert client.post("/api/queue/mode/set", json={"mode": {}}).get_json()["success"] is True
    # mode keys given at the top level form the mode
    assert client.post("/api/queue/mode/set", json={"loop": True}).get_json()["success"] is True
    assert client.get("/api/status").get_json()["plan_queue_mode"]["loop"] is True
    refused = client.post("/api/queue/mode/set", json={"mode": {"no_such_option": 1}}).get_json()
    assert refused["success"] is False and "Unsupported plan queue mode parameter" in refused["msg"]
    assert client.post("/api/queue/mode/set", json={"mode": "default"}).get_json()["success"] is True
    assert client.get("/api/status").get_json()["plan_queue_mode"]["loop"] is False


def test_queue_items_add_get_move_update_remove(client, manager_idle):
    first = client.post("/api/queue/item/add", json={"item": plan(num=1)}).get_json()
    assert first["success"] is True and first["qsize"] == 1
    # the server, not the client, says who added the item
    assert first["item"]["user"] == "UNAUTHENTICATED_SINGLE_USER"
    assert first["item"]["user_group"] == "primary"
    second = client.post("/api/queue/item/add", json={"item": plan(num=2), "pos": "front"}).get_json()
    batch = client.post("/api/queue/item/add/batch", json={"items": [plan(num=3), plan(num=4)]}).get_json()
    assert batch["success"] is True and batch["qsize"] == 4

    queue = client.get("/api/queue/get", json={}).get_json()
    assert [i["kwargs"]["num"] for i in queue["items"]] == [2, 1, 3, 4]

    got = client.get("/api/queue/item/get", json={"pos": 1}).get_json()
    assert got["item"]["item_uid"] == first["item"]["item_uid"]
    assert client.get("/api/queue/item/get").get_json()["item"]["kwargs"] == {"num": 4}  # no body: the last

    moved = client.post("/api/queue/item/move", json={"uid": second["item"]["item_uid"], "pos_dest": "back"})
    assert moved.get_json()["success"] is True
    uids = [i["item_uid"] for i in client.get("/api/queue/get").get_json()["items"]]
    moved_batch = client.post("/api/queue/item/move/batch", json={"uids": uids[2:], "pos_dest": "front"})
    assert moved_batch.get_json()["success"] is True
    queue = client.get("/api/queue/get").get_json()
    assert [i["kwargs"]["num"] for i in queue["items"]] == [4, 2, 1, 3]

    updated_item = {**first["item"], "kwargs": {"num": 7}}
    updated = client.post("/api/queue/item/update", json={"item": updated_item}).get_json()
    assert updated["success"] is True and updated["item"]["item_uid"] == first["item"]["item_uid"]
    replaced = client.post("/api/queue/item/update", json={"item": updated_item, "replace": True}).get_json()
    assert replaced["success"] is True and replaced["item"]["item_uid"] != first["item"]["item_uid"]

    removed = client.post("/api/queue/item/remove", json={"uid": replaced["item"]["item_uid"]}).get_json()
    assert removed["success"] is True and removed["qsize"] == 3
    remaining = [i["item_uid"] for i in client.get("/api/queue/get").get_json()["items"]]
    batch_removed = client.post("/api/queue/item/remove/batch", json={"uids": remaining[:2]}).get_json()
    assert batch_removed["success"] is True and batch_removed["qsize"] == 1
    assert client.post("/api/queue/item/remove", json={}).get_json()["qsize"] == 0  # {} removes the last
    assert client.post("/api/queue/clear").get_json()["success"] is True


def test_an_item_by_uid_in_the_path_as_newer_web_clients_read_it(client, manager_idle):
    added = client.post("/api/queue/item/add", json={"item": plan(num=1)}).get_json()["item"]
    by_path = client.get(f"/api/queue/item/{added['item_uid']}")
    assert by_path.status_code == 200
    assert by_path.get_json() == client.get("/api/queue/item/get", json={"uid": added["item_uid"]}).get_json()
    missing = client.get("/api/queue/item/not-a-uid").get_json()
    assert missing["success"] is False and missing["msg"].startswith("Failed to get an item: ")
    # the names of the endpoints beside it are not uids
    for name in ("add", "remove", "move", "update", "execute", "validate"):
        assert client.get(f"/api/queue/item/{name}").status_code == 405, name


def test_refusals_of_re_manager_are_200_with_success_false(client, manager_idle):
    # Pass-through: without an item the payload goes to RE Manager, which explains.
    body = client.post("/api/queue/item/add", json={}).get_json()
    assert body["success"] is False and "request contains no item info" in body["msg"]
    unknown_plan = client.post("/api/queue/item/add", json={"item": plan("no_such_plan")})
    assert unknown_plan.status_code == 200 and unknown_plan.get_json()["success"] is False
    missing = client.post("/api/queue/item/update", json={"item": {**PLAN_COUNT, "item_uid": "incorrect_uid"}})
    assert missing.get_json()["msg"] == (
        "Failed to add an item: Failed to replace item: Item with UID 'incorrect_uid' is not in the queue"
    )
    ambiguous = client.post("/api/queue/item/remove", json={"pos": 0, "uid": "x"}).get_json()
    assert ambiguous["success"] is False and "Ambiguous parameters" in ambiguous["msg"]


def test_queue_get_is_cached_by_uid_and_writes_are_seen_at_once(client, manager_idle, sent):
    client.get("/api/queue/get")
    client.get("/api/queue/get")
    assert sent.count("queue_get") == 1
    client.post("/api/queue/item/add", json={"item": PLAN_COUNT})
    # read-your-writes: the add invalidated the status, the new plan_queue_uid refetches the queue
    assert len(client.get("/api/queue/get").get_json()["items"]) == 1
    assert sent.count("queue_get") == 2


def test_plans_and_devices(client, manager_idle, sent):
    allowed = client.get("/api/plans/allowed", json={}).get_json()
    assert allowed["success"] is True and "count" in allowed["plans_allowed"]
    # the gateway chooses the user group; the client sends none
    assert ("plans_allowed", {"user_group": "primary"}) in sent.calls
    reduced = client.get("/api/plans/allowed", json={"reduced": True}).get_json()
    assert "parameters" in reduced["plans_allowed"]["count"]
    assert "annotation" not in str(reduced["plans_allowed"]["count"])
    assert client.get("/api/plans/existing", json={"reduced": False}).get_json()["plans_existing"]
    assert "det1" in client.get("/api/devices/allowed").get_json()["devices_allowed"]
    assert "det1" in client.get("/api/devices/existing").get_json()["devices_existing"]
    for path in ("/api/plans/allowed", "/api/plans/existing"):
        refused = client.get(path, json={"unsupported": 1})
        assert refused.status_code == 400
        assert "Request contains keys the are not supported: {'unsupported'}" in refused.get_json()["detail"]


def test_history_get_and_clear(client, manager_idle):
    assert client.get("/api/history/get").get_json()["items"] == []
    assert client.post("/api/history/clear", json={"size": 0}).get_json()["success"] is True
    assert client.post("/api/history/clear").get_json()["success"] is True


def test_environment_open_twice_and_close(client, manager_closed):
    assert client.post("/api/environment/open").get_json() == {"success": True, "msg": ""}
    wait_for(lambda: client.get("/api/status").get_json()["worker_environment_exists"], 60, "environment")
    wait_for(lambda: client.get("/api/status").get_json()["manager_state"] == "idle", 30, "idle")
    again = client.post("/api/environment/open").get_json()
    assert again == {"success": False, "msg": "RE Worker environment already exists."}
    assert client.post("/api/environment/close").get_json()["success"] is True
    wait_for(lambda: not client.get("/api/status").get_json()["worker_environment_exists"], 60, "closed")
    assert client.post("/api/environment/close").get_json()["msg"] == "RE Worker environment does not exist."


def test_runs_and_metadata(client, manager_open):
    for option in ("active", "open", "closed"):
        by_path = client.get(f"/api/re/runs/{option}").get_json()
        by_body = client.post("/api/re/runs", json={"option": option}).get_json()
        assert by_path["run_list"] == by_body["run_list"] == []
        assert by_path["run_list_uid"] == client.get("/api/status").get_json()["run_list_uid"]
    assert client.post("/api/re/runs", json={}).get_json()["success"] is True
    metadata = client.get("/api/re/metadata", json={}).get_json()
    assert metadata["success"] is True and "versions" in metadata["re_metadata"]


def test_permissions_get_set_reload(client, manager_idle):
    current = client.get("/api/permissions/get", json={}).get_json()
    assert current["success"] is True
    permissions = current["user_group_permissions"]
    assert client.post("/api/permissions/set", json={"user_group_permissions": permissions}).get_json()["success"]
    reloaded = client.post("/api/permissions/reload", json={"restore_permissions": True}).get_json()
    assert reloaded["success"] is True


def test_script_upload_function_execute_and_tasks(client, manager_open):
    uploaded = client.post("/api/script/upload", json={"script": "gateway_test_value = 42\n"}).get_json()
    assert uploaded["success"] is True
    task = uploaded["task_uid"]
    wait_for(
        lambda: client.get("/api/task/status", json={"task_uid": task}).get_json()["status"] == "completed",
        30,
        "script task",
    )
    listed = client.get("/api/task/status", json={"task_uid": [task]}).get_json()
    assert listed["status"] == {task: "completed"}
    result = client.get("/api/task/result", json={"task_uid": task}).get_json()
    assert result["result"]["success"] is True

    function = {"item_type": "function", "name": "function_sleep", "args": [0.1]}
    executed = client.post("/api/function/execute", json={"item": function}).get_json()
    assert executed["success"] is True, executed
    assert executed["item"]["user"] == "UNAUTHENTICATED_SINGLE_USER"
    task = executed["task_uid"]
    wait_for(
        lambda: client.get("/api/task/result", json={"task_uid": task}).get_json()["status"] == "completed",
        30,
        "function task",
    )


def test_lock_unlock_and_lock_info(client, manager_idle):
    locked = client.post("/api/lock", json={"lock_key": "key-1", "environment": True, "note": "test"}).get_json()
    assert locked["success"] is True
    assert locked["lock_info"]["environment"] is True and locked["lock_info"]["queue"] is False
    assert locked["lock_info"]["user"] == "UNAUTHENTICATED_SINGLE_USER"
    try:
        info = client.get("/api/lock/info", json={"lock_key": None}).get_json()
        assert info["lock_info"]["note"] == "test"
        assert client.get("/api/lock/info", json={"lock_key": "wrong"}).get_json()["success"] is False
        refused = client.post("/api/environment/open", json={}).get_json()
        assert refused["success"] is False and "locked" in refused["msg"].lower()
    finally:
        assert client.post("/api/unlock", json={"lock_key": "key-1"}).get_json()["success"] is True
    assert client.get("/api/lock/info").get_json()["lock_info"]["environment"] is False


def test_test_server_sleep(client):
    assert client.get("/api/test/server/sleep", json={"time": 0.1}).get_json() == {"success": True, "msg": ""}
    missing = client.get("/api/test/server/sleep", json={})
    assert missing.status_code == 400
    assert missing.get_json()["detail"].startswith("The required parameter 'time' is missing in the API call")


@pytest.mark.parametrize(
    "path, uid_field",
    [("/api/status", "status_uid"), ("/api/queue/get", "plan_queue_uid"), ("/api/history/get", "plan_history_uid")],
)
def test_conditional_reads_answer_304_until_the_uid_changes(client, manager_idle, path, uid_field):
    first = client.get(path)
    etag = first.headers["ETag"]
    assert etag == f'W/"{first.get_json()[uid_field]}"'
    unchanged = client.get(path, headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.data == b"" and unchanged.headers["ETag"] == etag
    client.post("/api/queue/item/add", json={"item": PLAN_COUNT})
    client.post("/api/history/clear")  # a new plan_history_uid, even for an empty history
    changed = client.get(path, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag


def test_large_answers_are_gzipped_for_clients_that_accept_it(client, manager_idle):
    import gzip

    client.post("/api/queue/item/add/batch", json={"items": [plan(num=i) for i in range(100)]})
    plain = client.get("/api/queue/get")
    assert "Content-Encoding" not in plain.headers
    compressed = client.get("/api/queue/get", headers={"Accept-Encoding": "gzip, deflate"})
    assert compressed.headers["Content-Encoding"] == "gzip"
    assert compressed.headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(compressed.data) == plain.data
    assert len(compressed.data) < len(plain.data) / 3
    small = client.get("/api/status", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in small.headers  # not worth it below gzip_min_bytes
