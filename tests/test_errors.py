"""Bad requests get a clear 4xx JSON answer with ``detail``, and nothing reaches RE Manager."""

from __future__ import annotations

import io

import orjson
import pytest

from qs_gateway.api.payload import MAX_JSON_DEPTH
from qs_gateway.extensions import EXTENSION_KEY

from .support import API_KEY, PLAN_COUNT, keyed_client, make_app, spy_on


@pytest.mark.parametrize(
    "method, path, payload, field",
    [
        ("GET", "/api/status", {"foo": 1}, "foo"),
        ("POST", "/api/queue/item/add", {"item": PLAN_COUNT, "position": 1}, "position"),
        ("POST", "/api/queue/start", {"lock": "x"}, "lock"),
        ("GET", "/api/queue/get", {"reload": True, "x": 1}, "x"),
        ("POST", "/api/re/pause", {"opt": "immediate"}, "opt"),
        ("GET", "/api/config/get", {"a": 1}, "a"),
        ("POST", "/api/lock", {"lock_key": "k", "queues": True}, "queues"),
    ],
)
def test_unknown_keys_are_400_with_the_reference_text(client, sent, method, path, payload, field):
    response = client.open(path, method=method, json=payload)
    assert response.status_code == 400
    body = response.get_json()
    assert f"Request contains keys the are not supported: {{'{field}'}}" in body["detail"]
    assert body["errors"][field] == ["Unknown field."]
    assert sent == []


@pytest.mark.parametrize(
    "path, payload, field",
    [
        # bluesky-httpserver (or its client library) checks these itself: 400
        ("/api/queue/item/add", {"item": "count"}, "item"),
        ("/api/queue/item/add/batch", {"items": [PLAN_COUNT, "count"]}, "items"),
        ("/api/queue/item/add/batch", {"items": "count"}, "items"),
        ("/api/re/runs", {"option": "x"}, "option"),
        ("/api/queue/start", {"lock_key": 5}, "lock_key"),
        ("/api/task/result", {"task_uid": ["a"]}, "task_uid"),
    ],
)
def test_values_the_reference_checks_itself_are_400_with_field_errors(client, sent, path, payload, field):
    response = client.open(path, method="GET" if path.startswith("/api/task/") else "POST", json=payload)
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert isinstance(body["detail"], str) and field in body["detail"]
    assert field in body["errors"]
    assert sent == []


# RE Manager's words for each method, and the rest of its failing reply
REFUSED_AS_RE_MANAGER_DOES = [
    ("/api/queue/item/add", {"item": {**PLAN_COUNT, "args": "det1"}}, "item.args", "Failed to add an item: ",
     {"qsize": None, "item": {**PLAN_COUNT, "args": "det1"}}),
    ("/api/queue/item/remove/batch", {"uids": "abc"}, "uids", "Failed to remove a batch of items: ",
     {"items": [], "qsize": None}),
    ("/api/queue/item/move", {"uid": 5, "pos_dest": 0}, "uid", "Failed to move the item: ",
     {"item": {}, "qsize": None}),
    ("/api/queue/item/update", {"item": PLAN_COUNT, "replace": "yes"}, "replace", "Failed to add an item: ",
     {"qsize": 0, "item": PLAN_COUNT}),
    ("/api/history/clear", {"size": -1}, "size", "Error: ", {}),
    ("/api/history/clear", {"size": "3"}, "size", "Error: ", {}),
    ("/api/re/pause", {"option": "later"}, "option", "Error: ", {}),
    ("/api/script/upload", {"script": ["x = 1"]}, "script", "Error: ", {"task_uid": None}),
    ("/api/manager/stop", {"option": "now"}, "option", "Error: ", {}),
    ("/api/function/execute", {"item": {**PLAN_COUNT}}, "item.item_type", "Error: ",
     {"item": PLAN_COUNT, "task_uid": None}),
    ("/api/queue/mode/set", {"mode": 5}, "mode", "Failed to set queue mode: ", {}),
    ("/api/environment/update", {"run_in_background": 1}, "run_in_background", "Error: ", {"task_uid": None}),
]  # fmt: skip


@pytest.mark.parametrize("path, payload, field, prefix, rest", REFUSED_AS_RE_MANAGER_DOES)
def test_values_the_reference_passes_on_are_refused_in_re_managers_shape(
    client, sent, path, payload, field, prefix, rest
):
    response = client.post(path, json=payload)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["success"] is False
    assert body["msg"].startswith(prefix) and f"'{field}'" in body["msg"]
    assert {key: body[key] for key in rest} == rest
    assert list(body) == ["success", "msg", *rest, "errors"]
    assert field.split(".")[0] in body["errors"]
    assert sent == []


