"""Validating items without queueing them, and following an item's fate, against a real RE Manager.

Every verdict of the validate endpoints is compared with RE Manager's own answer to
``queue_item_add`` (and ``queue_item_add_batch``) for the same item and user group.
"""

from __future__ import annotations

import httpx
import pytest

from qs_gateway.extensions import EXTENSION_KEY
from qs_gateway.manager.item_state import NOT_FOUND

from .auth_support import private_prefix
from .conftest import make_app
from .support import API_KEY, INSTRUCTION_STOP, keyed_client, plan, spy_on, wait_for

# A group whose permissions (bluesky-queueserver's simulated profile) forbid det3 and motorN.
RESTRICTED = "test_user"
UNKNOWN_GROUP = "nobody_here"

MISSING = object()  # the request has no "item" at all


def bundle(*detectors: str) -> dict:
    # count_bundle_test lists the devices it accepts: an unknown or forbidden one is refused
    return {"item_type": "plan", "name": "count_bundle_test", "args": [list(detectors)]}


# A plan that passes validation and fails when it runs: the lists of motors and positions differ.
FAILS_AT_RUN_TIME = {
    "item_type": "plan",
    "name": "move_then_count",
    "args": [["motor1", "motor2"], ["det1"], [1.0]],
}

# (group, item, parameters the answer blames)
CASES = {
    "valid plan": ("primary", plan(num=2), set()),
    "valid plan with meta": ("primary", {**plan(), "meta": {"sample": "A"}}, set()),
    "valid instruction": ("primary", INSTRUCTION_STOP, set()),
    "valid but fails when run": ("primary", FAILS_AT_RUN_TIME, set()),
    "unknown plan": ("primary", plan("no_such_plan"), set()),
    "unknown device": ("primary", bundle("det1", "no_such_device"), {"detectors"}),
    "missing parameter": ("primary", {"item_type": "plan", "name": "count"}, {"detectors"}),
    "wrong type": ("primary", plan(num="five"), {"num"}),
    "two wrong types": ("primary", plan(num="five", md=3), {"num", "md"}),
    "float for an integer": ("primary", plan(num=1.0), {"num"}),
    "out of range": ("primary", {**FAILS_AT_RUN_TIME, "args": [["motor1"], ["det1"], [20]]}, {"positions"}),
    "unexpected parameter": ("primary", plan(no_such_parameter=1), {"no_such_parameter"}),
    "too many positional": ("primary", {**plan(), "args": [["det1"], 1, 2, 3, 4]}, set()),
    "bad meta": ("primary", {**plan(), "meta": 5}, set()),
    "unknown instruction": ("primary", {"item_type": "instruction", "name": "queue_start"}, set()),
    "function item": ("primary", {"item_type": "function", "name": "function_sleep"}, set()),
    "unknown item type": ("primary", {"item_type": "recipe", "name": "count"}, set()),
    "no item type": ("primary", {"name": "count", "args": [["det1"]]}, set()),
    "item not an object": ("primary", ["count", "det1"], set()),
    "item null": ("primary", None, set()),
    "no item": ("primary", MISSING, set()),
    "device not allowed for the group": (RESTRICTED, bundle("det1", "det3"), {"detectors"}),
    "plan not allowed for the group": (RESTRICTED, plan("adaptive_scan"), set()),
    "valid for the restricted group": (RESTRICTED, bundle("det1", "det2"), set()),
    "unknown group": (UNKNOWN_GROUP, INSTRUCTION_STOP, set()),
    "unknown group, malformed item": (UNKNOWN_GROUP, {"name": "count"}, set()),
}


@pytest.fixture
def client_of(tmp_path, re_manager):
    """A keyed in-process client whose principal is in the given user group."""
    apps = {}

    def client(group: str):
        if group not in apps:
            config = tmp_path / f"{group}.yml"
            config.write_text(f"resource_access:\n  args:\n    default_group: {group}\n")
            apps[group] = make_app(re_manager, QSERVER_HTTP_SERVER_CONFIG=str(config))
        return keyed_client(apps[group])

    yield client
    for app in apps.values():
        app.extensions[EXTENSION_KEY].close()


def manager_verdict(rm, group: str, request: dict) -> dict:
    """RE Manager's own answer to adding the item; an item it added is removed again."""
    reply = rm.request("queue_item_add", {**request, "user": "tester", "user_group": group})
    if reply["success"]:
        assert rm.request("queue_item_remove", {"uid": reply["item"]["item_uid"]})["success"] is True
    return reply


@pytest.mark.parametrize("case", list(CASES))
def test_validate_says_what_queue_item_add_says(case, client_of, manager_idle):
    group, item, blamed = CASES[case]
    request = {} if item is MISSING else {"item": item}
    expected = manager_verdict(manager_idle, group, request)

    response = client_of(group).post("/api/queue/item/validate", json=request)
    assert response.status_code == 200
    answer = response.get_json()
    assert (answer["success"], answer["msg"]) == (expected["success"], expected["msg"])
    assert set(answer["errors"]) == blamed, answer["errors"]
    assert manager_idle.queue_get()["items"] == []  # nothing was queued


