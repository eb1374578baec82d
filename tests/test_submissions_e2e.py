"""Exactly once under gunicorn (two workers, fresh connections, the real RE Manager and Redis):
decisions on one submission raced from two workers, and a retried add under the same
Idempotency-Key after the client's connection was cut while RE Manager held the add."""

from __future__ import annotations

import signal
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from .agents_support import agents_config, key_of
from .auth_support import start_auth_gateway
from .support import PLAN_COUNT, plan, wait_for

ROUNDS = 12


@pytest.fixture(scope="module")
def two_workers(stack_dir, re_manager) -> Iterator[tuple[str, str]]:
    """A gateway of two workers in front of the session's RE Manager; (url, Redis prefix)."""
    prefix = f"qs_gateway_agents_{uuid.uuid4().hex[:10]}"
    process, url = start_auth_gateway(
        stack_dir,
        re_manager,
        "agents",
        agents_config(),
        QS_GATEWAY_WORKERS="2",
        QS_GATEWAY_REDIS_PREFIX=prefix,
        QS_GATEWAY_TIMEOUT_RECEIVE="60",  # an add held by a frozen RE Manager is still waited for
    )
    yield url, prefix
    process.stop()


def fresh_client(url: str, **kwargs) -> httpx.Client:  # noqa: ANN003
    # a new connection per request: the kernel hands each to whichever worker accepts first
    return httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_keepalive_connections=0), **kwargs)


def race(*requests) -> list[httpx.Response]:  # noqa: ANN002
    """Send the requests (callables) at the same moment, each on its own thread and connection."""
    start = threading.Barrier(len(requests))

    def send(request) -> httpx.Response:  # noqa: ANN001
        start.wait()
        return request()

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(send, requests))


def test_two_workers_deciding_at_once_have_exactly_one_effect(two_workers, manager_idle):
    url, _ = two_workers
    with fresh_client(url) as http:
        agent, ross, rita = key_of(http, "ada"), key_of(http, "ross"), key_of(http, "rita")

        def submit() -> str:
            answer = http.post("/api/queue/submission/add", json={"item": PLAN_COUNT}, headers=agent).json()
            return answer["submission"]["uid"]

        def decide(path: str, uid: str, headers: dict):  # noqa: ANN202
            return lambda: http.post(f"/api/queue/submission/{path}", json={"uid": uid}, headers=headers)

        approved_items, across_workers = [], 0
        for _ in range(ROUNDS):
            twice, contested = submit(), submit()
            answers = race(
                decide("approve", twice, ross),
                decide("approve", twice, rita),
                decide("approve", contested, ross),
                decide("deny", contested, rita),
            )
            assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers]
            bodies = [answer.json() for answer in answers]
            assert sum(body["success"] for body in bodies[:2]) == 1, bodies[:2]
            assert sum(body["success"] for body in bodies[2:]) == 1, bodies[2:]
            approved_items += [body["item_uid"] for body in bodies if body["success"] and body.get("item_uid")]
            workers = [answer.headers["X-Gateway-Worker"] for answer in answers]
            across_workers += workers[0] != workers[1] or workers[2] != workers[3]
            contested_state = "approved" if bodies[2]["success"] else "denied"
            states = {
                uid: http.get("/api/queue/submission/get", params={"uid": uid}, headers=agent).json()
                for uid in (twice, contested)
            }
            assert states[twice]["submissions"][0]["state"] == "approved"
            assert states[contested]["submissions"][0]["state"] == contested_state
        queue = manager_idle.queue_get()["items"]
        assert sorted(item["item_uid"] for item in queue) == sorted(approved_items)
        assert ROUNDS < len(approved_items) <= 2 * ROUNDS  # one add per approval, no more
        assert across_workers > 0, "no race was served by two workers: the test proved nothing"


