"""What the gateway does for every request (qs_gateway.api.hooks), in-process: browser-facing
headers, cookies and CSRF, CORS preflights, X-Tiled-Root, log lines that cannot be forged, the
audit line of compressed answers, and the test endpoints."""

from __future__ import annotations

import gzip
import io
import logging
import threading
from collections.abc import Iterator

import pytest

from qs_gateway.extensions import EXTENSION_KEY
from qs_gateway.logs import TextFormatter

from .support import API_KEY, keyed_client, make_app, plan, wait_for

KEY = {"Authorization": f"ApiKey {API_KEY}"}


@pytest.fixture
def build(re_manager) -> Iterator:
    apps = []

    def build_app(**env: str):
        app = make_app(re_manager, **env)
        apps.append(app)
        return app

    yield build_app
    for app in apps:
        app.extensions[EXTENSION_KEY].close()


@pytest.fixture
def text_log() -> Iterator[io.StringIO]:
    """What the gateway's loggers write in the text format during the test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("qs_gateway")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


# -- browser-facing headers -------------------------------------------------------------------------


def test_every_answer_carries_the_browser_headers(client, anonymous, manager_idle):
    answers = {
        "status": client.get("/api/status"),
        "refused": anonymous.get("/api/status"),
        "unknown": client.get("/api/no/such/path"),
        "auth": client.get("/api/auth/scopes"),
        "write": client.post("/api/queue/clear"),
        "document": anonymous.get("/openapi.json"),
        "asset": anonymous.get("/docs/swagger-ui.css"),
    }
    for name, answer in answers.items():
        assert answer.headers["X-Content-Type-Options"] == "nosniff", name
        assert answer.headers["Referrer-Policy"] == "no-referrer", name
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"], name
    for name in ("refused", "unknown", "auth", "write", "document"):
        assert answers[name].headers["Cache-Control"] == "no-store", name


def test_answers_with_an_etag_are_revalidated_not_stored(client, manager_idle):
    first = client.get("/api/queue/get")
    assert first.headers["Cache-Control"] == "private, no-cache"
    again = client.get("/api/queue/get", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.headers["Cache-Control"] == "private, no-cache"


def test_the_docs_page_has_a_content_security_policy(anonymous):
    page = anonymous.get("/docs")
    policy = page.headers["Content-Security-Policy"]
    nonce = policy.split("'nonce-", 1)[1].split("'", 1)[0]
    assert f'<script nonce="{nonce}">' in page.text
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
    assert "'unsafe-eval'" not in policy and "'unsafe-inline'" not in policy and "script-src 'self' 'nonce-" in policy
    assert anonymous.get("/docs").headers["Content-Security-Policy"] != policy  # a new nonce each time


# -- cookies and CSRF -------------------------------------------------------------------------------


def _cookie_header(response, name: str) -> str:
    return next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{name}="))


def test_cookies_are_secure_over_https(build, app):
    direct = app.test_client().get(f"/api/status?api_key={API_KEY}", base_url="https://localhost")
    for name in ("bluesky_httpserver_api_key", "bluesky_httpserver_csrf"):
        assert "Secure" in _cookie_header(direct, name)
    plain = app.test_client().get(f"/api/status?api_key={API_KEY}")
    assert "Secure" not in _cookie_header(plain, "bluesky_httpserver_api_key")
    # through a trusted proxy: X-Forwarded-Proto says https
    proxied = build(QS_GATEWAY_PROXY_HOPS="1").test_client()
    answer = proxied.get(f"/api/status?api_key={API_KEY}", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in _cookie_header(answer, "bluesky_httpserver_api_key")


def test_a_planted_csrf_cookie_does_not_pass(app, manager_idle):
    browser = app.test_client()
    browser.get(f"/api/status?api_key={API_KEY}")  # the key becomes a cookie
    # another site planted its own CSRF cookie and echoes it
    browser.set_cookie("bluesky_httpserver_csrf", "planted")
    refused = browser.post("/api/queue/clear", headers={"x-csrf": "planted"})
    assert refused.status_code == 403
    assert "does not belong to the API-key cookie" in refused.get_json()["detail"]
    # the answer replaced it with the key's own token, which passes
    token = browser.get_cookie("bluesky_httpserver_csrf").value
    assert token != "planted"
    assert browser.post("/api/queue/clear", headers={"x-csrf": token}).get_json()["success"] is True


# -- CORS -------------------------------------------------------------------------------------------


def test_cors_preflights_allow_only_the_headers_the_api_uses(build):
    client = build(QSERVER_HTTP_SERVER_ALLOW_ORIGINS="http://ui.example.org").test_client()
    preflight = client.options(
        "/api/queue/item/add",
        headers={
            "Origin": "http://ui.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-csrf, x-evil-header",
        },
    )
    assert preflight.status_code == 200
    allowed = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {"authorization", "content-type", "x-csrf"}
    assert preflight.headers["Access-Control-Allow-Credentials"] == "true"
    refused = client.options(
        "/api/queue/item/add",
        headers={"Origin": "http://evil.example.org", "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_cors_star_allows_any_origin_with_credentials(build):
    client = build(QSERVER_HTTP_SERVER_ALLOW_ORIGINS="*").test_client()
    answer = client.get("/api/status", headers={"Origin": "http://any.example.org", **KEY})
    assert answer.headers["Access-Control-Allow-Origin"] == "http://any.example.org"  # never "*" with credentials
    assert answer.headers["Access-Control-Allow-Credentials"] == "true"
    assert "X-Request-ID" in answer.headers["Access-Control-Expose-Headers"]


# -- X-Tiled-Root -----------------------------------------------------------------------------------


def test_x_tiled_root_does_not_echo_a_made_up_host(build, anonymous):
    refused = anonymous.get("/api/status", headers={"Host": "evil.example"})
    assert refused.status_code == 401
    assert "evil.example" not in refused.headers["X-Tiled-Root"]
    assert refused.headers["X-Tiled-Root"] == "http://localhost/api"  # where the connection came in
    trusting = build(QS_GATEWAY_TRUSTED_HOSTS="bl99-qs.example.org qs.example.org").test_client()
    named = trusting.get("/api/status", headers={"Host": "qs.example.org"})
    assert named.headers["X-Tiled-Root"] == "http://qs.example.org/api"
    made_up = trusting.get("/api/status", headers={"Host": "evil.example"})
    assert made_up.headers["X-Tiled-Root"] == "http://bl99-qs.example.org/api"


# -- logs -------------------------------------------------------------------------------------------


def test_a_url_cannot_forge_log_lines_or_fields(client, text_log, manager_idle):
    forged_line = "%0a[2026-01-01 00:00:00 +0000] [1] [INFO] qs_gateway.audit: audit user=admin"
    client.post(f"/api/queue/clear{forged_line}")
    client.get("/api/status%22%20user=admin%20x=%22")
    client.get("/api/status%00%0d%e2%80%a8")
    lines = text_log.getvalue().splitlines()
    assert len(lines) == 4  # a request line each, and the write's audit line
    assert all("user=admin" not in line.split('"')[0] for line in lines)
    assert "\\n[2026-01-01" in lines[0]
    assert 'path="/api/status\\" user=admin x=\\""' in text_log.getvalue()
    assert "\\x00\\r\\u2028" in lines[-1] and "\x00" not in text_log.getvalue()


def test_oidc_code_state_and_lock_keys_are_redacted(client, text_log):
    client.get("/api/status?code=the-code&state=the-state&lock_key=the-lock-key&user_code=BCDF-GHJK&reload=true")
    logged = text_log.getvalue()
    assert "code=***" in logged and "state=***" in logged and "lock_key=***" in logged
    assert "the-code" not in logged and "the-state" not in logged and "the-lock-key" not in logged
    assert "user_code=***" in logged and "BCDF-GHJK" not in logged  # the device sign-in's user code


def test_the_audit_line_of_a_large_compressed_write_answer(client, text_log, manager_idle):
    item = plan("no_such_plan", note="x" * 8000)  # RE Manager refuses it and sends the item back
    answer = client.post("/api/queue/item/add", json={"item": item}, headers={"Accept-Encoding": "gzip"})
    assert answer.headers["Content-Encoding"] == "gzip"
    assert b'"success":false' in gzip.decompress(answer.data).replace(b" ", b"")
    audit = [line for line in text_log.getvalue().splitlines() if "qs_gateway.audit" in line]
    assert len(audit) == 1
    assert "success=false" in audit[0] and 'msg="Failed to add an item' in audit[0] and "no_such_plan" in audit[0]


# -- the test endpoints -----------------------------------------------------------------------------


def test_one_sleep_at_a_time_per_worker(app):
    first = keyed_client(app)
    results = {}
    sleeping = threading.Thread(
        target=lambda: results.setdefault("first", first.get("/api/test/server/sleep", json={"time": 5}))
    )
    sleeping.start()
    try:
        second = keyed_client(app)
        answers = []

        def second_refused() -> bool:  # once the first has started sleeping (late on a busy machine)
            answers.append(second.get("/api/test/server/sleep", json={"time": 0}))
            return answers[-1].status_code == 503 or not sleeping.is_alive()

        wait_for(second_refused, 30, "the first sleep to start")
        refused = answers[-1]
        assert refused.status_code == 503, refused.get_json()
        assert int(refused.headers["Retry-After"]) >= 1
        assert "one at a time" in refused.get_json()["detail"]
    finally:
        sleeping.join(30)
    assert results["first"].get_json() == {"success": True, "msg": ""}
    assert keyed_client(app).get("/api/test/server/sleep", json={"time": 0}).status_code == 200


def test_the_test_endpoints_can_be_switched_off(build):
    client = keyed_client(build(QS_GATEWAY_TEST_ENDPOINTS="0"))
    assert client.get("/api/test/server/sleep", json={"time": 0}).status_code == 404
    assert client.post("/api/test/manager/kill").status_code == 404
    paths = client.get("/openapi.json").get_json()["paths"]
    assert not [path for path in paths if path.startswith("/api/test/")]