def test_the_errors_say_what_is_wrong_with_each_parameter(client, manager_idle):
    def errors(item):
        return client.post("/api/queue/item/validate", json={"item": item}).get_json()["errors"]

    assert errors({"item_type": "plan", "name": "count"}) == {"detectors": "missing a required argument: 'detectors'"}
    assert errors(plan(no_such_parameter=1)) == {
        "no_such_parameter": "got an unexpected keyword argument 'no_such_parameter'"
    }
    assert errors(plan(num="five"))["num"].startswith("Input should be a valid integer")
    assert errors(bundle("det1", "no_such_device"))["detectors"].startswith("detectors.1: Input should be 'det'")
    assert errors(plan(num=1.0))["num"].startswith("Incorrect parameter type: key='num'")
    out_of_range = errors({**FAILS_AT_RUN_TIME, "args": [["motor1"], ["det1"], [20]]})["positions"]
    assert out_of_range.startswith("Parameter value is out of range: key='positions'") and "[-10, 10]" in out_of_range


def test_validate_batch_says_what_queue_item_add_batch_says(client_of, manager_idle):
    items = [case[1] for case in CASES.values() if case[0] == "primary" and case[1] is not MISSING]
    for group, batch in [
        ("primary", items),
        ("primary", [plan(num=1), INSTRUCTION_STOP]),  # all valid: RE Manager adds them
        ("primary", []),
        (RESTRICTED, [bundle("det1", "det3"), bundle("det1")]),
        (UNKNOWN_GROUP, [plan()]),
    ]:
        expected = manager_idle.request("queue_item_add_batch", {"items": batch, "user": "t", "user_group": group})
        manager_idle.queue_clear()
        answer = client_of(group).post("/api/queue/item/validate/batch", json={"items": batch}).get_json()
        assert (answer["success"], answer["msg"]) == (expected["success"], expected["msg"]), group
        assert [(r["success"], r["msg"]) for r in answer["results"]] == [
            (r["success"], r["msg"]) for r in expected["results"]
        ]
    expected = manager_idle.request("queue_item_add_batch", {"user": "t", "user_group": "primary"})
    answer = client_of("primary").post("/api/queue/item/validate/batch", json={}).get_json()
    assert (answer["success"], answer["msg"], answer["results"]) == (False, expected["msg"], [])
    assert manager_idle.queue_get()["items"] == []


def test_bad_payloads_are_refused_as_elsewhere(client, manager_idle):
    refused = client.post("/api/queue/item/validate", json={"item": plan(), "pos": "front"})
    assert refused.status_code == 400
    assert refused.get_json()["detail"] == "Request contains keys the are not supported: {'pos'}."
    refused = client.post("/api/queue/item/validate/batch", json={"items": {"not": "a list"}})
    assert refused.status_code == 400 and "items" in refused.get_json()["errors"]
    # validating needs read:resources, not a write scope; reading states needs read:queue
    assert client.application.test_client().post("/api/queue/item/validate", json={"item": plan()}).status_code == 401


def test_once_the_lists_are_cached_validating_sends_nothing_to_re_manager(re_manager, manager_idle):
    # the status stays cached too, and no status another app cached for less time is used
    app = make_app(re_manager, QS_GATEWAY_STATUS_TTL="600", QS_GATEWAY_REDIS_PREFIX=private_prefix())
    try:
        client = keyed_client(app)
        client.post("/api/queue/item/validate", json={"item": plan()})  # fills the caches
        client.get("/api/queue/item/state", json={"uid": "warm-up"})
        sent = spy_on(app)
        for case in CASES.values():
            if case[0] == "primary" and case[1] is not MISSING:
                assert client.post("/api/queue/item/validate", json={"item": case[1]}).status_code == 200
        batch = [case[1] for case in CASES.values() if case[0] == "primary" and case[1] is not MISSING]
        assert client.post("/api/queue/item/validate/batch", json={"items": batch}).get_json()["success"] is False
        # a script polling a hundred items
        for n in range(100):
            assert client.get(f"/api/queue/item/state?uid=item-{n}").get_json()["state"] == "unknown"
        assert sent == []
        # the lists the validation uses are the ones /api/plans/allowed serves: one cache entry
        assert client.get("/api/plans/allowed").get_json()["success"] is True
        assert sent == []
    finally:
        app.extensions[EXTENSION_KEY].close()


def state(client, uid: str) -> dict:
    response = client.get("/api/queue/item/state", query_string={"uid": uid})
    assert response.status_code == 200
    return response.get_json()


