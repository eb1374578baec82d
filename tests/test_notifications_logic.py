"""Notifications without RE Manager, Redis or HTTP: the configuration of targets, and the events
derived from RE Manager's statuses and history (a fake plays RE Manager). The commit, the delivery
and the sending: tests/test_notifications_delivery.py."""

from __future__ import annotations

import json

import pytest

from qs_gateway.config import ConfigError, load_settings
from qs_gateway.config.notifications import EVENT_TYPES, parse_notifications
from qs_gateway.notifications import derive
from qs_gateway.notifications.derive import State

# -- configuration -----------------------------------------------------------------------------


def test_a_target_with_defaults():
    (target,) = parse_notifications([{"url": "https://hooks.example.org/qs"}])
    assert target.events == frozenset(EVENT_TYPES) and target.format == "json" and target.secret is None
    assert (target.timeout, target.retries, target.name) == (5.0, 3, "hooks.example.org")


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"url": "ftp://example.org/x"}, r"notifications\[0\]\.url: expected an http:// or https:// URL"),
        ({"events": ["item_finished"]}, r"notifications\[0\]\.url: required"),
        ({"url": "http://h/x", "events": ["item_done"]}, r"notifications\[0\]\.events: unknown event type"),
        ({"url": "http://h/x", "events": []}, r"notifications\[0\]\.events: expected a non-empty list"),
        ({"url": "http://h/x", "format": "xml"}, r"notifications\[0\]\.format: expected one of json, slack"),
        ({"url": "http://h/x", "timeout": 0}, r"notifications\[0\]\.timeout: must be between"),
        ({"url": "http://h/x", "retries": 1.5}, r"notifications\[0\]\.retries: expected an integer"),
        ({"url": "http://h/x", "secret": ""}, r"notifications\[0\]\.secret: expected a non-empty string"),
        ({"url": "http://h/x", "method": "PUT"}, r"notifications\[0\]: unknown key\(s\) \['method'\]"),
    ],
)
def test_bad_targets_are_refused_naming_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_notifications([raw])


def test_the_same_target_twice_needs_a_name():
    with pytest.raises(ConfigError, match=r"notifications\[1\]: the same url"):
        parse_notifications([{"url": "http://h/x"}, {"url": "http://h/x"}])
    assert len(parse_notifications([{"url": "http://h/x"}, {"url": "http://h/x", "name": "second"}])) == 2


