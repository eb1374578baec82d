"""Notifications without RE Manager: configuration, event derivation, the Redis commit and the
delivery through consumer groups (real Redis, a sender of our own instead of HTTP), and the
HTTP sending itself against a small local server."""

from __future__ import annotations

import dataclasses
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from qs_gateway.config import ConfigError, load_settings
from qs_gateway.config.redis import RedisSettings
from qs_gateway.notifications import derive
from qs_gateway.notifications.delivery import CLAIM_MARGIN, TargetDelivery
from qs_gateway.notifications.derive import State
from qs_gateway.notifications.sending import Answer, body_of, post, sign, slack_text
from qs_gateway.notifications.settings import EVENT_TYPES, parse_notifications
from qs_gateway.notifications.store import NotificationStore, NotLeading
from qs_gateway.redis_store import RedisStore
from qs_gateway.serving.stack import free_port

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


# -- the commit: state and events together, once, by the lease holder --------------------------


@pytest.fixture
def store(redis_port: int, request: pytest.FixtureRequest) -> Iterator[NotificationStore]:
    prefix = f"qs_gateway_notify_unit_{request.node.name}"[:100]
    client = redis.Redis(port=redis_port)
    client.delete(*(client.keys(f"{prefix}:*") or [b"none"]))
    redis_store = RedisStore(RedisSettings(url=f"redis://127.0.0.1:{redis_port}/0"), prefix)
    client.set(f"{prefix}:ingest:leader", "leader-1")
    yield NotificationStore(redis_store, f"{prefix}:ingest:leader")
    redis_store.close()
    client.close()


def event(uid: str, kind: str = "item_finished") -> derive.Event:
    return derive.Event(f"{kind}:{uid}", kind, 1.0, {"item": {"item_uid": uid}})


def test_commit_adds_each_event_once_and_only_for_the_lease_holder(store):
    state = State(cursor="1-0", seen_ms=1)
    version = store.commit("", "leader-1", state, [event("A"), event("B")])
    assert store.load_state() == (version, state)
    version = store.commit(version, "leader-1", dataclasses.replace(state, cursor="2-0"), [event("B"), event("C")])
    ids = [fields[b"id"] for _, fields in store.store.run(lambda r: r.xrange(store.keys.events))]
    assert ids == [b"item_finished:A", b"item_finished:B", b"item_finished:C"]
    with pytest.raises(NotLeading, match="lease"):
        store.commit(version, "leader-2", state, [event("D")])
    with pytest.raises(NotLeading, match="state moved on"):
        store.commit("1", "leader-1", state, [event("D")])
    assert store.load_state()[1].cursor == "2-0"
    assert len(store.store.run(lambda r: r.xrange(store.keys.events))) == 3


# -- delivery through a consumer group ---------------------------------------------------------


class Receiver:
    """A sender of our own: answers from a script, records what it was given."""

    def __init__(self, *answers: int) -> None:
        self.answers = list(answers)
        self.received: list[tuple[str, int]] = []

    def __call__(self, target, event, attempt) -> Answer:
        self.received.append((event["id"], attempt))
        return Answer(self.answers.pop(0) if self.answers else 200, "ok")


def delivery(store, receiver, consumer="worker-1", **target) -> TargetDelivery:
    (configured,) = parse_notifications([{"url": "http://127.0.0.1:9/hook", **target}])
    made = TargetDelivery(configured, store, consumer, threading.Event(), lambda: True, send=receiver)
    made.ensure_group()
    return made


def drain(target: TargetDelivery) -> None:
    while target.handle_one():
        pass


def test_retries_then_delivered_and_logged(store, monkeypatch):
    monkeypatch.setattr("qs_gateway.notifications.delivery.FIRST_BACKOFF", 0.01)
    receiver = Receiver(500, 503, 200)
    target = delivery(store, receiver)
    store.commit("", "leader-1", State(cursor="1-0", seen_ms=1), [event("A")])
    drain(target)
    assert receiver.received == [("item_finished:A", 1), ("item_finished:A", 2), ("item_finished:A", 3)]
    log = store.read_log(10)
    assert [(e["outcome"], e["status"], e["attempt"]) for e in log] == [
        ("delivered", 200, 3),
        ("retrying", 503, 2),
        ("retrying", 500, 1),
    ]
    assert log[0]["url"] == "http://127.0.0.1:9/hook" and log[0]["answer"] == "ok"
    assert store.store.run(lambda r: r.xpending(store.keys.events, target.group))["pending"] == 0


def test_no_retry_for_a_refusal_and_a_failure_after_the_retries(store, monkeypatch):
    monkeypatch.setattr("qs_gateway.notifications.delivery.FIRST_BACKOFF", 0.01)
    receiver = Receiver(401, 500, 500)
    target = delivery(store, receiver, retries=1)
    store.commit("", "leader-1", State(cursor="1-0", seen_ms=1), [event("A"), event("B")])
    drain(target)
    assert receiver.received == [("item_finished:A", 1), ("item_finished:B", 1), ("item_finished:B", 2)]
    assert [e["outcome"] for e in store.read_log(10)] == ["failed", "retrying", "failed"]