def test_one_item_followed_from_queued_through_running_to_completed(client, manager_open):
    slow = client.post("/api/queue/item/add", json={"item": plan(num=10, delay=0.3)}).get_json()["item"]["item_uid"]
    quick = client.post("/api/queue/item/add", json={"item": plan()}).get_json()["item"]["item_uid"]
    assert state(client, slow) == {
        "success": True,
        "msg": "",
        "uid": slow,
        "state": "queued",
        "position": 0,
        "exit_status": None,
        "time_start": None,
        "time_stop": None,
    }
    assert state(client, quick)["position"] == 1
    # the uid may also come in a JSON body, as every other GET payload
    assert client.get("/api/queue/item/state", json={"uid": quick}).get_json()["position"] == 1

    assert client.post("/api/queue/start").get_json()["success"] is True
    wait_for(lambda: state(client, slow)["state"] == "running", 30, "the first item to run")
    running = state(client, slow)
    assert running["position"] is None and running["time_start"] > 0 and running["time_stop"] is None
    assert state(client, quick)["state"] in ("queued", "running", "completed")  # the first may have ended

    wait_for(lambda: state(client, quick)["state"] == "completed", 60, "both items to complete")
    done = state(client, slow)
    assert (done["state"], done["exit_status"], done["msg"], done["position"]) == ("completed", "completed", "", None)
    history = {i["item_uid"]: i["result"] for i in manager_open.request("history_get")["items"]}
    assert (done["time_start"], done["time_stop"]) == (history[slow]["time_start"], history[slow]["time_stop"])
    assert done["time_start"] < done["time_stop"]


def test_an_item_that_fails_when_it_runs(client, manager_open):
    assert client.post("/api/queue/item/validate", json={"item": FAILS_AT_RUN_TIME}).get_json()["success"] is True
    uid = client.post("/api/queue/item/add", json={"item": FAILS_AT_RUN_TIME}).get_json()["item"]["item_uid"]
    assert state(client, uid)["state"] == "queued"
    assert client.post("/api/queue/start").get_json()["success"] is True
    wait_for(lambda: state(client, uid)["state"] == "failed", 60, "the item to fail")
    failed = state(client, uid)
    assert failed["exit_status"] == "failed" and failed["position"] is None
    assert "same number of elements" in failed["msg"]
    assert failed["time_start"] <= failed["time_stop"]
    # RE Manager put a copy back at the front of the queue, under a new uid
    wait_for(lambda: manager_open.status()["manager_state"] == "idle", 30, "the queue to stop")
    copy = manager_open.queue_get()["items"][0]
    assert copy["item_uid"] != uid and copy["name"] == "move_then_count"
    assert state(client, copy["item_uid"])["state"] == "queued"


def test_an_unknown_uid_and_a_missing_one(client, manager_idle):
    unknown = state(client, "no-such-uid")
    assert (unknown["success"], unknown["state"], unknown["exit_status"]) == (True, "unknown", None)
    assert unknown["msg"] == NOT_FOUND
    missing = client.get("/api/queue/item/state")
    assert missing.status_code == 400
    assert missing.get_json() == {
        "detail": "Some required keys are missing in the request: {'uid'}.",
        "errors": {"uid": ["Missing data for required field."]},
    }
    assert client.get("/api/queue/item/state", json={"uid": None}).status_code == 400
    assert client.get("/api/queue/item/state", json={"uid": "x" * 300}).status_code == 400


def test_under_gunicorn(gateway_url, manager_idle):
    headers = {"Authorization": f"ApiKey {API_KEY}"}
    with httpx.Client(base_url=gateway_url, headers=headers, timeout=30) as http:
        refused = http.post("/api/queue/item/validate", json={"item": plan("no_such_plan")}).json()
        assert refused["success"] is False and refused["msg"].startswith("Failed to add an item: Plan validation")
        uid = http.post("/api/queue/item/add", json={"item": plan()}).json()["item"]["item_uid"]
        wait_for(
            lambda: http.get("/api/queue/item/state", params={"uid": uid}).json()["state"] == "queued",
            10,
            "the item to be seen",
        )
        batch = http.post("/api/queue/item/validate/batch", json={"items": [plan(), INSTRUCTION_STOP]}).json()
        assert batch == {
            "success": True,
            "msg": "",
            "results": [{"success": True, "msg": "", "errors": {}}, {"success": True, "msg": "", "errors": {}}],
        }


def test_the_openapi_document_describes_the_new_endpoints(anonymous):
    document = anonymous.get("/openapi.json").get_json()
    paths, schemas = document["paths"], document["components"]["schemas"]
    for path in ("/api/queue/item/validate", "/api/queue/item/validate/batch"):
        operation = paths[path]["post"]
        assert operation["x-scope"] == "read:resources" and "get" not in paths[path]
        assert {"200", "400", "401", "408", "503"} <= set(operation["responses"])
    body = paths["/api/queue/item/validate/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schemas[body["$ref"].rsplit("/", 1)[1]]["properties"]["items"]["type"] == "array"
    state_get = paths["/api/queue/item/state"]["get"]
    assert state_get["x-scope"] == "read:queue"
    assert state_get["parameters"] == [
        {"in": "query", "name": "uid", "schema": {"type": "string", "maxLength": 256}, "required": True}
    ]
