"""Health, readiness, metrics and logs of the app in-process (gunicorn: see test_deploy.py)."""

from __future__ import annotations

import json
import logging

import pytest

from qs_gateway.app import create_app
from qs_gateway.config import load_settings
from qs_gateway.extensions import EXTENSION_KEY
from qs_gateway.logs import JsonFormatter, TextFormatter
from qs_gateway.serving.stack import free_port

from .support import API_KEY, keyed_client, make_app, plan

METRICS_ROLE = """
api_access:
  args:
    roles:
      unauthenticated_single_user:
        scopes_add: [admin:metrics]
"""


def app_with_config(tmp_path, re_manager, yaml_text="", **env):
    config = tmp_path / "config.yml"
    config.write_text(yaml_text)
    return create_app(load_settings(environ=re_manager.gateway_env(QSERVER_HTTP_SERVER_CONFIG=str(config), **env)))


@pytest.fixture
def nowhere(re_manager):
    """An app whose RE Manager and Redis are on ports where nothing listens."""
    app = make_app(
        re_manager,
        QSERVER_ZMQ_CONTROL_ADDRESS=f"tcp://127.0.0.1:{free_port()}",
        QS_GATEWAY_REDIS_URL=f"redis://:SecretRedisPassword@127.0.0.1:{free_port()}/0",
        QS_GATEWAY_TIMEOUT_RECEIVE="0.3",
        QS_GATEWAY_TIMEOUT_SEND="0.2",
        QS_GATEWAY_BREAKER_THRESHOLD="2",
        QS_GATEWAY_METRICS="1",
    )
    yield app
    app.extensions[EXTENSION_KEY].close()


def test_healthz_and_readyz_when_all_is_well(anonymous, manager_idle):
    assert anonymous.get("/healthz").get_json() == {"alive": True}
    ready = anonymous.get("/readyz")
    assert ready.status_code == 200
    body = ready.get_json()
    assert body["ready"] is True
    assert body["checks"]["re_manager"] == {"ok": True, "manager_state": "idle"}
    assert body["checks"]["allowed_plans"]["ok"] is True and body["checks"]["allowed_plans"]["count"] > 10
    assert body["checks"]["redis"] == {"ok": True}


def test_readyz_names_every_reason_and_no_secret(nowhere):
    client = nowhere.test_client()
    assert client.get("/healthz").status_code == 200  # the process itself is fine
    response = client.get("/readyz")
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    body = response.get_json()
    assert body["ready"] is False
    checks = body["checks"]
    assert checks["re_manager"]["ok"] is False and "did not answer" in checks["re_manager"]["reason"]
    assert checks["allowed_plans"]["ok"] is False
    assert checks["redis"]["ok"] is False and "redis://:***@127.0.0.1" in checks["redis"]["reason"]
    assert body["detail"].startswith("Not ready: re_manager: RE Manager did not answer")
    assert "SecretRedisPassword" not in response.get_data(as_text=True)


def test_readyz_when_the_allowed_plans_list_is_empty(tmp_path, re_manager, manager_idle):
    # A user group RE Manager does not know has no allowed plans: requests would all be refused.
    app = app_with_config(tmp_path, re_manager, "resource_access:\n  args:\n    default_group: nobody_here\n")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["re_manager"]["ok"] is True and checks["redis"]["ok"] is True
    assert checks["allowed_plans"]["ok"] is False and "nobody_here" in checks["allowed_plans"]["reason"]


def test_metrics_need_the_admin_scope_and_count_requests(tmp_path, re_manager, manager_idle, client):
    # the single-user key has no admin scope unless a role edit gives it
    assert (
        make_app(re_manager, QS_GATEWAY_METRICS="1")
        .test_client()
        .get("/metrics", headers={"Authorization": f"ApiKey {API_KEY}"})
        .status_code
        == 401
    )
    assert client.get("/metrics").status_code == 404  # metrics off

    app = app_with_config(tmp_path, re_manager, METRICS_ROLE, QS_GATEWAY_METRICS="1")
    admin = keyed_client(app)
    for _ in range(3):
        assert admin.get("/api/status").status_code == 200
    admin.get("/api/no/such/path")
    assert admin.post("/api/queue/item/add", json={"item": plan()}).get_json()["success"] is True
    response = admin.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    assert 'qs_gateway_requests_total{endpoint="/api/status",method="GET",status="200"} 3.0' in text
    assert 'qs_gateway_requests_total{endpoint="<unmatched>",method="GET",status="404"} 1.0' in text
    assert 'qs_gateway_requests_total{endpoint="/api/queue/item/add",method="POST",status="200"} 1.0' in text
    assert 'qs_gateway_request_duration_seconds_count{endpoint="/api/status",method="GET"} 3.0' in text
    assert "qs_gateway_pool_size 4.0" in text
    assert "qs_gateway_pool_sockets_open 1.0" in text and "qs_gateway_pool_sockets_in_use 0.0" in text
    assert "qs_gateway_breaker_open 0.0" in text and "qs_gateway_manager_timeouts_total 0.0" in text
    app.extensions[EXTENSION_KEY].close()


