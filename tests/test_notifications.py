"""Notifications end to end: real RE Manager, Redis and gunicorn with three workers, and a
receiver HTTP server of the test's own with three paths:

* ``/good`` checks the signature (the gateway has the right secret) and answers 200;
* ``/flaky`` answers 500 to the first delivery of each event and 200 to the next;
* ``/checked`` checks the signature too, but the gateway was given a wrong secret: 401.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import redis

from qs_gateway.config.notifications import parse_notifications
from qs_gateway.serving.stack import start_gateway, start_re_manager, stopped_on_failure

from .conftest import make_app
from .support import API_KEY, keyed_client, plan, reset_manager, wait_for

HEADERS = {"Authorization": f"ApiKey {API_KEY}"}
SECRET = "receiver-secret"
LEASE_SECONDS = 1.0
FAILING_PLAN = {"item_type": "plan", "name": "move_then_count", "args": [["motor1"], ["det1"], [1.0, 2.0]]}
LOG_SCOPE_ROLE = """
api_access:
  args:
    roles:
      unauthenticated_single_user:
        scopes_add: [admin:notifications]
"""


@dataclass
class Delivery:
    path: str
    event: dict
    signature_ok: bool
    answered: int


@dataclass
class Receiver:
    """What the test's receiver server was sent, in the order it came."""

    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def accepted(self, path: str, since: int = 0) -> list[dict]:
        with self.lock:
            return [d.event for d in self.deliveries[since:] if d.path == path and d.answered == 200]

    def at(self, path: str, since: int = 0) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries[since:] if d.path == path]

    def mark(self) -> int:
        with self.lock:
            return len(self.deliveries)


def serve_receiver(receiver: Receiver) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            # the check a receiver makes: HMAC-SHA256 of the raw body with the shared secret
            expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            signature_ok = hmac.compare_digest(expected, self.headers.get("X-QS-Gateway-Signature", ""))
            event = json.loads(body)
            with receiver.lock:
                seen_before = any(d.event["id"] == event["id"] for d in receiver.at(self.path))
                if self.path == "/flaky":
                    status = 200 if seen_before and signature_ok else 500
                else:
                    status = 200 if signature_ok else 401
                receiver.deliveries.append(Delivery(self.path, event, signature_ok, status))
            answer = b"thanks" if status == 200 else b"bad signature" if status == 401 else b"try later"
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass
class Gateway:
    url: str
    store: redis.Redis
    prefix: str
    receiver: Receiver
    targets: list[dict]

    @property
    def events(self) -> str:
        return f"{self.prefix}:notify:events"

    def leader(self) -> str | None:
        identity = self.store.get(f"{self.prefix}:ingest:leader")
        return identity.decode() if identity else None

    def leader_pid(self) -> int:
        return int(self.leader().split(":")[1])

    def pending(self) -> dict[str, list[tuple[str, str]]]:
        """Per target name: the events read but not yet acknowledged, with their consumer."""
        found = {}
        for target in parse_notifications(self.targets):
            entries = self.store.xpending_range(self.events, f"target:{target.key}", "-", "+", 100)
            ids = [self.store.xrange(self.events, e["message_id"], e["message_id"])[0] for e in entries]
            found[target.name] = [
                (json.loads(fields[b"event"])["id"], entry["consumer"].decode())
                for entry, (_, fields) in zip(entries, ids, strict=True)
            ]
        return found

    def settled(self) -> bool:
        """Every published status taken into account, every event delivered or given up."""
        last = self.store.xrevrange(f"{self.prefix}:info:stream", count=1)
        state = self.store.hget(f"{self.prefix}:notify:state", "state")
        if not last or state is None or json.loads(state)["cursor"] != last[0][0].decode():
            return False
        groups = self.store.xinfo_groups(self.events)
        return len(groups) == 3 and all(g["pending"] == 0 and g["lag"] == 0 for g in groups)

    def settle(self) -> int:
        wait_for(self.settled, 30, "notifications to settle")
        return self.receiver.mark()

    def post(self, path: str, body: dict | None = None) -> dict:
        reply = httpx.post(f"{self.url}{path}", json=body or {}, headers=HEADERS, timeout=10).json()
        assert reply.get("success") is True, reply
        return reply


