"""The manager layer's client in milliseconds, over fakes of the gateway's own store and
transport: caching by uid and single flight, invalidation after a write, timeouts by class, and
refusals in RE Manager's shape. The status cache has tests of its own:
tests/test_status_cache_units.py."""

from __future__ import annotations

import sys
import threading

import orjson
import pytest

from qs_gateway.manager import METHODS, Access, ManagerClient, Reply, StatusCache, Timeout, TimeoutPolicy
from qs_gateway.manager.refusals import REFUSALS, refusal_reply
from qs_gateway.transport import RequestTimeout, Timeouts

from .fakes import FakeStore, FakeTransport, counted_flights
from .support import wait_for

# -- the client --------------------------------------------------------------------------------


class Manager:
    """An RE Manager of canned replies whose queue uid the test changes."""

    def __init__(self) -> None:
        self.queue_uid = "q1"
        self.lock_uid = "l1"

    def __call__(self, method: str, params: dict) -> dict:
        if method == "status":
            return {"status_uid": "s", "plan_queue_uid": self.queue_uid, "lock_info_uid": self.lock_uid,
                    "items_in_queue": 4, "time": "t"}  # fmt: skip
        if method == "queue_get":
            return {"success": True, "msg": "", "items": [], "plan_queue_uid": self.queue_uid}
        if method == "lock_info":
            return {"success": True, "msg": "", "lock_info": {}, "lock_info_uid": self.lock_uid}
        return {"success": True, "msg": ""}


@pytest.fixture
def manager():
    return Manager()


@pytest.fixture
def transport(manager):
    return FakeTransport(manager)


def client_of(transport: FakeTransport, **timeouts) -> ManagerClient:
    return ManagerClient(transport, StatusCache(FakeStore(), ttl=60), TimeoutPolicy(**timeouts))


def test_reads_may_be_repeated_writes_never(transport):
    client = client_of(transport)
    client.call("queue_get")
    client.call("queue_item_add", {"item": {}})
    assert [(method, repeatable) for method, _, _, repeatable in transport.sent] == [
        ("queue_get", True),
        ("queue_item_add", False),
    ]


def test_a_guarded_read_is_fetched_again_only_when_its_uid_changes(transport, manager):
    client = client_of(transport)
    for _ in range(3):
        assert client.read("queue_get").get("plan_queue_uid") == "q1"
    assert transport.methods == ["status", "queue_get"]
    manager.queue_uid = "q2"
    client.status_cache.invalidate()  # what a write through any worker does
    assert client.read("queue_get").get("plan_queue_uid") == "q2"
    assert transport.methods == ["status", "queue_get", "status", "queue_get"]
    client.read("queue_get", reload=True)
    assert transport.methods[-2:] == ["status", "queue_get"]


def test_the_cached_status_is_answered_by_one_reply_until_it_changes(transport, manager):
    # the reply keeps what was worked out of the body (the ETag's uid, the gzipped body)
    client = client_of(transport)
    client.status()  # fetched from RE Manager
    served = client.status()
    assert client.status() is served and served.peek("plan_queue_uid") == "q1"
    manager.queue_uid = "q2"
    client.status_cache.invalidate()
    client.status()
    changed = client.status()
    assert changed is not served and changed.peek("plan_queue_uid") == "q2"
    assert client.status() is changed and transport.methods == ["status", "status"]


def test_a_read_with_more_than_the_identity_goes_to_re_manager(transport):
    client = client_of(transport)
    client.read("lock_info")
    client.read("lock_info")
    client.read("lock_info", {"lock_key": "k"})  # RE Manager checks the key: never from the cache
    client.read("lock_info", {"lock_key": "k"})
    assert transport.methods == ["status", "lock_info", "lock_info", "lock_info"]