def test_only_the_subscribed_events_and_each_target_on_its_own(store):
    finished, everything = Receiver(), Receiver(500, 200)
    only_finished = delivery(store, finished, events=["item_finished"])
    all_events = delivery(store, everything, name="all", retries=0)
    store.commit("", "leader-1", State(cursor="1-0", seen_ms=1), [event("A", "item_started"), event("A")])
    drain(only_finished)
    drain(all_events)
    assert finished.received == [("item_finished:A", 1)]
    assert everything.received == [("item_started:A", 1), ("item_finished:A", 1)]  # no retries configured


def test_a_dead_workers_pending_entry_is_taken_over_first(store):
    dead = delivery(store, Receiver())
    store.commit("", "leader-1", State(cursor="1-0", seen_ms=1), [event("A"), event("B")])
    taken, _ = dead.next_entry()  # read by the first worker, which then dies
    survivor = delivery(store, survivor_receiver := Receiver(), consumer="worker-2")
    survivor.claim_idle_ms = 60_000
    assert survivor.handle_one() is False  # not idle long enough yet: nothing newer goes first
    assert survivor_receiver.received == []
    survivor.claim_idle_ms = 0
    drain(survivor)
    assert survivor_receiver.received == [("item_finished:A", 1), ("item_finished:B", 1)]
    assert dead._touch(taken) is False  # the first worker, were it alive, no longer owns it


# -- sending over HTTP ---------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, Any, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Handler.seen.append((self.path, self.headers, body))  # case-insensitive
        if self.path == "/redirect":
            self.send_response(307)
            self.send_header("Location", "/elsewhere")
        else:
            self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def local_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_post_signs_the_body_and_follows_no_redirect(local_server):
    _Handler.seen.clear()
    (target,) = parse_notifications([{"url": f"{local_server}/hook", "secret": "s3cret"}])
    answer = post(target, event("A").as_dict(), 2)
    assert answer.delivered and answer.text == "ok"
    path, headers, body = _Handler.seen[-1]
    assert headers["X-QS-Gateway-Signature"] == sign("s3cret", body)
    sent = json.loads(body)
    assert sent["id"] == "item_finished:A" and sent["attempt"] == 2 and isinstance(sent["timestamp"], float)
    assert headers["X-QS-Gateway-Event-Id"] == "item_finished:A"

    (redirecting,) = parse_notifications([{"url": f"{local_server}/redirect"}])
    answer = post(redirecting, event("A").as_dict(), 1)
    assert answer.status == 307 and not answer.delivered and not answer.worth_retrying
    assert [p for p, _, _ in _Handler.seen] == ["/hook", "/redirect"]  # /elsewhere never called


def test_no_answer_is_worth_retrying():
    (target,) = parse_notifications([{"url": f"http://127.0.0.1:{free_port()}/hook", "timeout": 1}])
    answer = post(target, event("A").as_dict(), 1)
    assert answer.status is None and answer.worth_retrying and "Connection" in answer.error


def test_slack_format_is_a_text_message():
    (target,) = parse_notifications([{"url": "http://h/x", "format": "slack"}])
    finished = {
        "id": "item_finished:A",
        "type": "item_finished",
        "time": 0,
        "data": {"item": {"name": "count", "item_uid": "0123456789"}, "exit_status": "failed", "msg": "boom"},
    }
    assert json.loads(body_of(target, finished, 1, 0.0)) == {
        "text": "[qs-gateway] Finished count (item 01234567): failed (boom) at 1970-01-01 00:00:00 UTC"
    }
    stopped = {"type": "queue_stopped", "data": {"reason": "stop_requested"}}
    assert "Queue stopped: stop requested" in slack_text(stopped)


@pytest.fixture
def trickling_receiver() -> Iterator[str]:
    """Takes the request, then answers one byte every 0.2 s (about 8 s for the whole answer)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
                if stop.wait(0.2):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return  # the gateway gave up

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    stop.set()
    listener.close()
    thread.join(10)


def test_a_trickling_receiver_cannot_hold_a_delivery_past_its_deadline(trickling_receiver):
    (target,) = parse_notifications([{"url": trickling_receiver, "timeout": 1}])
    started = time.monotonic()
    answer = post(target, event("A").as_dict(), 1)
    elapsed = time.monotonic() - started
    assert answer.status is None and answer.worth_retrying and "within 1.0 s" in answer.error
    # one deadline for the whole delivery, well within the time after which another leader
    # would take the entry over (each read alone never waits longer than 0.2 s here)
    assert elapsed < target.timeout + CLAIM_MARGIN / 2, elapsed
