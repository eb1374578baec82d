"""The gateway's Redis stopped and started again on the same port, under a running gateway.

The gateway gets a redis-server of its own here; RE Manager keeps the session's, so it goes on
working. Without Redis, what needs no shared state goes on (single-user mode: status, queue,
items, history), what needs it (console output, streams, the readiness check, logins and API
keys in provider mode) answers 503 with a detail naming Redis, no worker dies, and all of it
works again once Redis is back.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from qs_gateway.serving.stack import ManagedProcess, start_gateway, start_redis

from .auth_support import api_key_header, bearer, configured_app, login, toy_config
from .support import API_KEY, answers_of_every_worker, plan, wait_for

WORKERS = 2
UNAVAILABLE = "Shared state unavailable: Redis at redis://127.0.0.1:{port}/0 did not answer"


class RestartableRedis:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.process: ManagedProcess | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process, self.port = start_redis(self.workdir, port=self.port)

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture(scope="module")
def gateway_redis(tmp_path_factory):
    redis = RestartableRedis(tmp_path_factory.mktemp("gateway-redis"))
    redis.start()
    yield redis
    redis.stop()


@pytest.fixture
def redis_up(gateway_redis):
    if not gateway_redis.process.running():
        gateway_redis.start()
    return gateway_redis


@pytest.fixture(scope="module")
def gateway(gateway_redis, re_manager, tmp_path_factory):
    env = re_manager.gateway_env(
        QS_GATEWAY_REDIS_URL=gateway_redis.url,
        QS_GATEWAY_WORKERS=str(WORKERS),
        QS_GATEWAY_THREADS="4",
        QS_GATEWAY_WORKER_HEADER="1",
        QS_GATEWAY_INGEST_LEASE_SECONDS="1",
    )
    process, url = start_gateway(tmp_path_factory.mktemp("redis-faults"), env, log_name="gateway-redis.log")
    yield url
    process.stop()


@pytest.fixture
def http(gateway):
    with httpx.Client(
        base_url=gateway,
        headers={"Authorization": f"ApiKey {API_KEY}"},
        timeout=10,
        limits=httpx.Limits(max_keepalive_connections=0),  # requests spread over the workers
    ) as client:
        yield client


def on_every_worker(http: httpx.Client, method: str, path: str, **kwargs) -> dict[str, httpx.Response]:
    def fresh() -> httpx.Client:
        return httpx.Client(base_url=http.base_url, headers=http.headers, timeout=10)

    return answers_of_every_worker(lambda client: client.request(method, path, **kwargs), WORKERS, client=fresh)


def first_status_event(http: httpx.Client) -> str:
    with http.stream("GET", "/api/status/events") as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                return line


def test_without_redis_what_needs_it_is_503_the_rest_works_then_all_recovers(redis_up, http, manager_idle):
    workers = set(on_every_worker(http, "GET", "/readyz"))
    assert first_status_event(http)

    redis_up.stop()
    unavailable = UNAVAILABLE.format(port=redis_up.port)
    for worker, response in on_every_worker(http, "POST", "/api/queue/item/add", json={"item": plan()}).items():
        assert response.json()["success"] is True, worker
    for path in ("/api/status", "/api/queue/get", "/api/history/get", "/api/plans/allowed"):
        for worker, response in on_every_worker(http, "GET", path).items():
            assert response.status_code == 200, (path, worker, response.text)
    assert http.get("/api/queue/get").json()["items"][0]["name"] == "count"
    for path in ("/api/console_output", "/api/console_output/uid", "/api/status/events"):
        for worker, response in on_every_worker(http, "GET", path).items():
            assert response.status_code == 503, (path, worker)
            assert response.json()["detail"].startswith(unavailable), response.json()
            assert response.headers["Retry-After"] == "1"
    for response in on_every_worker(http, "GET", "/readyz").values():
        assert response.status_code == 503
        checks = response.json()["checks"]
        assert checks["redis"] == {"ok": False, "reason": f"Redis at {redis_up.url} did not answer"}
        assert checks["re_manager"]["ok"] and checks["allowed_plans"]["ok"]

    redis_up.start()  # on the same port, empty

    def recovered() -> bool:
        answers = on_every_worker(http, "GET", "/readyz")
        return all(response.status_code == 200 for response in answers.values())

    wait_for(recovered, 15, "every worker to reach Redis again")
    for response in on_every_worker(http, "GET", "/api/console_output").values():
        assert response.status_code == 200 and response.json()["success"] is True
    # RE Manager's published status flows again: the ingest leader resubscribed to Redis
    assert first_status_event(http)
    assert set(on_every_worker(http, "GET", "/readyz")) == workers, "a worker was replaced"


def test_auth_state_without_redis_is_503_and_logins_work_again(redis_up, re_manager, tmp_path, manager_idle):
    config = toy_config(secret_keys=["a-configured-secret-of-at-least-32-bytes"])
    with configured_app(re_manager, tmp_path, config, QS_GATEWAY_REDIS_URL=redis_up.url) as app:
        client = app.test_client()
        tokens = login(client, "bob")
        key = client.post("/api/auth/apikey", json={"expires_in": 600}, headers=bearer(tokens)).get_json()["secret"]
        assert client.get("/api/status", headers=api_key_header(key)).status_code == 200

        redis_up.stop()
        unavailable = UNAVAILABLE.format(port=redis_up.port)
        refused = [
            client.get("/api/status", headers=api_key_header(key)),
            client.post("/api/auth/provider/toy/token", data={"username": "bob", "password": "bob_password"}),
            client.post("/api/auth/session/refresh", json={"refresh_token": tokens["refresh_token"]}),
            client.post("/api/auth/apikey", json={"expires_in": 600}, headers=bearer(tokens)),
        ]
        for response in refused:
            assert response.status_code == 503, response.get_json()
            assert response.get_json()["detail"].startswith(unavailable)
        # an access token is honoured only while its session lives, which Redis knows (a worker
        # remembers a session it asked about for a second)
        wait_for(lambda: client.get("/api/status", headers=bearer(tokens)).status_code == 503, 10, "a token's 503")

        redis_up.start()  # empty: sessions and keys kept in Redis are gone

        def logs_in() -> bool:
            return (
                client.post(
                    "/api/auth/provider/toy/token", data={"username": "bob", "password": "bob_password"}
                ).status_code
                == 200
            )

        wait_for(logs_in, 10, "logins to work again")
        fresh = client.post("/api/auth/apikey", json={"expires_in": 600}, headers=bearer(login(client, "bob")))
        assert client.get("/api/status", headers=api_key_header(fresh.get_json()["secret"])).status_code == 200
        assert client.get("/api/status", headers=api_key_header(key)).status_code == 401
