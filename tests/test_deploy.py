"""deploy/nginx.conf in a real nginx, in front of real gunicorn on a unix socket.

The shipped file is used as it is; only its socket path, listen addresses and certificate paths
are replaced. Everything is checked through nginx over TLS: the real client, GET bodies, the
forwarded headers behind ProxyFix, the /qserver sub-path, request ids, upstream keep-alive and
the body size limit. Metrics across gunicorn workers and JSON logs are checked on the same
gateway.
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from bluesky_queueserver_api import BPlan
from bluesky_queueserver_api.http import REManagerAPI

from qs_gateway.serving.proxy import MAIN_CONF, NGINX, PREFIX, SHIPPED_SITE, render_site, start_nginx
from qs_gateway.serving.stack import free_port, start_gateway, stop_all, stopped_on_failure

from .support import API_KEY, answers_of_every_worker, self_signed_certificate, wait_for

__all__ = ["MAIN_CONF", "NGINX", "render_site", "start_nginx"]  # the other nginx tests take them from here


@dataclass
class Deployment:
    url: str  # https://localhost:port/qserver
    socket_path: Path
    metrics_url: str
    gateway_log: Path
    cert: Path
    workdir: Path

    def log_entries(self, logger: str) -> list[dict]:
        entries = []
        for line in self.gateway_log.read_text().splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("logger") == logger:
                    entries.append(entry)
        return entries


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, re_manager):
    workdir = tmp_path_factory.mktemp("deploy")
    cert, key = self_signed_certificate(workdir)
    socket_path = workdir / "gateway.sock"
    metrics_port = free_port()
    gateway, _ = start_gateway(
        workdir,
        re_manager.gateway_env(
            QS_GATEWAY_WORKERS="3",
            QS_GATEWAY_THREADS="4",
            QS_GATEWAY_PROXY_HOPS="1",
            QS_GATEWAY_LOG_FORMAT="json",
            QS_GATEWAY_WORKER_HEADER="1",
            QS_GATEWAY_METRICS_BIND=f"127.0.0.1:{metrics_port}",
            QSERVER_HTTP_CUSTOM_ROUTERS="tests.plugins.custom_blueprints.plain",
            QS_TEST_RELEASE_DIR=str(workdir),
            PYTHONPATH=str(Path(__file__).parents[1]),
        ),
        unix_socket=socket_path,
    )
    with stopped_on_failure(gateway):
        nginx, port = start_nginx(workdir, f"unix:{socket_path}", cert, key)
        url = f"https://localhost:{port}{PREFIX}"
        trust = ssl.create_default_context(cafile=cert)
        with stopped_on_failure(nginx):
            nginx.wait_until(lambda: httpx.get(f"{url}/healthz", verify=trust).status_code == 200, 60, "proxying")
    yield Deployment(url, socket_path, f"http://127.0.0.1:{metrics_port}", gateway.log_path, cert, workdir)
    stop_all([nginx, gateway])


@pytest.fixture
def https(deployment):
    trust = ssl.create_default_context(cafile=deployment.cert)
    with httpx.Client(base_url=deployment.url, verify=trust, timeout=10) as client:
        yield client


def test_the_real_client_through_nginx(deployment, manager_idle, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(deployment.cert))  # httpx in the client trusts our certificate
    RM = REManagerAPI(http_server_uri=deployment.url)
    RM.set_authorization_key(api_key=API_KEY)
    try:
        assert RM.status()["manager_state"] == "idle"
        RM.item_add(BPlan("count", ["det1"], num=1))
        RM.item_add(BPlan("count", ["det1"], num=2))
        # item_get sends its parameters as a GET body: nginx must pass it on
        assert RM.item_get(pos="back")["item"]["kwargs"]["num"] == 2
        assert RM.item_get(pos="front")["item"]["kwargs"]["num"] == 1
        assert len(RM.queue_get()["items"]) == 2
        RM.queue_clear()
    finally:
        RM.close()


def test_forwarded_headers_and_the_sub_path(deployment, https):
    # what the gateway builds from X-Forwarded-Proto/-Host/-Port/-Prefix: the public address
    denied = https.get("/api/status", headers={"X-Forwarded-Host": "evil.example", "X-Forwarded-Prefix": "/x"})
    assert denied.status_code == 401
    assert denied.headers["X-Tiled-Root"] == f"{deployment.url}/api"
    assert https.get("/openapi.json").json()["servers"] == [{"url": PREFIX}]
    page = https.get("/docs").text
    assert f'src="{PREFIX}/docs/swagger-ui-bundle.js"' in page
    assert https.get("/docs/swagger-ui-bundle.js").status_code == 200

    # X-Forwarded-For: ProxyFix trusts one hop, the address nginx saw, not what a client claims
    https.get("/api/status", headers={"X-Forwarded-For": "6.6.6.6", "X-Request-ID": "forwarded-for-check"})
    wait_for(lambda: deployment.log_entries("qs_gateway.request"), 5, "request lines")
    line = next(e for e in deployment.log_entries("qs_gateway.request") if e["request_id"] == "forwarded-for-check")
    assert line["remote_addr"] == "127.0.0.1" and line["path"] == "/api/status"


def test_request_ids_through_nginx(deployment, https):
    generated = https.get("/healthz").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)  # nginx's $request_id, passed to the gateway
    assert https.get("/healthz", headers={"X-Request-ID": "client-id-1"}).headers["X-Request-ID"] == "client-id-1"
    wait_for(
        lambda: generated in {e["request_id"] for e in deployment.log_entries("qs_gateway.request")},
        5,
        "the id in the gateway's log",
    )


def test_bodies_beyond_nginx_default_limit_reach_the_gateway(https):
    # nginx's default limit is 1 MiB; the shipped file allows what the gateway allows
    big = {"item": {"item_type": "plan", "name": "count"}, "padding": "x" * 2_000_000}
    response = https.post("/api/queue/item/add", json=big, headers={"Authorization": f"ApiKey {API_KEY}"})
    assert response.status_code == 400 and "padding" in response.json()["detail"]


def test_streams_pass_through_unbuffered(deployment, https):
    # The gateway marks streamed responses X-Accel-Buffering: no; nginx then sends each line
    # on at once. Buffered, the first line would wait for the stream's end, which waits for us.
    with https.stream("GET", "/facility/stream/unbuffered-check") as response:
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = response.iter_lines()
        assert json.loads(next(lines)) == {"line": 1}
        (deployment.workdir / "unbuffered-check").touch()
        assert json.loads(next(lines)) == {"line": 2, "released": True}


def _connected_to(socket_path: Path) -> int:
    """Connected unix sockets bound to ``socket_path`` (gunicorn's side of each connection)."""
    count = 0
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[7] == str(socket_path) and fields[5] == "03":
            count += 1
    return count


def test_upstream_connections_are_kept_alive(deployment, https):
    for _ in range(5):
        assert https.get("/healthz").status_code == 200
    kept = _connected_to(deployment.socket_path)
    assert kept >= 1  # idle, and still open: without keep-alive nginx closes each one
    for _ in range(20):
        assert https.get("/healthz").status_code == 200
    assert _connected_to(deployment.socket_path) <= kept + 1  # reused, not one per request


def test_timeouts_allow_ldap_logins():
    timeouts = re.findall(r"proxy_read_timeout (\d+)(s|h);", SHIPPED_SITE.read_text())
    seconds = [int(n) * (3600 if unit == "h" else 1) for n, unit in timeouts]
    assert min(seconds) > 60  # an LDAP login with a second factor may take 60 s


def test_metrics_across_workers_and_after_a_worker_dies(deployment, manager_idle):
    socket_url = "http://localhost"  # straight to gunicorn: no prefix
    transport = httpx.HTTPTransport(uds=str(deployment.socket_path))

    def scrape() -> str:
        return httpx.get(f"{deployment.metrics_url}/metrics").text

    def value(text: str, series: str) -> float:
        match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    status_series = 'qs_gateway_requests_total{endpoint="/api/status",method="GET",status="200"}'
    before = value(scrape(), status_series)
    sent = 0

    def status(client: httpx.Client) -> httpx.Response:
        nonlocal sent
        response = client.get(f"{socket_url}/api/status", headers={"Authorization": f"ApiKey {API_KEY}"})
        assert response.status_code == 200
        sent += 1
        return response

    def fresh() -> httpx.Client:
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(deployment.socket_path)))

    workers = answers_of_every_worker(status, workers=3, client=fresh)
    text = scrape()
    assert value(text, status_series) - before == sent  # every worker's requests, whichever answers
    assert value(text, "qs_gateway_pool_size") == 3 * 4

    # the metrics address serves metrics only; the API's /metrics needs the admin:metrics scope
    assert httpx.get(f"{deployment.metrics_url}/api/status").status_code == 404
    with httpx.Client(transport=transport) as client:
        assert client.get(f"{socket_url}/metrics", headers={"Authorization": f"ApiKey {API_KEY}"}).status_code == 401

    # a worker dies: its counts stay, its gauges go (gunicorn's child_exit marks it dead)
    os.kill(int(next(iter(workers)).rpartition(":")[2]), signal.SIGKILL)
    wait_for(lambda: value(scrape(), "qs_gateway_pool_size") == 2 * 4, 10, "the dead worker's gauges to go")
    assert value(scrape(), status_series) - before >= sent


