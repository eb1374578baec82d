"""How many streams a gateway serves, and what those it cannot serve are told.

Streams are served by each worker's fan-out thread, not by a request thread each (see
qs_gateway.api.streams): here a worker at its ``stream_limit`` refuses every kind of stream
with 503 before it starts (no websocket handshake, no socket left open), a client that leaves
frees its slot at once, and many subscribers through the shipped nginx each get every message
in order. The 1,000-subscriber figures are the benchmark's (scripts/bench).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from bench.streams import GATEWAY_MIX, deliver
from qs_gateway.serving.proxy import behind_nginx
from qs_gateway.serving.stack import start_gateway, stop_all, stopped_on_failure

from .support import API_KEY, wait_for

HEADERS = {"Authorization": f"ApiKey {API_KEY}"}
PATHS = {
    "events": "/api/console_output/events",
    "bytes": "/api/stream_console_output",
    "websocket": "/api/status/ws",
}


@pytest.fixture(scope="module")
def one_slot(stack_dir, re_manager):
    """A gateway of one worker that serves one stream at a time."""
    env = re_manager.gateway_env(
        QS_GATEWAY_WORKERS="1",
        QS_GATEWAY_THREADS="4",
        QS_GATEWAY_STREAM_LIMIT="1",
        QS_GATEWAY_REDIS_PREFIX=f"qs_gateway_capacity_{re_manager.ports.control}",
    )
    process, url = start_gateway(stack_dir, env, log_name="gateway-capacity.log")
    yield url, process
    process.stop()


@contextlib.contextmanager
def stream(url: str, kind: str) -> Iterator[None]:
    """A stream of ``kind``, open (its first bytes or frame arrived) while the block runs."""
    if kind == "websocket":
        with connect(url.replace("http://", "ws://") + PATHS[kind], additional_headers=HEADERS) as websocket:
            json.loads(websocket.recv(timeout=10))  # statuses come at least once a second
            yield
        return
    with httpx.stream("GET", url + PATHS[kind], headers=HEADERS, timeout=10) as response:
        assert response.status_code == 200, response.read()
        lines = response.iter_lines()  # kept: a dropped iterator closes the connection
        if kind == "events":
            assert next(lines) == ": connected"
        yield


def refusal(url: str, kind: str) -> httpx.Response | object:
    """The answer to a stream of ``kind`` that the gateway cannot serve (a websocket's too)."""
    if kind != "websocket":
        return httpx.get(url + PATHS[kind], headers=HEADERS, timeout=10)
    with pytest.raises(InvalidStatus) as refused:
        with connect(url.replace("http://", "ws://") + PATHS[kind], additional_headers=HEADERS):
            pass
    return refused.value.response


def established(port: int) -> int:
    """Connections to ``port`` on this host that the kernel holds as established (server side)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if int(local.rsplit(":", 1)[1], 16) == port and state == "01":
                count += 1
    return count


@pytest.mark.parametrize("holder", ["events", "websocket"])
def test_over_the_limit_every_kind_is_refused_before_it_starts(one_slot, holder):
    url, process = one_slot
    port = int(url.rsplit(":", 1)[1])
    with stream(url, holder):
        for kind in PATHS:
            answer = refusal(url, kind)
            assert answer.status_code == 503, kind
            assert int(answer.headers["Retry-After"]) >= 1, kind
            body = answer.body if kind == "websocket" else answer.content
            assert json.loads(body)["detail"].startswith("Too many open streams"), kind
        # the refused connections are closed; only the open stream's remains
        wait_for(lambda: established(port) == 1, 5, "the refused connections to be closed")
    log = process.log_path.read_text()
    assert "Traceback" not in log and "Bad file descriptor" not in log


@pytest.mark.parametrize("kind", list(PATHS))
def test_a_slot_is_free_as_soon_as_its_client_leaves(one_slot, kind):
    url, _ = one_slot

    def opens() -> bool:
        try:
            with stream(url, kind):
                return True
        except (AssertionError, InvalidStatus):
            return False

    wait_for(opens, 10, "the slot to be free")  # whatever the test before left
    for _ in range(3):  # each time the client left, the next one gets in right away
        wait_for(opens, 1.5, "the slot to be free at once (it took 1-5 s when each stream held a thread)")


@pytest.mark.parametrize(
    "value", ["garbage", "1-2-3", "-1", "1-", "99999999999999999999999-0", "1-99999999999999999999999", " "]
)
def test_an_unparseable_last_event_id_is_a_400(client, value):
    for path in ("/api/console_output/events", "/api/status/events"):
        for answer in (
            client.get(path, headers={"Last-Event-ID": value}),
            client.get(path, query_string={"last_event_id": value}),
        ):
            assert answer.status_code == 400, (path, value)
            assert "Last-Event-ID" in answer.get_json()["detail"]


def test_a_valid_last_event_id_in_process_resumes(client):
    # the test client cannot hand its connection over: the stream is served from its thread
    with client.get("/api/console_output/events", headers={"Last-Event-ID": "1-0"}) as response:
        assert response.status_code == 200
        assert response.mimetype == "text/event-stream"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, re_manager):
    """The shipped deployment: nginx with deploy/nginx.conf, the gateway with its defaults
    (two workers) on a unix socket."""
    workdir = tmp_path_factory.mktemp("streams-nginx")
    socket_path = workdir / "gateway.sock"
    prefix = f"qs_gateway_fanout_{re_manager.ports.control}"
    gateway, _ = start_gateway(
        workdir,
        re_manager.gateway_env(QS_GATEWAY_PROXY_HOPS="1", QS_GATEWAY_REDIS_PREFIX=prefix),
        unix_socket=socket_path,
        log_name="gateway-streams-nginx.log",
    )
    with stopped_on_failure(gateway):
        proxy = behind_nginx(workdir / "nginx", socket_path)
    yield proxy, prefix
    stop_all([proxy.process, gateway])


def test_many_subscribers_through_nginx_each_get_every_message_in_order(deployed, re_manager, manager_open):
    import redis

    proxy, prefix = deployed
    delivery = deliver(
        proxy.url, API_KEY, str(proxy.cert), re_manager.ports, GATEWAY_MIX, 80, seconds=3, rate=10,
        redis_client=redis.Redis(port=re_manager.redis_port), redis_prefix=prefix,
    )  # fmt: skip
    assert delivery.connected == 80 and not delivery.refused
    assert delivery.expected >= 80 * 2  # console lines and statuses, for each subscriber
    assert delivery.received == delivery.expected
    assert delivery.in_order == 80
    assert set(delivery.latencies) == set(GATEWAY_MIX)
