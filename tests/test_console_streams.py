"""The console's and the status's streams under gunicorn with four workers, RE Manager
publishing: Server-Sent Events resumed after a reconnect without a gap, heartbeats, the byte
stream, the limit of open streams per worker, streams ending when the gateway stops, and the
output lost when the subscribing worker is killed and another takes the lease over (at most the
lease). Polling, the client's monitors and the websockets: tests/test_console.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable

import httpx

from qs_gateway.api import streams as streams_api
from qs_gateway.serving.stack import free_port, start_gateway

from . import console_support
from .console_support import HEADERS, LEASE_SECONDS, numbers, poll_update, run_script
from .support import wait_for

console_gateway = console_support.console_gateway  # this module's gateway


def events(response: httpx.Response):
    event_id = None
    for line in response.iter_lines():
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            yield event_id, json.loads(line[6:])


def read_events(response: httpx.Response, count: int) -> list[tuple[str, dict]]:
    received = []
    for event in events(response):
        received.append(event)
        if len(received) == count:
            break
    return received


def test_console_events_resume_after_a_reconnect_without_a_gap(console_gateway, manager_open):
    url, _, _ = console_gateway
    with httpx.stream("GET", f"{url}/api/console_output/events", headers=HEADERS, timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        script = threading.Thread(target=run_script, args=(url, 100, "sse-line", 0.01))
        script.start()
        first = read_events(response, 20)
    # disconnected: more output is written meanwhile
    script.join()
    wait_for(
        lambda: "sse-line 99" in httpx.request("GET", f"{url}/api/console_output", json={}, headers=HEADERS).text,
        60,
        "the last line to reach the console stream",
    )
    last_id = first[-1][0]
    resumed_headers = {**HEADERS, "Last-Event-ID": last_id}
    with httpx.stream("GET", f"{url}/api/console_output/events", headers=resumed_headers, timeout=30) as response:
        text = "".join(m["msg"] for _, m in first)
        for _, message in events(response):
            text += message["msg"]
            if "sse-line 99\n" in text:
                break
    assert numbers(text, "sse-line") == list(range(100))


def test_status_events_and_heartbeats(console_gateway, manager_idle):
    url, _, _ = console_gateway
    deadline = time.monotonic() + 60
    with httpx.stream("GET", f"{url}/api/status/events", headers=HEADERS, timeout=30) as response:
        lines = []
        for line in response.iter_lines():
            lines.append(line)
            if any(x.startswith("data: ") for x in lines) and ": heartbeat" in lines:
                break
            assert time.monotonic() < deadline, f"no status and heartbeat within 60 s: {lines}"
    data = [json.loads(x[6:]) for x in lines if x.startswith("data: ")]
    assert data[0]["manager_state"] == "idle" and "plan_queue_uid" in data[0]


def byte_messages(response: httpx.Response, enough: Callable[[list[dict]], bool]) -> list[dict]:
    """The messages of ``/api/stream_console_output`` (concatenated JSON objects) until ``enough``."""
    buffer, messages, decoder = "", [], json.JSONDecoder()
    for chunk in response.iter_text():
        buffer += chunk
        while buffer:
            try:
                message, end = decoder.raw_decode(buffer)
            except json.JSONDecodeError:
                break
            messages.append(message)
            buffer = buffer[end:]
        if enough(messages):
            return messages
    raise AssertionError(f"the stream ended first: {messages}")


def printed(messages: list[dict], prefix: str) -> list[int]:
    return numbers("".join(m["msg"] for m in messages), prefix)


def test_stream_console_output_byte_format(console_gateway, manager_open):
    url, _, _ = console_gateway
    script = threading.Thread(target=run_script, args=(url, 3, "byte-line"))
    with httpx.stream("GET", f"{url}/api/stream_console_output", headers=HEADERS, timeout=30) as response:
        script.start()
        messages = byte_messages(response, lambda got: printed(got, "byte-line") == [0, 1, 2])
    script.join()
    # concatenated JSON objects, as Python's json.dumps writes them, with no separator
    assert all(set(m) == {"time", "msg"} for m in messages)


def test_the_byte_stream_starts_with_the_lines_of_the_last_two_seconds(console_gateway, manager_open):
    """Opened just after a request's lines went through (its opening handled late), the byte
    stream still has them; lines older than the look-back are not sent again."""
    url, store, prefix = console_gateway
    run_script(url, 1, "before-open")
    with httpx.stream("GET", f"{url}/api/stream_console_output", headers=HEADERS, timeout=30) as response:
        script = threading.Thread(target=run_script, args=(url, 1, "after-open"))
        script.start()
        messages = byte_messages(response, lambda got: printed(got, "after-open") == [0])
    script.join()
    assert printed(messages, "before-open") == [0]
    newest = int(poll_update(url, "ALL").json()["last_msg_uid"].split("-")[0])

    def redis_ms() -> int:
        seconds, micros = store.time()
        return seconds * 1000 + micros // 1000

    look_back = streams_api.CONSOLE_STREAM_LOOK_BACK_MS
    wait_for(lambda: redis_ms() > newest + look_back, 10, "the lines to age past the look-back")
    with httpx.stream("GET", f"{url}/api/stream_console_output", headers=HEADERS, timeout=30) as response:
        script = threading.Thread(target=run_script, args=(url, 1, "later"))
        script.start()
        messages = byte_messages(response, lambda got: printed(got, "later") == [0])
    script.join()
    assert printed(messages, "before-open") == [] and printed(messages, "after-open") == []


def test_stream_limit_per_worker(stack_dir, re_manager):
    metrics_port = free_port()
    env = re_manager.gateway_env(
        QS_GATEWAY_WORKERS="1",
        QS_GATEWAY_THREADS="4",
        QS_GATEWAY_STREAM_LIMIT="2",
        QS_GATEWAY_REDIS_PREFIX=f"qs_gateway_limit_{re_manager.ports.control}",
        QS_GATEWAY_METRICS_BIND=f"127.0.0.1:{metrics_port}",
    )
    process, url = start_gateway(stack_dir, env, log_name="gateway-limit.log")
    try:
        with httpx.Client(base_url=url, headers=HEADERS, timeout=10) as client:
            with client.stream("GET", "/api/console_output/events"), client.stream("GET", "/api/status/events"):
                metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
                assert 'qs_gateway_open_streams{kind="console_events"} 1.0' in metrics
                assert 'qs_gateway_open_streams{kind="status_events"} 1.0' in metrics
                refused = client.get("/api/console_output/events")
                assert refused.status_code == 503
                assert "Too many open streams" in refused.json()["detail"]
                assert int(refused.headers["Retry-After"]) >= 1

            # closed streams free their places (noticed within a second)
            def opens() -> bool:
                with client.stream("GET", "/api/console_output/events") as response:
                    return response.status_code == 200

            wait_for(opens, 10, "the closed streams to free their places")

            def open_console_streams() -> float:
                text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
                found = re.search(r'qs_gateway_open_streams\{kind="console_events"\} (\S+)', text)
                return float(found.group(1)) if found else 0.0

            wait_for(lambda: open_console_streams() == 0.0, 10, "the metric to count the closed streams")
    finally:
        process.stop()


def test_streams_end_when_the_gateway_stops(stack_dir, re_manager):
    env = re_manager.gateway_env(
        QS_GATEWAY_WORKERS="2", QS_GATEWAY_REDIS_PREFIX=f"qs_gateway_stop_{re_manager.ports.control}"
    )
    process, url = start_gateway(stack_dir, env, log_name="gateway-stop.log")
    opened = threading.Semaphore(0)
    ended = threading.Event()

    def listen() -> None:
        try:
            with httpx.stream("GET", f"{url}/api/console_output/events", headers=HEADERS, timeout=60) as response:
                opened.release()
                for _ in response.iter_lines():
                    pass
        except httpx.HTTPError:
            pass
        ended.set()

    listeners = [threading.Thread(target=listen, daemon=True) for _ in range(3)]
    try:
        for listener in listeners:
            listener.start()
        for _ in listeners:
            assert opened.acquire(timeout=60), "a stream did not open"
        signalled = time.monotonic()
        os.kill(process.pid, signal.SIGTERM)  # graceful stop of the master
        wait_for(ended.is_set, 60, "the streams to end")
        # they end on their own, before gunicorn's graceful timeout (10 s) would cut them
        assert time.monotonic() - signalled < 10
        wait_for(lambda: not process.running(), 60, "gunicorn to exit")
        for listener in listeners:
            listener.join(60)
    finally:
        process.stop()


def test_leader_takeover_loses_at_most_the_lease(console_gateway, manager_open):
    """Kill the subscribing worker while RE Manager prints a line every 10 ms; measure the gap."""
    url, store, prefix = console_gateway
    leader = store.get(f"{prefix}:ingest:leader").decode()
    leader_pid = int(leader.split(":")[1])
    cursor = poll_update(url, "").json()["last_msg_uid"]
    period = 0.01
    script = threading.Thread(target=run_script, args=(url, 600, "takeover-line", period))
    script.start()

    def lines_so_far() -> list[int]:
        return numbers(
            "".join(m["msg"] for m in poll_update(url, cursor).json()["console_output_msgs"]), "takeover-line"
        )

    wait_for(lambda: 50 in lines_so_far(), 20, "output to flow")
    os.kill(leader_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(
        lambda: (store.get(f"{prefix}:ingest:leader") or b"").decode() not in ("", leader),
        10,
        "another worker to take the lease",
    )
    takeover = time.monotonic() - killed_at
    script.join()
    wait_for(lambda: 599 in lines_so_far(), 60, "the last line")
    messages = poll_update(url, cursor).json()["console_output_msgs"]
    got = numbers("".join(m["msg"] for m in messages), "takeover-line")
    assert got == sorted(set(got)), "duplicates or disorder"
    missing = sorted(set(range(600)) - set(got))
    lost_seconds = len(missing) * period
    print(f"takeover after {takeover:.2f} s; lost {len(missing)} lines (~{lost_seconds:.2f} s of output)")
    # Bound (also in docs/streams.md, "Takeover"): the lease, plus one retry period, plus reconnecting the SUB socket.
    bound = LEASE_SECONDS + LEASE_SECONDS / 4 + 1.0
    assert lost_seconds <= bound
    assert got[-1] == 599, "output after the takeover must arrive"
    if missing:  # what is lost is one gap around the kill, nothing else
        assert missing == list(range(missing[0], missing[-1] + 1))


def test_status_events_resume_without_a_gap(console_gateway, manager_idle):
    url, store, prefix = console_gateway
    with httpx.stream("GET", f"{url}/api/status/events", headers=HEADERS, timeout=30) as response:
        last_id = read_events(response, 2)[-1][0]
    info_stream = f"{prefix}:info:stream"
    # disconnected while RE Manager publishes three more statuses (one a second)
    wait_for(lambda: len(store.xrange(info_stream, min=f"({last_id}", max="+", count=3)) == 3, 60, "three statuses")
    resumed = {**HEADERS, "Last-Event-ID": last_id}
    with httpx.stream("GET", f"{url}/api/status/events", headers=resumed, timeout=30) as response:
        resumed_ids = [event_id for event_id, _ in read_events(response, 3)]
    # the first event after the reconnect is the very next status in the stream: none skipped
    following = store.xrange(info_stream, min=f"({last_id}", max="+", count=3)
    assert resumed_ids == [entry_id.decode() for entry_id, _ in following]