def test_yaml_section_with_a_secret_from_the_environment_and_the_variable(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text(
        "notifications:\n"
        "  - url: http://127.0.0.1:9/hook\n"
        "    events: [item_finished, queue_stopped]\n"
        "    secret: ${HOOK_SECRET}\n"
        "    format: slack\n"
    )
    settings = load_settings(environ={"QSERVER_HTTP_SERVER_CONFIG": str(config), "HOOK_SECRET": "s3cret"})
    (target,) = settings.notifications.targets
    assert target.secret == "s3cret" and target.format == "slack"
    assert "s3cret" not in repr(target)
    from_env = load_settings(environ={"QS_GATEWAY_NOTIFICATIONS": json.dumps([{"url": "http://127.0.0.1:9/h"}])})
    assert from_env.notifications.targets[0].url == "http://127.0.0.1:9/h"
    with pytest.raises(ConfigError, match="QS_GATEWAY_NOTIFICATIONS: not valid JSON"):
        load_settings(environ={"QS_GATEWAY_NOTIFICATIONS": "[{"})
    config.write_text("notifications:\n  url: http://127.0.0.1:9/hook\n")
    with pytest.raises(ConfigError, match="notifications: expected a list of targets"):
        load_settings(environ={"QSERVER_HTTP_SERVER_CONFIG": str(config)})


# -- derivation --------------------------------------------------------------------------------


class Manager:
    """RE Manager as the derivation sees it: statuses (numbered stream ids) and a history."""

    def __init__(self) -> None:
        self.history: list[dict] = []
        self.history_uid = "h0"
        self.tick = 1_000
        self.status = {
            "manager_state": "idle",
            "re_state": "idle",
            "running_item_uid": None,
            "items_in_queue": 0,
            "items_in_history": 0,
            "worker_environment_exists": True,
            "queue_stop_pending": False,
            "plan_history_uid": "h0",
        }

    def publish(self, lagging: bool = False, **changes) -> tuple[str, dict]:
        # lagging: RE Manager changed the history's uid but not yet its count
        self.status = {**self.status, **changes, "items_in_history": len(self.history) - lagging}
        self.status["plan_history_uid"] = self.history_uid
        self.tick += 1_000
        return f"{self.tick}-0", dict(self.status)

    def finish(self, uid: str, exit_status: str = "completed", msg: str = "") -> None:
        item = {"item_uid": uid, "name": f"plan-{uid}", "item_type": "plan"}
        self.history.append({**item, "result": {"exit_status": exit_status, "msg": msg, "time_stop": self.tick}})
        self.history_uid = f"h-{uid}-{len(self.history)}"


def follow(state: State | None, manager: Manager, entry: tuple[str, dict]):
    """One step as the notifier takes it: fetch what the step needs (now), derive."""
    entry_id, status = entry
    history, history_uid = list(manager.history), manager.history_uid
    if state is None:
        return derive.initial(entry_id, status, history, history_uid), []
    if not derive.needs_history(state, status):
        history, history_uid = None, None
    running = None
    if derive.needs_running_item(state, status):
        running = {"item_uid": status["running_item_uid"], "name": f"plan-{status['running_item_uid']}"}
    return derive.step(state, entry_id, status, history, history_uid, running)


def run(manager: Manager, script) -> tuple[State, list[derive.Event]]:
    state, events = follow(None, manager, manager.publish())
    for change in script:
        change(manager)
        state, produced = follow(state, manager, manager.publish(**getattr(change, "status", {})))
        events += produced
    return state, events


def publish(**status):
    def change(manager: Manager) -> None:
        pass

    change.status = status
    return change


def finish(uid: str, exit_status: str = "completed", **status):
    def change(manager: Manager) -> None:
        manager.finish(uid, exit_status, msg="boom" if exit_status == "failed" else "")

    change.status = status
    return change


def kinds(events) -> list[str]:
    return [f"{e.type}:{e.data.get('item', {}).get('item_uid', e.data.get('reason', ''))}" for e in events]


TWO_PLANS_ONE_FAILING = [
    publish(manager_state="starting_queue", items_in_queue=2),
    publish(manager_state="executing_queue", running_item_uid="A", items_in_queue=1),
    finish("A", manager_state="executing_queue", running_item_uid=None, items_in_queue=1),
    publish(manager_state="executing_queue", running_item_uid="B", items_in_queue=0),
    finish("B", "failed", manager_state="executing_queue", running_item_uid=None, items_in_queue=1),
    publish(manager_state="idle", items_in_queue=1),
    publish(),  # the same status published again
]
EXPECTED = [
    "queue_started:",
    "item_started:A",
    "item_finished:A",
    "item_started:B",
    "item_finished:B",
    "queue_stopped:failure",
]


def test_two_plans_one_failing():
    _, events = run(Manager(), TWO_PLANS_ONE_FAILING)
    assert kinds(events) == EXPECTED
    finished = [e for e in events if e.type == "item_finished"]
    assert [e.data["exit_status"] for e in finished] == ["completed", "failed"]
    assert finished[1].data["msg"] == "boom" and finished[1].data["item"]["result"]["exit_status"] == "failed"
    assert events[1].data["item"]["name"] == "plan-A"  # the running item, fetched when seen
    assert [e.id for e in events][1:5] == ["item_started:A", "item_finished:A", "item_started:B", "item_finished:B"]
    assert len({e.id for e in events}) == len(events)


def test_resuming_from_the_stored_state_gives_the_same_events():
    manager, whole = Manager(), Manager()
    _, expected = run(whole, TWO_PLANS_ONE_FAILING)
    state, events = follow(None, manager, manager.publish())
    for index, change in enumerate(TWO_PLANS_ONE_FAILING):
        change(manager)
        if index % 2:  # another leader, reading the stored state
            state = State.from_json(state.to_json())
        state, produced = follow(state, manager, manager.publish(**change.status))
        events += produced
    assert [e.as_dict() for e in events] == [e.as_dict() for e in expected]


def test_an_item_that_started_and_finished_unseen_gets_both_events():
    # the status in which B ran was lost (a takeover): B is found in the history
    script = TWO_PLANS_ONE_FAILING[:3] + TWO_PLANS_ONE_FAILING[4:]
    _, events = run(Manager(), script)
    assert kinds(events) == EXPECTED


def test_a_queue_that_ran_unseen_gets_started_and_stopped_around_its_items():
    manager = Manager()
    state, _ = follow(None, manager, manager.publish())
    manager.finish("A")
    manager.finish("B")
    state, events = follow(state, manager, manager.publish())
    assert kinds(events) == ["queue_started:", "item_started:A", "item_finished:A"] + [
        "item_started:B",
        "item_finished:B",
        "queue_stopped:empty",
    ]


def test_history_fetched_after_a_later_item_finished_is_counted_by_the_status():
    manager = Manager()
    state, _ = follow(None, manager, manager.publish())
    state, _ = follow(state, manager, manager.publish(manager_state="executing_queue", running_item_uid="A"))
    manager.finish("A")
    entry = manager.publish(manager_state="executing_queue", running_item_uid="B")
    manager.finish("B")  # before the history is fetched for the status above
    state, events = follow(state, manager, entry)
    assert kinds(events) == ["item_finished:A", "item_started:B"]
    state, events = follow(state, manager, manager.publish(manager_state="idle", running_item_uid=None))
    assert kinds(events) == ["item_finished:B", "queue_stopped:empty"]


RUNNING_A = publish(manager_state="executing_queue", running_item_uid="A", items_in_queue=3)
IDLE = {"manager_state": "idle", "running_item_uid": None}


def test_a_status_whose_count_lags_its_history_uid():
    manager = Manager()
    state, _ = follow(None, manager, manager.publish())
    state, _ = follow(state, manager, manager.publish(manager_state="executing_queue", running_item_uid="A"))
    manager.finish("A", "failed")
    state, events = follow(state, manager, manager.publish(lagging=True, running_item_uid=None))
    assert kinds(events) == ["item_finished:A"]
    state, events = follow(state, manager, manager.publish(manager_state="idle"))
    assert kinds(events) == ["queue_stopped:failure"]


@pytest.mark.parametrize(
    "script, reason",
    [
        ([publish(queue_stop_pending=True), finish("A", **IDLE, items_in_queue=2)], "stop_requested"),
        ([publish(manager_state="paused"), finish("A", "stopped", **IDLE)], "stop_requested"),
        ([finish("A", **IDLE, items_in_queue=0)], "empty"),
        ([finish("A", **IDLE, items_in_queue=3)], "stop_requested"),  # a queue_stop instruction
        ([finish("A", "failed", **IDLE, items_in_queue=3)], "failure"),
    ],
)
def test_why_the_queue_stopped(script, reason):
    _, events = run(Manager(), [RUNNING_A, *script])
    assert events[-1].type == "queue_stopped" and events[-1].data["reason"] == reason


def test_pause_is_sent_once_per_pause():
    script = [
        publish(manager_state="executing_queue", running_item_uid="A"),
        publish(manager_state="paused"),
        publish(manager_state="paused"),
        publish(manager_state="executing_queue"),
        publish(manager_state="paused"),
    ]
    _, events = run(Manager(), script)
    pauses = [e for e in events if e.type == "re_paused"]
    assert len(pauses) == 2 and pauses[0].id != pauses[1].id and pauses[0].data["item_uid"] == "A"


def test_environment_closed_or_destroyed():
    _, closed = run(Manager(), [publish(manager_state="closing_environment"), publish(worker_environment_exists=False)])
    assert [e.type for e in closed] == ["environment_closed"]
    destroy = [
        publish(manager_state="destroying_environment"),
        publish(manager_state="idle", worker_environment_exists=False),
        publish(worker_environment_exists=True),
        publish(worker_environment_exists=False),
    ]
    _, events = run(Manager(), destroy)
    assert [e.type for e in events] == ["environment_destroyed", "environment_closed"]


def test_silence_then_back():
    manager = Manager()
    state, _ = follow(None, manager, manager.publish())  # published at 2000 ms
    assert derive.silence(state, 11_999, 0, 10_000) == (state, [])
    # a worker that began listening late counts from then: a takeover is not a silence
    assert derive.silence(state, 12_500, 5_000, 10_000)[1] == []
    silent, events = derive.silence(state, 12_000, 0, 10_000)
    assert [e.id for e in events] == ["manager_unreachable:2000-0"] and events[0].data["silent_seconds"] == 10.0
    assert derive.silence(silent, 50_000, 0, 10_000)[1] == []  # once
    back, events = follow(silent, manager, manager.publish())
    assert [e.id for e in events] == ["manager_back:3000-0"] and back.reachable
