"""Notifications in Redis and over HTTP, without RE Manager: the commit of the state with its
events, once and by the lease holder only; the delivery through consumer groups (real Redis, a
sender of our own instead of HTTP), with retries and takeover of a dead worker's entries; and the
HTTP sending itself against small local servers. Configuration and event derivation:
tests/test_notifications_logic.py."""

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

from qs_gateway.config.notifications import parse_notifications
from qs_gateway.config.redis import RedisSettings
from qs_gateway.notifications import derive
from qs_gateway.notifications.delivery import CLAIM_MARGIN, TargetDelivery
from qs_gateway.notifications.derive import State
from qs_gateway.notifications.sending import Answer, body_of, post, sign, slack_text
from qs_gateway.notifications.store import NotificationStore, NotLeading
from qs_gateway.redis_store import RedisStore
from qs_gateway.serving.stack import free_port

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