def test_a_batch_with_refused_items_is_answered_item_by_item(client, sent, manager_idle):
    bad = {"item_type": "plan", "name": "count", "args": "det1", "kwargs": {"num": 1}}
    body = client.post("/api/queue/item/add/batch", json={"items": [PLAN_COUNT, bad, {}]}).get_json()
    assert body["success"] is False
    assert body["msg"].startswith("Failed to add all items: validation of 2 out of 3 submitted items failed. ")
    assert "'items.1.args'" in body["msg"] and "'items.2.item_type'" in body["msg"]
    assert body["qsize"] == 0 and body["items"] == [PLAN_COUNT, bad, {}]
    assert body["results"][0] == {"success": True, "msg": ""}
    refused = "Failed to add a plan: Invalid value of 'args': Not a valid list."
    assert body["results"][1] == {"success": False, "msg": refused}
    assert body["results"][2]["msg"].startswith("Failed to add a plan: ") and "'item_type'" in body["results"][2]["msg"]
    assert body["errors"]["items"]["1"] == {"args": ["Not a valid list."]}
    assert set(sent) <= {"status"}  # the queue's size, as RE Manager reports it


# RE Manager prepares a new item (a new uid, the user) before it places it, and its refusal of a
# bad place carries that item: a refusal made by the gateway could not carry the same uid-bearing
# item, so the place is sent on and RE Manager's own answer comes back.
@pytest.mark.parametrize(
    "path, place",
    [
        ("/api/queue/item/add", {"pos": "some"}),
        ("/api/queue/item/add", {"before_uid": 5}),
        ("/api/queue/item/add/batch", {"pos": "x"}),
        ("/api/queue/item/add/batch", {"after_uid": "no-such-item"}),
    ],
)
def test_a_bad_place_for_new_items_is_re_managers_to_refuse(client, sent, manager_idle, path, place):
    batch = path.endswith("/batch")
    payload = {"items": [PLAN_COUNT]} if batch else {"item": PLAN_COUNT}
    body = client.post(path, json={**payload, **place}).get_json()
    assert sent == ["queue_item_add_batch" if batch else "queue_item_add"]
    assert body["success"] is False and body["msg"].startswith("Failed to add")
    assert "errors" not in body  # RE Manager's reply, as it made it
    if not batch:
        assert body["qsize"] is None and body["item"]["item_uid"]  # the uid RE Manager gave it


def test_missing_required_keys(client, sent):
    assert "enable" in client.post("/api/queue/autostart", json={}).get_json()["detail"]
    assert client.post("/api/queue/item/update", json={}).status_code == 400
    lock = client.post("/api/lock", json={"environment": True})
    assert lock.status_code == 400 and "Lock key is not set" in lock.get_json()["detail"]
    assert client.post("/api/unlock", json={}).status_code == 400
    assert sent == []


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'"text"', "application/json"),
        (b"\xff\xfe{}", "application/json"),
        (b'{"a": 1}', "application/xml"),
        (b"[" * 5000 + b"]" * 5000, "application/json"),
        (b'{"lock_key": "\xff"}', "application/json"),
        (b'{"lock_key": "\\ud800"}', "application/json"),
        (b"\x0c", "application/json"),
        (b'{"a": 1}', "multipart/form-data; boundary=x"),
        (b'{"a": 1}', "application/octet-stream"),
        (b'{"a": 1}', "text/html"),
    ],
)
def test_unreadable_bodies_are_422_with_string_detail(client, sent, body, content_type):
    response = client.post("/api/queue/item/add", data=body, headers={"Content-Type": content_type})
    assert response.status_code == 422
    assert isinstance(response.get_json()["detail"], str)
    assert sent == []


def test_body_without_content_type_is_read_as_json(client, manager_idle):
    response = client.get("/api/status", data=b'{"reload": true}')
    assert response.status_code == 200 and response.get_json()["msg"].startswith("RE Manager")
    empty = client.post("/api/queue/clear", data=b"")
    assert empty.get_json()["success"] is True