def test_concurrent_reads_share_one_request(transport, monkeypatch):
    waiting = counted_flights(monkeypatch)
    client = client_of(transport)
    client.status()  # the status is cached; the queue is not yet
    transport.gate = threading.Event()
    threads = [threading.Thread(target=client.read, args=("queue_get",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    wait_for(lambda: waiting() == 7, 30, "the seven others to wait on the first one's flight")
    transport.gate.set()
    for thread in threads:
        thread.join(5)
    assert transport.methods.count("queue_get") == 1


def test_a_write_invalidates_the_status_and_drops_what_it_may_change(transport):
    client = client_of(transport)
    client.read("queue_get")
    generation = client.status_cache.lookup()[1]
    client.call("queue_item_add", {"item": {}})
    assert client.status_cache.lookup() == (None, generation + 1)
    assert not [key for key in client._by_uid if key[0] == "queue_get"]


def test_a_write_that_timed_out_still_invalidates(transport):
    def timing_out(method: str, params: dict) -> dict:
        raise RequestTimeout("no reply")

    client = client_of(FakeTransport(timing_out))
    generation = client.status_cache.lookup()[1]
    with pytest.raises(RequestTimeout):
        client.call("queue_start")
    assert client.status_cache.lookup()[1] == generation + 1


def test_timeouts_by_class_and_by_method(transport):
    client = client_of(transport, default=Timeouts(send=0.5, receive=2), bulk_receive=5, per_method={"status": 1})
    client.call("queue_start")
    client.call("history_get")
    client.call("status")
    assert [timeouts.receive for _, _, timeouts, _ in transport.sent] == [2, 5, 1]


def test_the_method_table_is_consistent():
    for name, method in METHODS.items():
        if method.guard is not None:
            assert method.access is Access.READ, name
        if method.timeout is Timeout.BULK:
            assert method.access is Access.READ, name
        for guard in method.changes:
            assert guard in {m.guard for m in METHODS.values()}, (name, guard)
    writes = {name for name, method in METHODS.items() if method.access is Access.WRITE}
    assert writes - {"manager_kill"} <= set(REFUSALS)  # every write RE Manager answers can be refused


# -- refusals ----------------------------------------------------------------------------------


ITEM = {"item_type": "plan", "name": "count"}


def test_refusal_of_an_item_add_echoes_the_item_with_no_queue_size(transport):
    reply = client_of(transport).refuse("queue_item_add", {"item": ITEM, "pos": "x"}, "Bad pos.", {"pos": ["x"]})
    assert reply.data == {
        "success": False,
        "msg": "Failed to add an item: Bad pos.",
        "qsize": None,
        "item": ITEM,
        "errors": {"pos": ["x"]},
    }
    assert transport.methods == []  # nothing is sent


def test_refusal_of_a_batch_item_by_item_with_the_queue_size(transport):
    items = [ITEM, {}, ITEM]
    errors = {"items": {1: {"name": ["missing"]}}}
    reply = client_of(transport).refuse("queue_item_add_batch", {"items": items}, "r", errors, {1: "No name."})
    assert reply.data == {
        "success": False,
        "msg": "Failed to add all items: validation of 1 out of 3 submitted items failed. r",
        "qsize": 4,
        "items": items,
        "results": [
            {"success": True, "msg": ""},
            {"success": False, "msg": "Failed to add a plan: No name."},
            {"success": True, "msg": ""},
        ],
        "errors": errors,
    }
    assert transport.methods == ["status"]  # the queue size, as RE Manager reports it


def test_refusal_of_a_batch_without_re_manager_leaves_the_queue_size_null():
    def down(method: str, params: dict) -> dict:
        raise RequestTimeout("down")

    reply = client_of(FakeTransport(down)).refuse("queue_item_add_batch", {"items": []}, "Bad pos.", {"pos": ["x"]})
    assert reply.data["qsize"] is None and reply.data["msg"] == "Failed to add an item: Bad pos."
    assert reply.data["items"] == [] and reply.data["results"] == []


@pytest.mark.parametrize(
    "method, rest",
    [
        ("queue_item_get", {"item": {}}),
        ("queue_item_remove", {"item": {}, "qsize": None}),
        ("queue_item_move_batch", {"qsize": None, "items": []}),
        ("queue_item_update", {"qsize": 0, "item": None}),
        ("script_upload", {"task_uid": None}),
        ("history_clear", {}),
    ],
)
def test_refusal_shapes_keep_re_managers_keys_in_order(method, rest):
    reply = refusal_reply(REFUSALS[method], {}, "why", {"f": ["bad"]})
    assert list(reply) == ["success", "msg", *rest, "errors"]
    assert {key: reply[key] for key in rest} == rest


def test_a_peeked_uid_is_what_the_body_says_and_decoding_agrees():
    body = orjson.dumps({"success": True, "items": [{"item_uid": "x"}] * 3, "plan_queue_uid": "q-1"})
    reply = Reply(body=body)
    assert reply.peek("plan_queue_uid") == "q-1"
    assert reply.peek("plan_queue_uid") == "q-1"  # remembered, the same answer
    assert reply.peek("history_uid") is None
    assert reply.peek("history_uid") is None
    assert Reply(body=body).get("plan_queue_uid") == reply.peek("plan_queue_uid")


def test_a_write_forgets_cached_replies_while_other_threads_add_some(transport):
    """A write's ``finally`` drops cached replies while request threads add theirs: it must
    neither fail ("dictionary changed size during iteration") nor turn the write into an error."""
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: the race shows at once
    client = client_of(transport)
    client.status()
    for index in range(5000):  # replies the write keeps: a long walk for the write to make
        client._by_uid[("history_get", (), str(index))] = None
    stop = threading.Event()

    def reader(index: int) -> None:
        variant = 0
        while not stop.is_set():
            variant += 1  # each variant is a new cache entry
            client.read("queue_get", variant=f"{index}:{variant}", transform=lambda reply: reply)

    readers = [threading.Thread(target=reader, args=(index,)) for index in range(4)]
    for thread in readers:
        thread.start()
    try:
        for _ in range(50):
            assert client.call("queue_item_add", {"item": {}}).succeeded
    finally:
        stop.set()
        for thread in readers:
            thread.join(10)
        sys.setswitchinterval(switch_interval)