@pytest.fixture(scope="module")
def gateway(stack_dir, re_manager, tmp_path_factory) -> Iterator[Gateway]:
    receiver = Receiver()
    server = serve_receiver(receiver)
    base = f"http://127.0.0.1:{server.server_port}"
    targets = [
        {"url": f"{base}/good", "secret": SECRET, "name": "good"},
        {"url": f"{base}/flaky", "secret": SECRET, "name": "flaky", "timeout": 1},  # taken over after 6 s
        {"url": f"{base}/checked", "secret": "not-the-secret", "events": ["queue_started", "queue_stopped"]},
    ]
    config = tmp_path_factory.mktemp("notify") / "config.yml"
    config.write_text(LOG_SCOPE_ROLE)
    prefix = f"qs_gateway_notify_{re_manager.ports.control}"
    env = re_manager.gateway_env(
        QS_GATEWAY_WORKERS="3",
        QS_GATEWAY_THREADS="4",
        QS_GATEWAY_REDIS_PREFIX=prefix,
        QS_GATEWAY_INGEST_LEASE_SECONDS=str(LEASE_SECONDS),
        QS_GATEWAY_NOTIFICATIONS=json.dumps(targets),
        QSERVER_HTTP_SERVER_CONFIG=str(config),
    )
    try:
        process, url = start_gateway(stack_dir, env, log_name="gateway-notify.log")
        with stopped_on_failure(process):
            store = redis.Redis(port=re_manager.redis_port)
            wait_for(lambda: store.hget(f"{prefix}:notify:state", "state") is not None, 60, "the first derivation")
        yield Gateway(url, store, prefix, receiver, targets)
        process.stop()
    finally:
        server.shutdown()
        server.server_close()


def types_and_items(events: list[dict]) -> list[str]:
    return [f"{e['type']}:{(e['data'].get('item') or {}).get('name', e['data'].get('reason', ''))}" for e in events]


@pytest.fixture(scope="module")
def two_plans_one_failing(gateway, zmq_rm) -> tuple[int, list[dict]]:
    """Run [count, a plan that fails] once; (receiver mark before, RE Manager's history)."""
    reset_manager(zmq_rm, environment=True)
    mark = gateway.settle()
    gateway.post("/api/queue/item/add/batch", {"items": [plan(num=2), FAILING_PLAN]})
    gateway.post("/api/queue/start")
    wait_for(lambda: "queue_stopped:failure" in types_and_items(gateway.receiver.accepted("/good", mark)), 60, "stop")
    gateway.settle()
    return mark, zmq_rm.request("history_get")["items"]


EXPECTED_TWO_PLANS = [
    "queue_started:",
    "item_started:count",
    "item_finished:count",
    "item_started:move_then_count",
    "item_finished:move_then_count",
    "queue_stopped:failure",
]


def test_two_plans_one_failing_arrive_once_in_order(gateway, two_plans_one_failing):
    mark, history = two_plans_one_failing
    received = gateway.receiver.at("/good", mark)
    events = [d.event for d in received]
    assert types_and_items(events) == EXPECTED_TWO_PLANS
    assert all(d.signature_ok and d.answered == 200 for d in received)
    assert len({e["id"] for e in events}) == len(events)
    finished = [e for e in events if e["type"] == "item_finished"]
    assert [e["id"] for e in finished] == [f"item_finished:{item['item_uid']}" for item in history]
    assert [e["data"]["exit_status"] for e in finished] == ["completed", "failed"]
    assert "same number of elements" in finished[1]["data"]["msg"]
    assert events[-1]["data"]["status"]["items_in_queue"] == 1  # the failed plan went back to the queue
    assert all(isinstance(e["timestamp"], float) and e["attempt"] == 1 for e in events)