def test_a_retry_after_a_cut_connection_adds_the_item_once(two_workers, re_manager, redis_port, manager_idle):
    url, prefix = two_workers
    store = redis.Redis(port=redis_port)
    item = plan(num=3)
    with fresh_client(url) as http:
        tom = key_of(http, "tom")
        once = {**tom, "Idempotency-Key": f"add-{uuid.uuid4()}"}
        re_manager.process.signal_group(signal.SIGSTOP)  # RE Manager takes the add only when thawed
        try:
            with pytest.raises(httpx.ReadTimeout):  # the client gives up: its connection is cut
                http.post("/api/queue/item/add", json={"item": item}, headers=once, timeout=httpx.Timeout(60, read=1))
            wait_for(lambda: store.keys(f"{prefix}:idempotency:*"), 30, "the gateway to hold the key")
            busy = http.post("/api/queue/item/add", json={"item": item}, headers=once)
            assert busy.status_code == 409 and busy.headers["Retry-After"], busy.text
            other = http.post("/api/queue/item/add", json={"item": plan(num=4)}, headers=once)
            assert other.status_code == 422 and "different request" in other.json()["detail"]
        finally:
            re_manager.process.signal_group(signal.SIGCONT)

        def retried() -> httpx.Response | None:
            answer = http.post("/api/queue/item/add", json={"item": item}, headers=once)
            return None if answer.status_code == 409 else answer

        wait_for(lambda: retried() is not None, 60, "the first add to be answered")
        answer = http.post("/api/queue/item/add", json={"item": item}, headers=once)
        assert answer.status_code == 200 and answer.headers["Idempotent-Replayed"] == "true"
        assert answer.json()["success"] is True
        queue = manager_idle.queue_get()["items"]
        assert [entry["item_uid"] for entry in queue] == [answer.json()["item"]["item_uid"]]

        # another principal's same key is another request; a new key is a new add
        ross = {**key_of(http, "ross"), "Idempotency-Key": once["Idempotency-Key"]}
        not_replayed = http.post("/api/queue/item/add", json={"item": item}, headers=ross)
        assert not_replayed.json()["success"] is True and "Idempotent-Replayed" not in not_replayed.headers
        assert len(manager_idle.queue_get()["items"]) == 2


def test_a_retried_submission_is_one_submission(two_workers, manager_idle):
    url, _ = two_workers
    with fresh_client(url) as http:
        agent = {**key_of(http, "ada"), "Idempotency-Key": "proposal-1"}
        answers = [http.post("/api/queue/submission/add", json={"item": PLAN_COUNT}, headers=agent) for _ in range(3)]
        assert len({answer.json()["submission"]["uid"] for answer in answers}) == 1
        assert [answer.headers.get("Idempotent-Replayed") for answer in answers] == [None, "true", "true"]


def test_an_approval_re_manager_did_not_answer_is_never_repeated(stack_dir, re_manager, manager_idle):
    """RE Manager takes the add but answers too late: the submission is failed, not pending, so
    a second approval cannot queue the item twice."""
    process, url = start_auth_gateway(
        stack_dir,
        re_manager,
        "agents-timeout",
        agents_config(),
        QS_GATEWAY_WORKERS="1",
        QS_GATEWAY_POOL_SIZE="1",  # one socket, connected before RE Manager is frozen (so it gets the add)
        QS_GATEWAY_TIMEOUT_RECEIVE="1",
    )
    try:
        with fresh_client(url) as http:
            agent, ross = key_of(http, "ada"), key_of(http, "ross")
            uid = http.post("/api/queue/submission/add", json={"item": PLAN_COUNT}, headers=agent).json()
            uid = uid["submission"]["uid"]
            assert http.get("/api/queue/get", params={"reload": True}, headers=ross).status_code == 200
            re_manager.process.signal_group(signal.SIGSTOP)
            try:
                late = http.post("/api/queue/submission/approve", json={"uid": uid}, headers=ross)
            finally:
                re_manager.process.signal_group(signal.SIGCONT)
            assert late.status_code == 408, late.text
            wait_for(lambda: len(manager_idle.queue_get()["items"]) == 1, 60, "RE Manager to carry out the add")
            record = http.get("/api/queue/submission/get", params={"uid": uid}, headers=agent).json()
            assert record["submissions"][0]["state"] == "failed"
            assert "may or may not be in the queue" in record["submissions"][0]["error"]
            again = http.post("/api/queue/submission/approve", json={"uid": uid}, headers=ross).json()
            assert again["success"] is False and again["state"] == "failed"
            assert len(manager_idle.queue_get()["items"]) == 1
    finally:
        process.stop()
