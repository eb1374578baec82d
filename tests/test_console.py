"""Console output and live status under gunicorn with four workers, RE Manager publishing: the
console polled from any worker, the client's console and system-info monitors, the websockets,
and the status RE Manager publishes serving reads.

Every worker serves the console from Redis, fed by one subscriber chosen by a lease, so a
client gets each message once and in order whichever worker answers. The streams (Server-Sent
Events, the byte stream, their limits and their end) and the subscriber's takeover:
tests/test_console_streams.py.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from websockets.sync.client import connect

from . import console_support
from .console_support import HEADERS, numbers, poll_update, run_script
from .support import API_KEY, http_api, keyed_client, make_app, spy_on, wait_for

console_gateway = console_support.console_gateway  # this module's gateway


def test_polling_gets_every_message_once_and_in_order_from_any_worker(console_gateway, manager_open):
    url, _, _ = console_gateway
    first = poll_update(url, "").json()
    assert first["console_output_msgs"] == [] and first["success"] is True
    cursor = first["last_msg_uid"]
    received: list[str] = []
    workers = set()
    done = threading.Event()

    def poller() -> None:
        nonlocal cursor
        while True:
            finished = done.is_set()
            response = poll_update(url, cursor)
            body = response.json()
            workers.add(response.headers["X-Gateway-Worker"])
            received.extend(m["msg"] for m in body["console_output_msgs"])
            cursor = body["last_msg_uid"]
            if finished:
                return
            time.sleep(0.05)

    thread = threading.Thread(target=poller)
    thread.start()
    try:
        run_script(url, 300, "poll-line", delay=0.005)
        wait_for(lambda: "poll-line 299\n" in "".join(received), 60, "the last line to be polled")
    finally:
        done.set()
        thread.join()
    assert numbers("".join(received), "poll-line") == list(range(300))
    assert len(workers) > 1, "the polls never reached a second worker"
    # "ALL" returns everything kept, "" and unknown cursors return nothing but the current cursor
    everything = poll_update(url, "ALL").json()["console_output_msgs"]
    assert numbers("".join(m["msg"] for m in everything), "poll-line") == list(range(300))
    for cursor_value in ("", "no-such-id", "1-0"):
        body = poll_update(url, cursor_value).json()
        assert body["console_output_msgs"] == [] and body["last_msg_uid"] == cursor


def test_update_requires_exactly_last_msg_uid(console_gateway):
    url, _, _ = console_gateway
    missing = httpx.request("GET", f"{url}/api/console_output_update", json={}, headers=HEADERS)
    assert missing.status_code == 400
    assert "Some required keys are missing in the request: {'last_msg_uid'}" in missing.json()["detail"]
    extra = httpx.request("GET", f"{url}/api/console_output_update", json={"last_msg_uid": "", "x": 1}, headers=HEADERS)
    assert "Request contains keys the are not supported: {'x'}" in extra.json()["detail"]


@pytest.fixture
def RM(console_gateway):
    """The real client in HTTP mode, with the single-user key."""
    rm = http_api(console_gateway[0])
    yield rm
    rm.close()


def test_client_console_monitor_and_rendered_text(console_gateway, manager_open, RM):
    url, _, _ = console_gateway
    try:
        RM.console_monitor.enable()
        # the monitor reads what comes after its first poll, which gives it a cursor
        wait_for(lambda: RM.console_monitor._console_output_last_msg_uid, 30, "the console monitor's first poll")
        script = (
            "print('progress 10%', end='', flush=True)\n"
            "print('\\rprogress 100%', flush=True)\n"
            "print('a\\nb\\nc', flush=True)\n"
            "print('\\x1b[A\\x1b[Aup', flush=True)\n"
            "print('render-done', flush=True)\n"
        )
        task = RM.script_upload(script)["task_uid"]
        RM.wait_for_completed_task(task, timeout=30)
        wait_for(lambda: "render-done" in RM.console_monitor.text(), 60, "the client's console monitor")
        client_text = RM.console_monitor.text(200)
        wait_for(
            lambda: "render-done" in httpx.request("GET", f"{url}/api/console_output", json={}, headers=HEADERS).text,
            60,
            "the gateway's rendered text",
        )
        ours = httpx.request("GET", f"{url}/api/console_output", json={"nlines": 200}, headers=HEADERS).json()
        # the same rendering rules as the client's own monitor (\r, \n, ESC[A)
        assert ours["text"].endswith(client_text[-200:])
        assert "progress 100%" in ours["text"] and "progress 10%" not in ours["text"]
        assert "\nup\n" in ours["text"] + "\n"
        tail = httpx.request("GET", f"{url}/api/console_output", json={"nlines": 1}, headers=HEADERS).json()
        assert tail["text"] == ours["text"].split("\n")[-1]
        uid = httpx.request("GET", f"{url}/api/console_output/uid", json={}, headers=HEADERS).json()
        assert uid["success"] is True and uid["console_output_uid"]
    finally:
        RM.console_monitor.disable()


def test_client_system_info_monitor_over_websocket(manager_idle, RM):
    try:
        RM.system_info_monitor.enable()
        message = RM.system_info_monitor.next_msg(timeout=10)
        assert isinstance(message["time"], float)
        assert message["msg"]["status"]["manager_state"] in ("idle", "executing_queue")
    finally:
        RM.system_info_monitor.disable()


@pytest.mark.parametrize("path, wanted", [("/api/status/ws", "status"), ("/api/info/ws", None)])
def test_status_and_info_websockets(console_gateway, manager_idle, path, wanted):
    url, _, _ = console_gateway
    uri = url.replace("http://", "ws://") + path
    with connect(uri, additional_headers=HEADERS) as websocket:
        frame = json.loads(websocket.recv(timeout=10))
        assert isinstance(frame["time"], float) and isinstance(frame["msg"], dict)
        if wanted:
            assert "status" in frame["msg"]


def test_websockets_refuse_wrong_header_credentials_before_the_handshake(console_gateway):
    # the other ways to log in on a websocket: tests/test_websocket_logins.py
    url, _, _ = console_gateway
    uri = url.replace("http://", "ws://") + "/api/status/ws"
    for headers in ({"Authorization": "ApiKey wrong"}, {"Authorization": f"Bearer {API_KEY}"}):
        with pytest.raises(Exception, match="401"):
            with connect(uri, additional_headers=headers):
                pass


def test_console_websocket_frames(console_gateway, manager_open):
    url, _, _ = console_gateway
    uri = url.replace("http://", "ws://") + "/api/console_output/ws"
    with connect(uri, additional_headers=HEADERS) as websocket:
        run_script(url, 5, "ws-line")
        text = ""
        while numbers(text, "ws-line") != list(range(5)):
            frame = json.loads(websocket.recv(timeout=10))
            assert set(frame) == {"time", "msg"}
            text += frame["msg"]


def test_published_status_serves_reads_and_writes_are_still_seen(console_gateway, re_manager, manager_idle):
    from qs_gateway.extensions import EXTENSION_KEY

    _, _, prefix = console_gateway
    app = make_app(re_manager, QS_GATEWAY_REDIS_PREFIX=prefix)  # shares the ingest of the running gateway
    sent = spy_on(app)
    client = keyed_client(app)
    try:
        for _ in range(6):
            assert client.get("/api/status").get_json()["manager_state"] == "idle"
            time.sleep(0.5)  # longer than the fetched status is kept (0.4 s)
        # one fetch sets the floor; the published status answers the rest
        assert sent.count("status") <= 2, sent
        added = client.post(
            "/api/queue/item/add", json={"item": {"item_type": "plan", "name": "count", "args": [["det1"]]}}
        ).get_json()
        assert added["success"] is True
        assert client.get("/api/status").get_json()["items_in_queue"] == 1
    finally:
        app.extensions[EXTENSION_KEY].close()