def test_a_receiver_answering_500_gets_each_event_on_a_retry(gateway, two_plans_one_failing):
    mark, _ = two_plans_one_failing
    deliveries = gateway.receiver.at("/flaky", mark)
    accepted = [d.event for d in deliveries if d.answered == 200]
    assert types_and_items(accepted) == EXPECTED_TWO_PLANS
    assert [d.answered for d in deliveries] == [500, 200] * len(EXPECTED_TWO_PLANS)
    assert [d.event["attempt"] for d in deliveries] == [1, 2] * len(EXPECTED_TWO_PLANS)
    assert [d.event["id"] for d in deliveries[::2]] == [e["id"] for e in accepted]


def test_a_wrong_secret_fails_the_receivers_signature_check(gateway, two_plans_one_failing):
    mark, _ = two_plans_one_failing
    deliveries = gateway.receiver.at("/checked", mark)
    assert [d.event["type"] for d in deliveries] == ["queue_started", "queue_stopped"]  # its events only
    assert not any(d.signature_ok for d in deliveries) and {d.answered for d in deliveries} == {401}
    # ... which the delivery log shows: failed at once (a refusal is not retried), with the answer
    log = httpx.get(f"{gateway.url}/api/notifications/log", params={"limit": 1000}, headers=HEADERS).json()
    sent = {d.event["id"] for d in deliveries}
    checked = [e for e in log["entries"] if e["target"] == "127.0.0.1" and e["event_id"] in sent]
    assert [(e["outcome"], e["status"], e["attempt"], e["answer"]) for e in checked] == [
        ("failed", 401, 1, "bad signature")
    ] * 2
    assert checked[0]["url"].endswith("/checked")


def test_the_delivery_log_says_what_was_sent_and_the_answers(gateway, two_plans_one_failing):
    mark, _ = two_plans_one_failing
    first_finished = next(e for e in gateway.receiver.accepted("/good", mark) if e["type"] == "item_finished")
    log = httpx.request("GET", f"{gateway.url}/api/notifications/log", json={"limit": 1000}, headers=HEADERS)
    log = log.json()["entries"]
    about = [e for e in log if e["event_id"] == first_finished["id"]]
    outcomes = {(e["target"], e["attempt"], e["outcome"], e["status"]) for e in about}
    assert outcomes == {("good", 1, "delivered", 200), ("flaky", 1, "retrying", 500), ("flaky", 2, "delivered", 200)}
    assert all(e["event_type"] == "item_finished" and e["time"] > 0 for e in about)
    flaky = [e["attempt"] for e in about if e["target"] == "flaky"]
    assert flaky == [2, 1]  # newest first
    limited = httpx.get(f"{gateway.url}/api/notifications/log?limit=2", headers=HEADERS).json()["entries"]
    assert limited == log[:2]
    too_many = httpx.request("GET", f"{gateway.url}/api/notifications/log", json={"limit": 5000}, headers=HEADERS)
    assert too_many.status_code == 400 and "limit" in too_many.json()["errors"]


