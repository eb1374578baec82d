"""The circuit breaker under gunicorn (two workers, the settings' defaults) in front of a real
RE Manager that is stopped and started again."""

from __future__ import annotations

import pytest

from .support import fresh_connections, gateway_in_front, wait_for

# An open breaker waits on no timeout: each request learns from a new connection that RE Manager
# refuses it, and says so. (That the refusal is known at once is the kernel's part; the transport's
# test shows the request does not wait for its send timeout.)
REFUSED_AT_ONCE = "takes no connection (connection refused)"


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory, redis_port):
    with gateway_in_front(
        tmp_path_factory.mktemp("breaker-manager"), redis_port, QS_GATEWAY_WORKERS="2", QS_GATEWAY_WORKER_HEADER="1"
    ) as (manager, url):
        yield manager, url


def test_an_open_breaker_answers_at_once_and_the_first_request_after_re_manager_is_back_succeeds(two_workers):
    manager, url = two_workers
    with fresh_connections(url) as http:
        assert http.get("/api/status", params={"reload": "true"}).status_code == 200
        manager.stop()
        failing_fast: set[str] = set()

        def both_breakers_open() -> bool:
            response = http.get("/api/status")
            if response.status_code == 408 and "failing fast" in response.json()["detail"]:
                failing_fast.add(response.headers["X-Gateway-Worker"])
            return len(failing_fast) == 2

        wait_for(both_breakers_open, 60, "the breakers of both workers to open")
        for _ in range(20):
            response = http.get("/api/status")
            assert response.status_code == 408, response.text
            assert REFUSED_AT_ONCE in response.json()["detail"], response.text
            assert "failing fast" in response.json()["detail"]
        manager.start()  # returns once RE Manager answers
        response = http.get("/api/status", params={"reload": "true"})
        assert response.status_code == 200, response.text
        assert response.json()["manager_state"] == "idle"
