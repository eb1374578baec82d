"""The console is never behind a status a client could have seen: the logic on a Redis of its
own, written as our ingest and status cache write it; then RE Manager and the gateway with the
info channel delayed on its way to the ingest.

RE Manager publishes a console line printed before a status change ahead of that status, but a
worker may fetch the new status (REQ/REP) while the line is still on its way through the ingest.
bluesky-httpserver's suite reads the console right after the status says the environment is open
and expects it to hold RE Manager's last line about it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis

from qs_gateway.config.redis import RedisSettings
from qs_gateway.manager.status_cache import StatusCache
from qs_gateway.redis_store import RedisStore
from qs_gateway.serving.stack import start_gateway, start_redis
from qs_gateway.streaming import console as console_module
from qs_gateway.streaming.console import ConsoleLog
from qs_gateway.streaming.ingest import Ingester

from .delay_line import DelayLine
from .support import API_KEY, wait_for

BEFORE, CHANGED = "2026-12-07T14:19:19.061000", "2026-12-07T14:19:19.334000"
LAST_LINE = "Worker started successfully.\n"


def published_status(status_time: str) -> tuple[str, dict]:
    status = {"time": status_time, "manager_state": "idle", "worker_environment_exists": True}
    return ("QS_Info", {"time": 1.0, "msg": {"status": status}})


def console_line(text: str) -> tuple[str, dict]:
    return ("QS_Console", {"time": 1.0, "msg": text})


class Shared:
    """A Redis of the test's own, written as the ingest leader and a status fetch write it."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.ingest = Ingester(store, lambda: None)
        store.run(lambda r: r.set(self.ingest.keys.leader, self.ingest.identity))  # it leads

    def ingested(self, *messages: tuple[str, dict]) -> None:
        self.ingest._append(list(messages))

    def fetched(self, status_time: str) -> None:
        StatusCache(self.store, ttl=5.0).store_status(b'{"manager_state": "idle"}', 0, status_time)

    def waits_in_redis(self) -> bool:
        return any(c["cmd"] == "xread" and "b" in c["flags"] for c in self.store.run(lambda r: r.client_list()))

    def xread_calls(self) -> int:
        stats = self.store.run(lambda r: r.info("commandstats"))
        return stats.get("cmdstat_xread", {}).get("calls", 0)


@pytest.fixture
def shared(tmp_path) -> Iterator[Shared]:
    process, port = start_redis(tmp_path / "redis")
    try:
        yield Shared(RedisStore(RedisSettings(url=f"redis://127.0.0.1:{port}/0")))
    finally:
        process.stop()


READS: dict[str, Callable[[ConsoleLog], str]] = {
    "update": lambda log: log.update("ALL").decode(),
    "uid": lambda log: log.uid(),
    "text": lambda log: log.text(None)[0],
}


def newest_console_id(shared: Shared) -> str:
    return shared.store.run(lambda r: r.xrevrange(shared.ingest.keys.console, count=1))[0][0].decode()


def shows_last_line(read: str, answer: str, shared: Shared) -> bool:
    return answer == newest_console_id(shared) if read == "uid" else "Worker started successfully." in answer


@pytest.mark.parametrize("read", READS)
def test_a_read_waits_for_the_lines_printed_before_a_fetched_status(shared, read):
    shared.ingested(console_line("RE Environment is ready\n"), published_status(BEFORE))
    shared.fetched(CHANGED)  # a worker fetched the new status; the line before it is on its way
    answers: list[str] = []
    reader = threading.Thread(target=lambda: answers.append(READS[read](ConsoleLog(shared.store))))
    reader.start()
    try:
        wait_for(shared.waits_in_redis, 30, "the read to wait for the ingest")
        shared.ingested(console_line(LAST_LINE), published_status(CHANGED))
    finally:
        reader.join()
    assert answers and shows_last_line(read, answers[0], shared)


@pytest.mark.parametrize("read", READS)
def test_no_wait_when_the_published_status_is_as_new(shared, read):
    shared.ingested(console_line(LAST_LINE), published_status(CHANGED))
    shared.fetched(CHANGED)
    assert shows_last_line(read, READS[read](ConsoleLog(shared.store)), shared)
    shared.fetched(BEFORE)  # an older fetch (one that started earlier and ended later)
    assert shows_last_line(read, READS[read](ConsoleLog(shared.store)), shared)
    assert shared.xread_calls() == 0


def test_no_wait_when_nothing_was_published_lately(shared):
    """RE Manager's publishing or the ingest is off (the published status expired): nothing
    would come, so the read answers at once."""
    shared.ingested(console_line(LAST_LINE))
    shared.fetched(CHANGED)
    assert LAST_LINE.strip() in ConsoleLog(shared.store).update("ALL").decode()
    assert shared.xread_calls() == 0


def test_a_read_answers_with_what_is_there_when_the_ingest_never_comes(shared, monkeypatch):
    monkeypatch.setattr(console_module, "CATCH_UP_SECONDS", 0.3)
    shared.ingested(console_line("RE Environment is ready\n"), published_status(BEFORE))
    shared.fetched(CHANGED)
    body = ConsoleLog(shared.store).update("ALL").decode()
    assert "RE Environment is ready" in body and '"success":true' in body
    assert shared.xread_calls() >= 1


def test_the_console_holds_the_last_line_once_the_status_says_open(tmp_path, re_manager, manager_closed):
    """The info channel reaches the ingest 0.3 s late (a busy leader, say); the status, fetched
    directly, says "open" first. The console read right after must hold RE Manager's last line
    about it (bluesky-httpserver's test_http_server_console_output_update_1 reads it so)."""
    headers = {"Authorization": f"ApiKey {API_KEY}"}
    with DelayLine(("127.0.0.1", re_manager.ports.info), delay=0.3) as line:
        prefix = f"qs_gateway_catch_up_{re_manager.ports.control}"
        env = re_manager.gateway_env(
            QS_GATEWAY_WORKERS="2",
            QSERVER_ZMQ_INFO_ADDRESS=f"tcp://127.0.0.1:{line.port}",
            QS_GATEWAY_REDIS_PREFIX=prefix,
        )
        gateway, url = start_gateway(tmp_path, env, log_name="gateway-catch-up.log")
        try:
            published = redis.Redis(port=re_manager.redis_port)
            wait_for(lambda: published.exists(f"{prefix}:status:published"), 60, "a status through the delay line")

            def call(method: str, path: str, body: dict) -> dict:
                return httpx.request(method, f"{url}/api{path}", json=body, headers=headers, timeout=30).json()

            cursor = call("GET", "/console_output_update", {"last_msg_uid": ""})["last_msg_uid"]
            assert call("POST", "/environment/open", {})["success"] is True

            def says_open() -> bool:
                status = call("GET", "/status", {"reload": True})
                return status["worker_environment_exists"] and status["manager_state"] == "idle"

            wait_for(says_open, 60, "the status to say the environment is open", period=0.02)
            update = call("GET", "/console_output_update", {"last_msg_uid": cursor})
            assert "Worker started successfully." in "".join(m["msg"] for m in update["console_output_msgs"])
        finally:
            gateway.stop()