def test_no_key_wrong_key_and_malformed_authorization(anonymous, sent):
    response = anonymous.get("/api/status")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer scope="read:status"'
    assert response.headers["X-Tiled-Root"] == "http://localhost/api"
    assert response.get_json()["detail"] == (
        "Not enough permissions. Requires scopes ['read:status']. Request had scopes []"
    )
    wrong = anonymous.get("/api/status", headers={"Authorization": "ApiKey not-the-key"})
    assert wrong.status_code == 401 and wrong.get_json()["detail"] == "Invalid API key"
    query = anonymous.get("/api/status?api_key=wrong")
    assert query.status_code == 401 and query.get_json()["detail"] == "Invalid API key"
    token = anonymous.get("/api/status", headers={"Authorization": "Bearer abc.def.ghi"})
    assert token.status_code == 401 and token.get_json()["detail"] == "Could not validate credentials"
    scheme = anonymous.get("/api/status", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert scheme.status_code == 400 and scheme.get_json()["detail"].startswith("Authorization header must include")
    assert sent == []


def test_key_accepted_in_any_scheme_casing_and_query(anonymous, manager_idle):
    assert anonymous.get("/api/status", headers={"Authorization": f"apikey {API_KEY}"}).status_code == 200
    assert anonymous.get(f"/api/status?api_key={API_KEY}").status_code == 200


def test_anonymous_access_gives_the_public_role_only(re_manager, manager_idle):

    app = make_app(re_manager, QSERVER_HTTP_SERVER_ALLOW_ANONYMOUS_ACCESS="1")
    try:
        public = app.test_client()
        assert public.get("/api/status").status_code == 200
        refused = public.get("/api/queue/get")
        assert refused.status_code == 401
        assert refused.get_json()["detail"] == (
            "Not enough permissions. Requires scopes ['read:queue']. Request had scopes ['read:status']"
        )
        # invalid credentials are still refused
        assert public.get("/api/status", headers={"Authorization": "ApiKey nope"}).status_code == 401
    finally:
        app.extensions[EXTENSION_KEY].close()


def test_unknown_route_and_wrong_method(client, sent):
    missing = client.get("/api/no/such/endpoint")
    assert missing.status_code == 404 and missing.get_json() == {"detail": "Not Found"}
    wrong = client.post("/api/status")
    assert wrong.status_code == 405 and wrong.get_json() == {"detail": "Method Not Allowed"}
    assert "GET" in wrong.headers["Allow"]
    assert client.get("/api/queue/start").status_code == 405
    assert sent == []


@pytest.mark.parametrize("path", ["/api/status/", "/api/queue/get/", "/api/", "/api", "/api/ping/"])
def test_trailing_slashes_answer_without_redirect(client, manager_idle, path):
    response = client.get(path)
    assert response.status_code == 200
    assert "Location" not in response.headers


def test_exhausted_pool_is_503_with_retry_after(client, app, monkeypatch):
    from qs_gateway.transport import PoolExhausted

    def exhausted(*args, **kwargs):
        raise PoolExhausted(waited=1.0)

    monkeypatch.setattr(app.extensions[EXTENSION_KEY].pool, "request", exhausted)
    response = client.post("/api/queue/start")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "busy" in response.get_json()["detail"]


def test_body_over_the_limit_is_413_with_detail(re_manager):

    app = make_app(re_manager, QS_GATEWAY_MAX_BODY_BYTES="2048")
    try:
        sent = spy_on(app)
        client = keyed_client(app)
        big = orjson.dumps({"script": "x" * 5000})
        declared = client.post("/api/script/upload", data=big, content_type="application/json")
        # without Content-Length (chunked, as gunicorn passes it on): cut off while reading
        chunked = client.post(
            "/api/script/upload",
            input_stream=io.BytesIO(big),
            content_type="application/json",
            headers={"Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input_terminated": True},
        )
        for response in (declared, chunked):
            assert response.status_code == 413
            assert response.get_json() == {"detail": "Request body too large: the limit is 2048 bytes"}
        assert sent == []
    finally:
        app.extensions[EXTENSION_KEY].close()


def nested(levels: int) -> object:
    """Lists in lists, ``levels`` deep."""
    value: object = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_deep_nesting_is_422_before_anything_is_sent(client, sent):
    # the body, item, kwargs and md are four levels; md's lists make up the rest
    too_deep = {"item": {**PLAN_COUNT, "kwargs": {"md": nested(MAX_JSON_DEPTH - 2)}}}
    response = client.post("/api/queue/item/add", json=too_deep)
    assert response.status_code == 422
    assert response.get_json() == {"detail": f"Request body is nested deeper than {MAX_JSON_DEPTH} levels"}
    assert sent == []


HUGE = "u" * 1_000_000  # well under the body limit

# (method, path, payload, errors, answered): "400" where bluesky-httpserver checks the value itself,
# "refusal" where it passes the value on and RE Manager refuses it
HUGE_IDENTIFIERS = [
    ("POST", "/api/queue/item/add", {"item": {**PLAN_COUNT, "name": HUGE}}, {"item": {"name": ...}}, "refusal"),
    ("POST", "/api/queue/item/add", {"item": PLAN_COUNT, "before_uid": HUGE}, {"before_uid": ...}, "refusal"),
    ("POST", "/api/queue/item/add", {"item": {**PLAN_COUNT, "item_uid": HUGE}}, {"item": {"item_uid": ...}}, "refusal"),
    ("POST", "/api/queue/item/remove/batch", {"uids": ["a", HUGE]}, {"uids": {"1": ...}}, "refusal"),
    ("POST", "/api/queue/item/move", {"uid": HUGE, "pos_dest": 0}, {"uid": ...}, "refusal"),
    ("GET", "/api/queue/item/get", {"uid": HUGE}, {"uid": ...}, "refusal"),
    ("POST", "/api/queue/start", {"lock_key": HUGE}, {"lock_key": ...}, "400"),
    ("POST", "/api/lock", {"lock_key": HUGE, "queue": True}, {"lock_key": ...}, "400"),
    ("POST", "/api/lock", {"lock_key": "k", "queue": True, "note": HUGE}, {"note": ...}, "400"),
    ("POST", "/api/unlock", {"lock_key": HUGE}, {"lock_key": ...}, "400"),
    ("GET", "/api/task/status", {"task_uid": [HUGE]}, {"task_uid": ...}, "400"),
    ("GET", "/api/task/result", {"task_uid": HUGE}, {"task_uid": ...}, "400"),
    ("GET", "/api/console_output_update", {"last_msg_uid": HUGE}, {"last_msg_uid": ...}, "400"),
]


@pytest.mark.parametrize("method, path, payload, errors, answered", HUGE_IDENTIFIERS)
def test_huge_identifiers_are_field_errors(client, sent, method, path, payload, errors, answered):
    response = client.open(path, method=method, json=payload)
    body = response.get_json()
    assert _same_keys(body["errors"], errors), body["errors"]
    text = body["detail"] if answered == "400" else body["msg"]
    assert response.status_code == (400 if answered == "400" else 200)
    assert "Longer than" in text or "Length must be" in text
    assert HUGE not in text and HUGE not in str(body["errors"])  # named, not echoed
    assert sent == []


def _same_keys(errors: dict, expected: dict) -> bool:
    """``errors`` names exactly the fields of ``expected`` (``...`` stands for any message)."""
    if expected is ...:
        return True
    return (
        isinstance(errors, dict)
        and errors.keys() == expected.keys()
        and all(_same_keys(errors[key], value) for key, value in expected.items())
    )


def test_huge_key_and_huge_script(client, sent, manager_closed):
    unknown = client.post("/api/queue/clear", json={HUGE: 1})
    # named, but not echoed whole: a megabyte of key does not come back
    cut = "u" * 63 + "\u2026"
    assert unknown.status_code == 400 and unknown.get_json() == {
        "detail": f"Request contains keys the are not supported: {{'{cut}'}}.",
        "errors": {cut: ["Unknown field."]},
    }
    assert sent == []
    # scripts (like plan parameters and permissions) are legitimately large: RE Manager judges
    script = client.post("/api/script/upload", json={"script": "# " + HUGE})
    assert script.status_code == 200 and script.get_json()["success"] is False  # environment closed
    assert sent == ["script_upload"]


def test_many_unknown_keys_are_counted_not_listed(client, sent):
    response = client.post("/api/queue/item/add", json={"item": PLAN_COUNT, **{f"k{n:05}": n for n in range(10_000)}})
    assert response.status_code == 400 and len(response.data) < 10_000
    body = response.get_json()
    assert list(body["errors"]) == [*(f"k{n:05}" for n in range(50)), "\u2026"]
    assert body["errors"]["\u2026"] == ["9950 more problems not shown."]
    assert body["detail"].startswith("Request contains keys the are not supported: {'k00000', 'k00001',")
    assert body["detail"].endswith("'k00049'}. 9950 more problems not shown.")

    nested = client.post("/api/queue/item/remove/batch", json={"uids": list(range(60))})
    assert nested.status_code == 200 and nested.get_json()["success"] is False
    uid_errors = nested.get_json()["errors"]["uids"]
    assert len(uid_errors) == 51 and uid_errors["\u2026"] == ["10 more problems not shown."]
    assert sent == []
