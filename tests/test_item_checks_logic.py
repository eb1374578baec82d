"""Pure logic of item validation and item states, with a fake of our own manager client.

The lists of allowed plans and devices are bluesky-queueserver's simulated profile, computed
by its own functions from the profile's files (as RE Manager computes them), with no RE Manager.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qs_gateway.manager import Reply
from qs_gateway.manager.item_state import NOT_FOUND, HistoryIndex, ItemStates, QueueIndex, fate
from qs_gateway.manager.validation import (
    AllowedLists,
    GroupLists,
    ItemValidator,
    format_problem,
    judge_add,
    judge_add_batch,
)

from .support import INSTRUCTION_STOP, plan


@pytest.fixture(scope="module")
def profile_lists() -> dict[str, GroupLists]:
    import bluesky_queueserver
    from bluesky_queueserver.manager.profile_ops import load_allowed_plans_and_devices

    profile = Path(bluesky_queueserver.__file__).parent / "profile_collection_sim"
    plans, devices = load_allowed_plans_and_devices(
        path_existing_plans_and_devices=str(profile / "existing_plans_and_devices.yaml"),
        path_user_group_permissions=str(profile / "user_group_permissions.yaml"),
    )
    plans, devices = json.loads(json.dumps(plans)), json.loads(json.dumps(devices))  # as they come over the wire
    return {group: GroupLists(("p", "d"), plans[group], devices[group]) for group in ("primary", "test_user")}


def add(item, lists: GroupLists) -> dict:
    return judge_add({"item": item}, lambda: lists)


def test_the_envelope_is_judged_before_anything_else():
    assert format_problem(plan()) == ""
    assert format_problem(INSTRUCTION_STOP) == ""
    assert format_problem([1]) == (
        "Incorrect request format: incorrect type ('<class 'list'>') of item parameter: "
        "item parameter must have type 'dict'"
    )
    assert format_problem({"name": "count"}) == "Incorrect request format: 'item_type' key is not found"
    assert format_problem({"item_type": "function", "name": "f"}) == (
        "Incorrect request format: unsupported 'item_type' value: 'function', supported item types "
        "('plan', 'instruction')"
    )

    def no_lists() -> GroupLists:
        raise AssertionError("the lists are not needed to refuse a malformed item")

    assert judge_add({"item": {"name": "count"}}, no_lists)["msg"] == (
        "Failed to add an item: Incorrect request format: 'item_type' key is not found"
    )
    assert judge_add({}, no_lists) == {
        "success": False,
        "msg": "Failed to add an item: Incorrect request format: request contains no item info",
        "errors": {},
    }


def test_an_unknown_group_is_refused_after_the_envelope_and_before_the_item():
    unknown = GroupLists(("p", "d"), refusal="Unknown user group: 'x'")
    assert add(INSTRUCTION_STOP, unknown)["msg"] == "Failed to add an item: Unknown user group: 'x'"
    assert add({"name": "count"}, unknown)["msg"].endswith("'item_type' key is not found")
    batch = judge_add_batch({"items": [{"name": "count"}]}, lambda: unknown)
    assert batch == {"success": False, "msg": "Failed to add an item: Unknown user group: 'x'", "results": []}
    missing = judge_add_batch({}, lambda: unknown)
    assert missing["msg"] == "Failed to add an item: Invalid request format: the list of items is not found"


def test_plans_and_instructions(profile_lists):
    primary, restricted = profile_lists["primary"], profile_lists["test_user"]
    assert add(plan(num=3), primary) == {"success": True, "msg": "", "errors": {}}
    assert add(INSTRUCTION_STOP, primary)["success"] is True
    assert add({"item_type": "instruction", "name": "queue_start"}, primary)["msg"] == (
        "Failed to add an item: Unrecognized instruction: {'item_type': 'instruction', 'name': 'queue_start'}"
    )
    unknown = add(plan("no_such_plan"), primary)
    assert unknown["msg"].startswith(
        "Failed to add an item: Plan validation failed: "
        "Plan 'no_such_plan' is not in the list of allowed plans.\nPlan: "
    )
    assert unknown["errors"] == {}
    # the group's permissions: test_user may not use adaptive_scan, nor det3
    assert add(plan("adaptive_scan"), restricted)["success"] is False
    bundle = {"item_type": "plan", "name": "count_bundle_test", "args": [["det1", "det3"]]}
    assert add(bundle, primary)["success"] is True
    refused = add(bundle, restricted)
    assert refused["success"] is False and set(refused["errors"]) == {"detectors"}
    assert refused["errors"]["detectors"].startswith("detectors.1: Input should be 'det', 'det1', 'det2', ")


@pytest.mark.parametrize(
    ("item", "errors"),
    [
        ({"item_type": "plan", "name": "count"}, {"detectors": "missing a required argument: 'detectors'"}),
        (plan(num=3, bogus=1), {"bogus": "got an unexpected keyword argument 'bogus'"}),
        ({**plan(num=3), "args": [["det1"], 3]}, {"num": "multiple values for argument 'num'"}),
        ({**plan(), "args": [["det1"], 1, 2, 3, 4]}, {}),  # too many positional: no one parameter to blame
        ({**plan(), "meta": 5}, {}),
        (
            plan(num=1.5, md=3),
            {
                "num": "Input should be a valid integer, got a number with a fractional part",
                "md": "Input should be a valid dictionary",
            },
        ),
    ],
)
def test_the_parameter_to_blame(profile_lists, item, errors):
    verdict = add(item, profile_lists["primary"])
    assert verdict["success"] is False
    assert verdict["errors"] == errors


def test_problems_found_after_pydantic_are_read_from_the_message(profile_lists):
    verdict = add(plan(num=1.0), profile_lists["primary"])
    assert verdict["errors"] == {
        "num": "Incorrect parameter type: key='num', value='1.0' (<class 'float'>), interpreted as '1' (<class 'int'>)"
    }
    out_of_range = {"item_type": "plan", "name": "move_then_count", "args": [["motor1"], ["det1"], [20]]}
    verdict = add(out_of_range, profile_lists["primary"])
    assert verdict["errors"] == {
        "positions": (
            "Parameter value is out of range: key='positions', value='[20]': Value 20 is out of range [-10, 10]"
        )
    }
    # a value that looks like such a line is part of the printed plan, not a reason
    sneaky = plan(num=1.0, md={"note": "Incorrect parameter type: key='md'"})
    assert set(add(sneaky, profile_lists["primary"])["errors"]) == {"num"}


def test_a_batch_counts_its_failures_in_re_managers_words(profile_lists):
    primary = profile_lists["primary"]
    batch = judge_add_batch({"items": [plan(), None, {"name": "x"}, plan(num="a")]}, lambda: primary)
    assert batch["success"] is False
    assert batch["msg"] == "Failed to add all items: validation of 3 out of 4 submitted items failed"
    assert [r["success"] for r in batch["results"]] == [True, False, False, False]
    assert batch["results"][1]["msg"].startswith("Failed to add a plan: Runtime error: Only one of")
    assert batch["results"][2]["msg"] == "Failed to add a plan: Incorrect request format: 'item_type' key is not found"
    assert set(batch["results"][3]["errors"]) == {"num"}
    assert judge_add_batch({"items": []}, lambda: primary) == {"success": True, "msg": "", "results": []}


# -- a fake of our own manager client ------------------------------------------------------------


class FakeManager:
    """Answers ``status`` and ``read`` from dicts, and counts what was asked."""

    def __init__(self, status: dict, replies: dict) -> None:
        self.status_data = status
        self.replies = replies  # method -> reply data
        self.read_calls: list[tuple[str, dict]] = []

    def status(self, *, reload: bool = False) -> Reply:
        return Reply(dict(self.status_data))

    def read(self, method: str, params: dict | None = None, **kwargs) -> Reply:
        self.read_calls.append((method, dict(params or {})))
        return Reply(body=Reply(self.replies[method]).body)  # as the client's cache hands it out


def test_allowed_lists_are_fetched_once_per_pair_of_uids(profile_lists):
    primary = profile_lists["primary"]
    manager = FakeManager(
        {"plans_allowed_uid": "p1", "devices_allowed_uid": "d1"},
        {
            "plans_allowed": {"success": True, "plans_allowed": primary.plans, "plans_allowed_uid": "p1"},
            "devices_allowed": {"success": True, "devices_allowed": primary.devices, "devices_allowed_uid": "d1"},
        },
    )
    validator = ItemValidator(manager)
    for _ in range(5):
        assert validator.check({"item": plan()}, "primary")["success"] is True
    assert manager.read_calls == [
        ("plans_allowed", {"user_group": "primary"}),
        ("devices_allowed", {"user_group": "primary"}),
    ]
    manager.status_data["devices_allowed_uid"] = "d2"  # e.g. permissions were reloaded
    validator.check({"item": plan()}, "primary")
    assert len(manager.read_calls) == 4
    # an instruction needs the lists too: RE Manager checks the group before any item
    validator.check({"item": INSTRUCTION_STOP}, "other")
    assert len(manager.read_calls) == 6


def test_an_unknown_group_is_remembered_until_the_lists_change():
    manager = FakeManager(
        {"plans_allowed_uid": "p1", "devices_allowed_uid": "d1"},
        {"plans_allowed": {"success": False, "msg": "Unknown user group: 'nobody'", "plans_allowed": {}}},
    )
    lists = AllowedLists(manager)
    assert lists.of_group("nobody").refusal == "Unknown user group: 'nobody'"
    assert lists.of_group("nobody").refusal == "Unknown user group: 'nobody'"
    assert len(manager.read_calls) == 1
    manager.status_data["plans_allowed_uid"] = "p2"
    lists.of_group("nobody")
    assert len(manager.read_calls) == 2


# -- item states ---------------------------------------------------------------------------------


def queue_reply(uid: str, *item_uids: str, running: str | None = None) -> dict:
    return {
        "success": True,
        "plan_queue_uid": uid,
        "items": [{"item_uid": u, "name": "count"} for u in item_uids],
        "running_item": {"item_uid": running, "properties": {"time_start": 100.0}} if running else {},
    }


def history_reply(uid: str, **exit_statuses: str) -> dict:
    return {
        "success": True,
        "plan_history_uid": uid,
        "items": [
            {"item_uid": u, "result": {"exit_status": s, "msg": f"{s}!", "time_start": 1.0, "time_stop": 2.0}}
            for u, s in exit_statuses.items()
        ],
    }


def test_fate_of_queued_running_finished_and_unknown_items():
    queue = QueueIndex.of(queue_reply("q", "a", "b", running="r"))
    history = HistoryIndex.of(history_reply("h", done="completed", bad="failed", odd="exploded", lost="unknown"))
    assert fate("b", queue, history) == {
        "success": True,
        "msg": "",
        "uid": "b",
        "state": "queued",
        "position": 1,
        "exit_status": None,
        "time_start": None,
        "time_stop": None,
    }
    running = fate("r", queue, history)
    assert (running["state"], running["position"], running["time_start"]) == ("running", None, 100.0)
    assert fate("done", queue, history)["state"] == "completed"
    failed = fate("bad", queue, history)
    assert (failed["state"], failed["exit_status"], failed["msg"], failed["time_stop"]) == (
        "failed",
        "failed",
        "failed!",
        2.0,
    )
    odd, lost = fate("odd", queue, history), fate("lost", queue, history)
    assert (odd["state"], odd["exit_status"]) == ("unknown", "exploded")  # passed on as it is
    assert (lost["state"], lost["exit_status"]) == ("unknown", "unknown")  # RE Manager restarted meanwhile
    nowhere = fate("x", queue, history)
    assert (nowhere["state"], nowhere["exit_status"], nowhere["msg"]) == ("unknown", None, NOT_FOUND)


def test_every_exit_status_re_manager_sets_has_its_state():
    history = HistoryIndex.of(
        history_reply("h", **{s: s for s in ("completed", "failed", "stopped", "aborted", "halted", "unknown")})
    )
    for status in ("completed", "failed", "stopped", "aborted", "halted", "unknown"):
        assert fate(status, QueueIndex(), history)["state"] == status


def test_the_indexes_are_built_once_per_uid():
    manager = FakeManager(
        {"plan_queue_uid": "q1", "plan_history_uid": "h1"},
        {"queue_get": queue_reply("q1", "a"), "history_get": history_reply("h1")},
    )
    states = ItemStates(manager)
    for n in range(100):
        states.fate(f"item-{n}")
    assert states.fate("a")["state"] == "queued"
    assert manager.read_calls == [("queue_get", {}), ("history_get", {})]

    # the item ran and completed: both uids change
    manager.replies = {"queue_get": queue_reply("q2"), "history_get": history_reply("h2", a="completed")}
    manager.status_data = {"plan_queue_uid": "q2", "plan_history_uid": "h2"}
    assert states.fate("a")["state"] == "completed"
    assert states.fate("a")["state"] == "completed"
    assert len(manager.read_calls) == 4


def test_a_failed_read_is_not_remembered():
    manager = FakeManager(
        {"plan_queue_uid": "q1", "plan_history_uid": "h1"},
        {"queue_get": {"success": False, "msg": "Error"}, "history_get": history_reply("h1")},
    )
    states = ItemStates(manager)
    assert states.fate("a")["state"] == "unknown"
    manager.replies["queue_get"] = queue_reply("q1", "a")
    assert states.fate("a")["state"] == "queued"