def test_json_logs_with_one_audit_line_per_write(deployment, https):
    headers = {"Authorization": f"ApiKey {API_KEY}", "X-Request-ID": "audit-check-1"}
    https.post("/api/queue/item/add", json={"item": {"item_type": "plan", "name": "no_such_plan"}}, headers=headers)
    wait_for(lambda: any(e["request_id"] == "audit-check-1" for e in deployment.log_entries("qs_gateway.audit")),
             5, "the audit line")  # fmt: skip
    audit = [e for e in deployment.log_entries("qs_gateway.audit") if e["request_id"] == "audit-check-1"]
    assert len(audit) == 1
    assert audit[0]["user"] == "UNAUTHENTICATED_SINGLE_USER" and audit[0]["endpoint"] == "/api/queue/item/add"
    assert audit[0]["success"] is False and "no_such_plan" in audit[0]["msg"]
    assert API_KEY not in deployment.gateway_log.read_text()
    # gunicorn's own lines are JSON too
    assert any(e["message"].startswith("Bluesky HTTP Server started") for e in deployment.log_entries("gunicorn.error"))


def test_server_sent_events_through_nginx(https, manager_idle):
    headers = {"Authorization": f"ApiKey {API_KEY}"}
    # A status published now proves a worker subscribes to RE Manager at this moment (an earlier
    # test kills a worker, maybe the subscriber, and the takeover loses what is printed meanwhile).
    with https.stream("GET", "/api/status/events", headers=headers) as response:
        assert next(line for line in response.iter_lines() if line.startswith("data: "))
    with https.stream("GET", "/api/console_output/events", headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(lines) == ": connected"  # the first bytes are not held back by nginx
        # a queue edit makes RE Manager print; its lines must come through at once
        https.post("/api/queue/item/add", json={"item": {"item_type": "plan", "name": "count", "args": [["det1"]]}},
                   headers=headers)  # fmt: skip
        data = next(line for line in lines if line.startswith("data: "))
        assert set(json.loads(data[6:])) == {"time", "msg"}
    https.post("/api/queue/clear", headers=headers)


def test_websocket_upgrade_through_nginx(deployment, manager_idle):
    from websockets.sync.client import connect

    uri = deployment.url.replace("https://", "wss://") + "/api/status/ws"
    trust = ssl.create_default_context(cafile=deployment.cert)
    with connect(uri, ssl=trust, additional_headers={"Authorization": f"ApiKey {API_KEY}"}) as websocket:
        frame = json.loads(websocket.recv(timeout=10))
    assert frame["msg"]["status"]["manager_state"] == "idle"