def test_sigkill_of_the_leader_between_two_items(gateway, zmq_rm, two_plans_one_failing):
    """The leader dies after the second item started: /good has all so far, /flaky has just been
    answered 500 for the second item_started, which the next leader must take over."""
    reset_manager(zmq_rm, environment=True)
    mark = gateway.settle()
    gateway.post("/api/queue/item/add/batch", {"items": [plan(num=1), plan(num=6, delay=0.5)]})
    gateway.post("/api/queue/start")
    killed = {}

    def flaky_retrying_second_start() -> bool:
        started = [e["id"] for e in gateway.receiver.accepted("/good", mark) if e["type"] == "item_started"]
        if len(started) < 2 or not any(d.event["id"] == started[1] for d in gateway.receiver.at("/flaky", mark)):
            return False
        pending = gateway.pending()
        if pending["good"] or pending["flaky"] != [(started[1], gateway.leader())]:
            return False
        killed.update(identity=gateway.leader(), event_id=started[1])
        os.kill(gateway.leader_pid(), signal.SIGKILL)  # while /flaky's retry waits
        return True

    wait_for(flaky_retrying_second_start, 30, "the second item to start and /flaky to wait for a retry")
    wait_for(lambda: gateway.leader() not in (None, killed["identity"]), 10, "a new leader")

    def told_of_the_stop() -> bool:
        return all(
            "queue_stopped:empty" in types_and_items(gateway.receiver.accepted(path, mark))
            for path in ("/good", "/flaky")
        )

    wait_for(told_of_the_stop, 60, "both receivers to be told that the queue stopped")
    gateway.settle()
    expected = ["queue_started:"] + ["item_started:count", "item_finished:count"] * 2 + ["queue_stopped:empty"]
    for path in ("/good", "/flaky"):
        accepted = gateway.receiver.accepted(path, mark)
        assert types_and_items(accepted) == expected, path
        assert len({e["id"] for e in accepted}) == len(expected), path
    log = httpx.get(f"{gateway.url}/api/notifications/log?limit=1000", headers=HEADERS).json()["entries"]
    delivered = [e for e in log if e["event_id"] == killed["event_id"] and e["outcome"] == "delivered"]
    assert {e["target"] for e in delivered} == {"good", "flaky"} and len(delivered) == 2
    assert [e["worker"] for e in delivered if e["target"] == "flaky"] != [killed["identity"]]  # taken over


def test_the_log_needs_the_admin_notifications_scope(re_manager):
    app = make_app(re_manager)
    try:
        client = keyed_client(app)
        refused = client.get("/api/notifications/log")
        assert refused.status_code == 401
        assert "Requires scopes ['admin:notifications']" in refused.get_json()["detail"]
        documented = client.get("/openapi.json").get_json()["paths"]["/api/notifications/log"]["get"]
        assert documented["x-scope"] == "admin:notifications"
        assert {p["name"] for p in documented["parameters"] if p["in"] == "query"} == {"limit"}
    finally:
        from qs_gateway.extensions import EXTENSION_KEY

        app.extensions[EXTENSION_KEY].close()


def test_manager_unreachable_then_back(stack_dir, redis_port, tmp_path):
    """RE Manager of this test's own, stopped and started again on the same ports."""
    receiver = Receiver()
    server = serve_receiver(receiver)
    target = {"url": f"http://127.0.0.1:{server.server_port}/good", "secret": SECRET}
    manager, ports = start_re_manager(tmp_path, redis_port=redis_port, name_prefix="qs_gateway_notify_silence")
    env = {
        "QSERVER_ZMQ_CONTROL_ADDRESS": ports.control_address,
        "QSERVER_ZMQ_INFO_ADDRESS": ports.info_address,
        "QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY": API_KEY,
        "QS_GATEWAY_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "QS_GATEWAY_REDIS_PREFIX": f"qs_gateway_notify_silence_{ports.control}",
        "QS_GATEWAY_WORKERS": "2",
        "QS_GATEWAY_MANAGER_SILENCE_SECONDS": "2",
        "QS_GATEWAY_NOTIFICATIONS": json.dumps([target]),
    }
    gateway, _ = start_gateway(stack_dir, env, log_name="gateway-notify-silence.log")
    store = redis.Redis(port=redis_port)
    try:
        state_key = f"{env['QS_GATEWAY_REDIS_PREFIX']}:notify:state"
        wait_for(lambda: store.hget(state_key, "state") is not None, 30, "the first derivation")
        manager.stop()
        wait_for(lambda: receiver.accepted("/good"), 30, "manager_unreachable")
        manager, _ = start_re_manager(
            tmp_path, redis_port=redis_port, ports=ports, name_prefix="qs_gateway_notify_silence"
        )
        wait_for(lambda: len(receiver.accepted("/good")) == 2, 30, "manager_back")
        events = receiver.accepted("/good")
        assert [e["type"] for e in events] == ["manager_unreachable", "manager_back"]
        assert events[0]["data"]["silent_seconds"] >= 2
        assert all(d.signature_ok for d in receiver.at("/good"))
        assert len(receiver.at("/good")) == 2  # each once
    finally:
        gateway.stop()
        manager.stop()
        server.shutdown()
        server.server_close()
        store.close()
