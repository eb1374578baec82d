"""Every way a client logs in on a websocket, under gunicorn with a login provider.

bluesky-httpserver takes only ``Authorization: ApiKey``; its newer clients also send a bearer
token, ``?api_key=`` / ``?access_token=`` (browsers cannot set headers on a websocket), or a
first message ``{"type": "auth", ...}``. Refusals: a plain 401 for wrong header credentials,
close code 4001 for wrong credentials otherwise, 4401 when none came in time.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from qs_gateway.api.websockets import AUTH_MESSAGE_SECONDS, RECHECK_SECONDS
from qs_gateway.serving.stack import start_gateway

from .auth_support import PASSWORDS, private_prefix, toy_config, write_config
from .support import wait_for

ACCESS_TOKEN_MAX_AGE = 4


@pytest.fixture(scope="module")
def gateway(stack_dir, re_manager):
    config = write_config(stack_dir / "ws-logins", toy_config(access_token_max_age=ACCESS_TOKEN_MAX_AGE))
    env = re_manager.gateway_env(
        QSERVER_HTTP_SERVER_CONFIG=config, QS_GATEWAY_WORKERS="2", QS_GATEWAY_REDIS_PREFIX=private_prefix()
    )
    process, url = start_gateway(stack_dir, env, log_name="gateway-ws-logins.log")
    yield url
    process.stop()


def login(url: str, user: str = "tom") -> dict:
    response = httpx.post(f"{url}/api/auth/provider/toy/token", data={"username": user, "password": PASSWORDS[user]})
    assert response.status_code == 200, response.text
    return response.json()


def new_api_key(url: str, tokens: dict) -> dict:
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    response = httpx.post(f"{url}/api/auth/apikey", json={"expires_in": 600}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def ws_uri(url: str, path: str = "/api/status/ws", query: str = "") -> str:
    return url.replace("http://", "ws://") + path + (f"?{query}" if query else "")


def first_status(websocket) -> dict:
    frame = json.loads(websocket.recv(timeout=10))
    assert "status" in frame["msg"], frame
    return frame


def close_code(websocket, within: float) -> int:
    """The code the server closes with, waiting at most ``within`` seconds (frames are skipped)."""
    deadline = time.monotonic() + within
    with pytest.raises(ConnectionClosed) as closed:
        while time.monotonic() < deadline:
            websocket.recv(timeout=max(0.1, deadline - time.monotonic()))
        raise AssertionError(f"the socket stayed open for {within} s")
    return closed.value.rcvd.code


def test_header_api_key_and_bearer_token(gateway):
    tokens = login(gateway)
    key = new_api_key(gateway, tokens)
    for header in (f"ApiKey {key['secret']}", f"Bearer {tokens['access_token']}"):
        with connect(ws_uri(gateway), additional_headers={"Authorization": header}) as websocket:
            first_status(websocket)


@pytest.mark.parametrize("header", ["ApiKey wrong", "Bearer not.a.token"])
def test_wrong_header_credentials_get_a_plain_401(gateway, header):
    with pytest.raises(InvalidStatus) as refused:
        with connect(ws_uri(gateway), additional_headers={"Authorization": header}):
            pass
    assert refused.value.response.status_code == 401


def test_query_parameters_and_no_cookie_on_the_answer(gateway):
    tokens = login(gateway)
    key = new_api_key(gateway, tokens)
    for query in (f"api_key={key['secret']}", f"access_token={tokens['access_token']}"):
        with connect(ws_uri(gateway, "/api/console_output/ws", query)) as websocket:
            assert "Set-Cookie" not in websocket.response.headers
        with connect(ws_uri(gateway, query=query)) as websocket:
            first_status(websocket)
    for query in ("api_key=wrong", "access_token=not.a.token"):
        with connect(ws_uri(gateway, query=query)) as websocket:
            assert close_code(websocket, 5) == 4001


def test_first_message_logins(gateway):
    tokens = login(gateway)
    key = new_api_key(gateway, tokens)
    logins = ({"type": "auth", "api_key": key["secret"]}, {"type": "auth", "access_token": tokens["access_token"]})
    for message in logins:
        with connect(ws_uri(gateway)) as websocket:
            websocket.send(json.dumps(message))
            first_status(websocket)
    for message in ({"type": "auth", "api_key": "wrong"}, {"type": "hello"}, "not json"):
        with connect(ws_uri(gateway)) as websocket:
            websocket.send(message if isinstance(message, str) else json.dumps(message))
            assert close_code(websocket, 5) == 4001


def test_no_credentials_in_time_is_4401(gateway):
    with connect(ws_uri(gateway)) as websocket:
        assert close_code(websocket, AUTH_MESSAGE_SECONDS + 5) == 4401


def test_scopes_are_checked_as_for_http(gateway):
    admin = login(gateway, "adam")  # administrators do not read the monitor
    with pytest.raises(InvalidStatus) as refused:
        with connect(ws_uri(gateway), additional_headers={"Authorization": f"Bearer {admin['access_token']}"}):
            pass
    assert refused.value.response.status_code == 401
    with connect(ws_uri(gateway, query=f"access_token={admin['access_token']}")) as websocket:
        assert close_code(websocket, 5) == 4001


def test_an_expired_token_is_refused(gateway):
    tokens = login(gateway)
    expired = tokens["access_token"]
    wait_for(
        lambda: httpx.get(f"{gateway}/api/status", headers={"Authorization": f"Bearer {expired}"}).status_code == 401,
        ACCESS_TOKEN_MAX_AGE + 10,
        "the access token to expire",
        period=0.25,
    )
    with pytest.raises(InvalidStatus) as refused:
        with connect(ws_uri(gateway), additional_headers={"Authorization": f"Bearer {expired}"}):
            pass
    assert refused.value.response.status_code == 401
    assert "Access token has expired" in refused.value.response.body.decode()
    with connect(ws_uri(gateway, query=f"access_token={expired}")) as websocket:
        assert close_code(websocket, 5) == 4001


def test_a_key_deleted_while_its_socket_is_open_closes_it(gateway):
    tokens = login(gateway)
    key = new_api_key(gateway, tokens)
    with connect(ws_uri(gateway), additional_headers={"Authorization": f"ApiKey {key['secret']}"}) as websocket:
        first_status(websocket)
        deleted = httpx.delete(
            f"{gateway}/api/auth/apikey",
            params={"first_eight": key["first_eight"]},
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
        assert deleted.status_code == 200, deleted.text
        assert close_code(websocket, RECHECK_SECONDS + 5) == 4001


def test_a_key_deleted_while_its_http_streams_are_open_ends_them(gateway):
    tokens = login(gateway)
    key = new_api_key(gateway, tokens)
    headers = {"Authorization": f"ApiKey {key['secret']}"}
    within = RECHECK_SECONDS + 10
    with (
        httpx.stream("GET", f"{gateway}/api/status/events", headers=headers, timeout=within) as events,
        httpx.stream("GET", f"{gateway}/api/stream_console_output", headers=headers, timeout=within) as console,
    ):
        assert events.status_code == 200 and console.status_code == 200
        lines, chunks = events.iter_lines(), console.iter_bytes()
        assert next(lines) == ": connected"
        deleted = httpx.delete(
            f"{gateway}/api/auth/apikey",
            params={"first_eight": key["first_eight"]},
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
        assert deleted.status_code == 200, deleted.text
        deadline = time.monotonic() + within
        for _ in lines:  # statuses keep coming until the stream ends
            assert time.monotonic() < deadline, "the event stream stayed open"
        for _ in chunks:  # the console is quiet: this ends when the stream does (or times out)
            pass
    assert httpx.get(f"{gateway}/api/status/events", headers=headers).status_code == 401
