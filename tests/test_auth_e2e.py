"""Logins under real gunicorn (three workers), driven by bluesky-queueserver-api in HTTP mode.

No secret key is configured: the workers share the one generated in Redis, so a token or key
issued by any worker is accepted by every other.
"""

from __future__ import annotations

import time

import httpx
import pytest
from bluesky_queueserver_api import BPlan
from bluesky_queueserver_api.http import REManagerAPI

from .auth_support import PASSWORDS, api_key_header, start_auth_gateway, toy_config
from .support import answers_of_every_worker, wait_for

WORKERS = 3
ACCESS_TOKEN_MAX_AGE = 3


@pytest.fixture(scope="module")
def auth_gateway(stack_dir, re_manager):
    config = toy_config(access_token_max_age=ACCESS_TOKEN_MAX_AGE)
    process, url = start_auth_gateway(stack_dir, re_manager, "auth-e2e", config, QS_GATEWAY_WORKERS=str(WORKERS))
    yield url
    process.stop()


@pytest.fixture
def RM(auth_gateway):
    rm = REManagerAPI(http_server_uri=auth_gateway, http_auth_provider="/toy/token")
    yield rm
    rm.close()


def test_client_logs_in_refreshes_by_itself_makes_keys_and_logs_out(RM, auth_gateway, manager_idle):
    RM.login("tom", password=PASSWORDS["tom"])
    access_token, _ = RM.auth_key
    assert RM.status()["manager_state"] == "idle"
    assert RM.whoami()["identities"][0]["id"] == "tom"

    def token_expired() -> bool:
        response = httpx.get(f"{auth_gateway}/api/status", headers={"Authorization": f"Bearer {access_token}"})
        return response.status_code == 401 and response.json()["detail"].startswith("Access token has expired")

    wait_for(token_expired, ACCESS_TOKEN_MAX_AGE + 10, "the access token to expire", period=0.25)
    # the client sees "401: Access token has expired", refreshes the session and retries
    added = RM.item_add(BPlan("count", ["det1"], num=1))
    assert added["item"]["user"] == "tom" and added["item"]["user_group"] == "primary"
    assert RM.auth_key[0] != access_token

    key = RM.apikey_new(expires_in=300, note="script")
    assert key["scopes"] == ["inherit"]
    script = REManagerAPI(http_server_uri=auth_gateway)
    try:
        script.set_authorization_key(api_key=key["secret"])
        assert script.status()["items_in_queue"] == 1
        assert script.apikey_info()["first_eight"] == key["first_eight"]
        RM.apikey_delete(first_eight=key["first_eight"])
        with pytest.raises(script.HTTPClientError, match="Invalid API key"):
            script.status(reload=True)  # past the client's own status cache
    finally:
        script.close()

    scopes = RM.api_scopes()
    assert scopes["roles"] == ["user"] and "write:queue:edit" in scopes["scopes"]
    RM.logout()
    with pytest.raises(RM.HTTPClientError, match="401"):
        RM.status(reload=True)


def test_wrong_password_and_scope_refusal_reach_the_client(RM, manager_idle):
    with pytest.raises(RM.HTTPClientError, match="Incorrect username or password"):
        RM.login("tom", password="wrong")
    RM.login("olga", password=PASSWORDS["olga"])  # observer
    assert RM.queue_get()["items"] == []
    with pytest.raises(RM.HTTPClientError, match="Not enough permissions"):
        RM.item_add(BPlan("count", ["det1"], num=1))


def _worker(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.headers["X-Gateway-Worker"]


def test_tokens_and_keys_issued_by_one_worker_are_accepted_by_all(auth_gateway, manager_idle):
    """Each request opens a new connection, so the kernel spreads them over the workers."""
    login_form = {"username": "alice", "password": PASSWORDS["alice"]}
    crossed: dict[str, set[str]] = {}  # worker that accepted → workers whose tokens it accepted
    key = None
    deadline = time.monotonic() + 60  # by time, not count: one worker can win accept() many times in a row
    while time.monotonic() < deadline:
        login = httpx.post(f"{auth_gateway}/api/auth/provider/toy/token", data=login_form)
        issuer = _worker(login)
        tokens = login.json()
        accepted = _worker(
            httpx.get(f"{auth_gateway}/api/status", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        )
        crossed.setdefault(accepted, set()).add(issuer)
        if key is None:
            made = httpx.post(
                f"{auth_gateway}/api/auth/apikey",
                json={"expires_in": 600},
                headers={"Authorization": f"Bearer {tokens['access_token']}"},
            )
            key = (made.json()["secret"], _worker(made))
        refreshed = httpx.post(
            f"{auth_gateway}/api/auth/session/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        crossed.setdefault(_worker(refreshed), set()).add(issuer)
        if len(crossed) == WORKERS and all(issuers - {worker} for worker, issuers in crossed.items()):
            break
    assert len(crossed) == WORKERS, f"reached only {sorted(crossed)}"
    for worker, issuers in crossed.items():
        assert issuers - {worker}, f"{worker} accepted only its own tokens"

    secret, key_issuer = key
    reached = answers_of_every_worker(
        lambda client: client.get(f"{auth_gateway}/api/queue/get", headers=api_key_header(secret)), WORKERS
    )
    assert all(response.status_code == 200 for response in reached.values())
    assert set(reached) - {key_issuer}