def test_metrics_count_manager_timeouts_and_the_open_breaker(nowhere):
    metrics = nowhere.extensions[EXTENSION_KEY].metrics
    client = keyed_client(nowhere)
    assert [client.get("/api/queue/get").status_code for _ in range(3)] == [408, 408, 408]
    text = metrics.exposition()[0].decode()
    assert "qs_gateway_manager_timeouts_total 2.0" in text  # the third failed fast: breaker open
    assert "qs_gateway_breaker_open 1.0" in text


def test_request_id_request_line_and_audit_line(client, manager_idle, caplog):
    caplog.set_level(logging.INFO, logger="qs_gateway")
    response = client.post("/api/queue/item/add", json={"item": plan()}, headers={"X-Request-ID": "req-42.a"})
    assert response.headers["X-Request-ID"] == "req-42.a"
    audit = [r for r in caplog.records if r.name == "qs_gateway.audit"]
    assert len(audit) == 1
    assert audit[0].fields == {
        "request_id": "req-42.a",
        "user": "UNAUTHENTICATED_SINGLE_USER",
        "auth": "single_user_key",
        "endpoint": "/api/queue/item/add",
        "method": "POST",
        "status": 200,
        "success": True,
    }
    request_line = [r for r in caplog.records if r.name == "qs_gateway.request"][-1].fields
    assert request_line["path"] == "/api/queue/item/add" and request_line["status"] == 200

    caplog.clear()
    refused = client.post("/api/queue/item/add", json={"item": plan("no_such_plan")})
    assert refused.get_json()["success"] is False
    client.post("/api/queue/start", headers={"X-Request-ID": "bad id with spaces"})
    client.post("/api/queue/item/add", json={"item": {**plan(), "args": "det1"}})
    client.get("/api/status")  # a read: no audit line
    audit = [r.fields for r in caplog.records if r.name == "qs_gateway.audit"]
    assert [a["endpoint"] for a in audit] == ["/api/queue/item/add", "/api/queue/start", "/api/queue/item/add"]
    assert audit[0]["success"] is False and "no_such_plan" in audit[0]["msg"]
    assert len(audit[1]["request_id"]) == 32  # not the client's malformed id: a fresh one
    # a wrong value is refused in RE Manager's shape: 200, success false
    assert audit[2]["status"] == 200 and audit[2]["success"] is False and "args" in audit[2]["msg"]


def test_no_secret_reaches_the_logs(anonymous, manager_idle, caplog):
    caplog.set_level(logging.DEBUG)
    anonymous.get(f"/api/status?api_key={API_KEY}")
    anonymous.post("/api/queue/clear", headers={"Authorization": f"ApiKey {API_KEY}"})
    anonymous.post("/api/queue/clear", headers={"Authorization": "ApiKey WrongKeyValue"})
    anonymous.get("/api/status", headers={"Authorization": "Bearer SomeTokenValue"})
    formatted = "\n".join(TextFormatter().format(r) + JsonFormatter().format(r) for r in caplog.records)
    assert "api_key=***" in formatted
    for secret in (API_KEY, "WrongKeyValue", "SomeTokenValue"):
        assert secret not in formatted


def test_log_formatters():
    record = logging.LogRecord("qs_gateway.audit", logging.INFO, __file__, 1, "audit", None, None)
    record.fields = {"user": "bob", "msg": "two words", "status": 200}
    entry = json.loads(JsonFormatter().format(record))
    assert entry["logger"] == "qs_gateway.audit" and entry["level"] == "info" and entry["message"] == "audit"
    assert entry["user"] == "bob" and entry["status"] == 200 and entry["time"].endswith("Z")
    assert TextFormatter().format(record).endswith('audit user=bob msg="two words" status=200')


class CountedSocket:
    """A connection's socket as gunicorn puts it in the environ, counting getsockname() calls."""

    def __init__(self, local: tuple[str, int]) -> None:
        self.local = local
        self.asked = 0

    def getsockname(self) -> tuple[str, int]:
        self.asked += 1
        return self.local


def test_the_metrics_listener_asks_each_connection_once_which_address_it_was_accepted_on():
    from qs_gateway.api.hooks import MetricsListener

    def api(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"api"]

    class Exposition:
        def exposition(self):
            return b"metrics", "text/plain"

    listener = MetricsListener(api, "127.0.0.1:9102", Exposition)
    api_connection, metrics_connection = CountedSocket(("127.0.0.1", 8000)), CountedSocket(("127.0.0.1", 9102))
    answers = []
    for _ in range(3):
        for sock in (api_connection, metrics_connection):
            environ = {"gunicorn.socket": sock, "PATH_INFO": "/metrics"}
            answers.append(b"".join(listener(environ, lambda status, headers: None)))
    assert answers == [b"api", b"metrics"] * 3
    assert (api_connection.asked, metrics_connection.asked) == (1, 1)
