"""Pure logic: the circuit breaker, single-flight, error descriptions, credentials."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from qs_gateway.api.payload import describe
from qs_gateway.auth.credentials import parse_credentials
from qs_gateway.exceptions import BadRequest
from qs_gateway.manager.singleflight import SingleFlight
from qs_gateway.observability import _RequestIds, request_id_from
from qs_gateway.transport.breaker import CircuitBreaker, CircuitOpen

from .fakes import counted_flights
from .support import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_threshold_and_lets_one_probe_through():
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, open_seconds=1.0, clock=clock)
    for _ in range(2):
        breaker.admit()
        breaker.record_failure()
    assert breaker.state == "closed"
    breaker.admit()
    breaker.record_failure()
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen) as raised:
        breaker.admit()
    assert 0.1 <= raised.value.retry_after <= 1.0 and "3 consecutive" in str(raised.value)
    clock.now = 1.5
    assert breaker.state == "half_open"
    breaker.admit()  # the probe
    with pytest.raises(CircuitOpen):
        breaker.admit()  # everybody else keeps failing fast meanwhile
    breaker.record_failure()  # probe failed: open again
    assert breaker.state == "open"
    clock.now = 3.0
    breaker.admit()
    breaker.record_success()
    assert breaker.state == "closed"
    breaker.admit()


def test_breaker_open_because_nothing_was_delivered_lets_each_request_check_the_connection():
    clock = Clock()
    breaker = CircuitBreaker(threshold=2, open_seconds=1.0, clock=clock)
    assert breaker.admit() is False  # closed: a plain request
    breaker.record_failure(delivered=False)
    breaker.record_failure(delivered=False)
    assert breaker.state == "open"
    assert [breaker.admit() for _ in range(3)] == [True] * 3  # each one checks: no open time, no probe slot
    assert "takes no connection (connection refused)" in str(breaker.unreachable())
    assert "(no answer to a connection attempt)" in str(breaker.unreachable(refused=False))
    breaker.record_failure()  # one got through and was not answered: now the open time counts
    with pytest.raises(CircuitOpen):
        breaker.admit()
    clock.now = 1.5
    assert breaker.admit() is False  # the probe, a plain request
    breaker.record_success()
    assert breaker.state == "closed" and breaker.admit() is False


def test_late_failures_of_earlier_requests_do_not_hold_the_breaker_open():
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, open_seconds=1.0, clock=clock)
    breaker.record_failure()
    clock.now = 0.9
    breaker.record_failure()  # a request sent before it opened, timing out now
    clock.now = 1.1
    assert breaker.admit() is False  # the probe, on time


def test_breaker_success_resets_the_count():
    breaker = CircuitBreaker(threshold=2, open_seconds=1.0)
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"


def test_stale_probe_does_not_keep_the_breaker_shut():
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, open_seconds=1.0, probe_timeout=5.0, clock=clock)
    breaker.record_failure()
    clock.now = 2.0
    breaker.admit()  # a probe whose thread never reports back
    clock.now = 8.0
    breaker.admit()  # a new probe is allowed


def test_single_flight_shares_one_call(monkeypatch):
    waiting = counted_flights(monkeypatch)
    flight = SingleFlight()
    calls = []
    started = threading.Event()
    release = threading.Event()

    def slow():
        calls.append(1)
        started.set()
        release.wait(5)
        return "result"

    results = []
    leader = threading.Thread(target=lambda: results.append(flight.do("k", slow)))
    leader.start()
    started.wait(5)
    followers = [threading.Thread(target=lambda: results.append(flight.do("k", slow))) for _ in range(5)]
    for thread in followers:
        thread.start()
    wait_for(lambda: waiting() == 5, 30, "the followers to wait on the one flight")
    release.set()
    for thread in [leader, *followers]:
        thread.join(5)
    assert results == ["result"] * 6 and len(calls) == 1
    assert flight.do("k", lambda: "again") == "again"  # finished flights are not reused


def test_single_flight_shares_the_error():
    flight = SingleFlight()

    def failing():
        raise ValueError("boom")

    with pytest.raises(ValueError):
        flight.do("k", failing)


def test_describe_keeps_the_reference_wording():
    text = describe({"foo": ["Unknown field."], "enable": ["Missing data for required field."]})
    assert text == (
        "Some required keys are missing in the request: {'enable'}. "
        "Request contains keys the are not supported: {'foo'}."
    )
    nested = describe({"item": {"name": ["Missing data for required field."]}, "pos": ["Bad."]})
    assert nested == "Invalid value of 'item.name': Missing data for required field. Invalid value of 'pos': Bad."


def test_credentials_priority_and_schemes():
    assert parse_credentials("ApiKey header", "query", "cookie").api_key == "query"
    assert parse_credentials("apikey header", None, "cookie").api_key_source == "header"
    assert parse_credentials(None, None, "cookie").api_key_source == "cookie"
    both = parse_credentials("Bearer token", None, "cookie")
    assert both.api_key == "cookie" and both.bearer_token is None  # an API key wins over a token
    assert parse_credentials("BEARER tok", None, None).bearer_token == "tok"
    with pytest.raises(BadRequest):
        parse_credentials("Basic abc", None, None)


def test_timeout_policy_overrides_single_methods():
    from qs_gateway.manager import TimeoutPolicy
    from qs_gateway.transport import Timeouts

    policy = TimeoutPolicy(default=Timeouts(send=0.5, receive=2.0), per_method={"plans_existing": 5.0})
    assert policy.for_method("plans_existing") == Timeouts(send=0.5, receive=5.0)
    assert policy.for_method("status") == Timeouts(send=0.5, receive=2.0)


def test_a_forked_worker_makes_request_ids_of_its_own():
    parent = request_id_from(None)
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # the child writes its first two ids and leaves at once
        try:
            os.write(writing, f"{request_id_from(None)} {request_id_from(None)}".encode())
        finally:
            os._exit(0)
    os.close(writing)
    try:
        first, second = os.read(reading, 200).decode().split()
    finally:
        os.close(reading)
        os.waitpid(child, 0)
    assert first[:16] == second[:16] != parent[:16]  # its own random half, kept for its life
    assert int(second[16:], 16) == int(first[16:], 16) + 1
    assert request_id_from(None)[:16] == parent[:16]


def _ids_from_threads(threads: int, per_thread: int) -> tuple[list[str], list[BaseException]]:
    """Ids of one fresh ``_RequestIds``, asked for by ``threads`` threads released at once."""
    ids = _RequestIds()
    start = threading.Barrier(threads)
    made: list[str] = []
    failures: list[BaseException] = []

    def make() -> None:
        start.wait()
        try:
            made.extend(ids.next() for _ in range(per_thread))
        except BaseException as exc:  # the test reports whatever went wrong
            failures.append(exc)

    workers = [threading.Thread(target=make) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return made, failures


def test_request_ids_made_by_many_threads_in_a_fresh_process_are_whole_and_unique():
    # A worker's first requests arrive on several threads at once, right after fork: each must
    # get a whole id (a half-made per-process state once gave a 500), and no two the same.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to widen any race
    try:
        for _ in range(1000):
            made, failures = _ids_from_threads(8, 20)
            assert not failures, failures
            assert len(set(made)) == len(made) == 160
            assert len({request_id[:16] for request_id in made}) == 1  # one prefix per process
    finally:
        sys.setswitchinterval(previous)


def test_the_app_asks_once_per_function_whether_it_must_run_as_a_coroutine(monkeypatch):
    import flask.app

    from qs_gateway.app import GatewayFlask

    asked: list[object] = []
    monkeypatch.setattr(flask.app, "iscoroutinefunction", lambda func: asked.append(func) or False)
    app = GatewayFlask(__name__)

    def view() -> str:
        return "ok"

    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self) -> str:
            return "ok"

    unhashable = Unhashable()
    assert [app.ensure_sync(view) for _ in range(3)] == [view] * 3
    assert [app.ensure_sync(unhashable) for _ in range(2)] == [unhashable] * 2
    assert asked == [view, unhashable, unhashable]  # an unhashable callable is asked each time


def test_answer_headers_carry_the_request_id_once_replacing_a_views_own():
    from qs_gateway.api.hooks import with_answer_headers

    view = [("Content-Type", "application/json"), ("x-request-id", "from-the-view"), ("X-Frame-Options", "SAMEORIGIN")]

    def values(headers: list[tuple[str, str]], name: str) -> list[str]:
        return [value for key, value in headers if key.lower() == name]

    answer = with_answer_headers(view, "id-of-the-request")
    assert values(answer, "x-request-id") == ["id-of-the-request"]
    assert values(answer, "x-frame-options") == ["DENY"]  # the security headers are the gateway's
    assert values(answer, "cache-control") == ["no-store"] and values(answer, "content-type") == ["application/json"]
    # without an id (an answer of the metrics listener) a view's own is left alone
    assert values(with_answer_headers(view), "x-request-id") == ["from-the-view"]
