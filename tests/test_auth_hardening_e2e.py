"""Sessions, refresh tokens, key scopes and throttling under real gunicorn (three workers), driven
by bluesky-queueserver-api in HTTP mode, as beamline clients use the gateway (issue 13, items 3-6).
"""

from __future__ import annotations

import httpx
import pytest
from bluesky_queueserver_api.http import REManagerAPI

from .auth_support import PASSWORDS, start_auth_gateway, toy_config
from .support import answers_of_every_worker, wait_for

WORKERS = 3
SESSION_EXPIRED = "Session has expired. Please re-authenticate."


@pytest.fixture(scope="module")
def gateway(stack_dir, re_manager):
    process, url = start_auth_gateway(
        stack_dir,
        re_manager,
        "auth-hardening-e2e",
        toy_config(),
        QS_GATEWAY_WORKERS=str(WORKERS),
        QS_GATEWAY_REFRESH_REUSE_GRACE="0",  # every reuse of a spent refresh token is theft here
        QS_GATEWAY_LOGIN_FAILURES_PER_USER="3/hour",
    )
    yield url
    process.stop()


@pytest.fixture
def clients(gateway):
    made = []

    def client(username: str | None = None) -> REManagerAPI:
        rm = REManagerAPI(http_server_uri=gateway, http_auth_provider="/toy/token")
        made.append(rm)
        if username is not None:
            rm.login(username, password=PASSWORDS[username])
        return rm

    yield client
    for rm in made:
        rm.close()


def _answers(url: str, token: str) -> dict[str, httpx.Response]:
    headers = {"Authorization": f"Bearer {token}"}
    return answers_of_every_worker(lambda client: client.get(f"{url}/api/status", headers=headers), WORKERS)


def _refused_by_every_worker(url: str, token: str) -> bool:
    answers = _answers(url, token).values()
    return all(a.status_code == 401 and a.json()["detail"] == SESSION_EXPIRED for a in answers)


def test_revoked_and_logged_out_sessions_tokens_are_refused_by_every_worker(gateway, clients, manager_idle):
    tom_elsewhere = clients("tom")
    sessions_before = {s["uuid"] for s in tom_elsewhere.whoami()["sessions"]}
    tom = clients("tom")
    (session,) = {s["uuid"] for s in tom.whoami()["sessions"]} - sessions_before
    token = tom.auth_key[0]
    assert all(a.status_code == 200 for a in _answers(gateway, token).values())  # every worker knows it alive

    tom_elsewhere.session_revoke(session_uid=session)
    wait_for(lambda: _refused_by_every_worker(gateway, token), 15, "every worker to refuse the token")
    with pytest.raises(tom.HTTPClientError, match=SESSION_EXPIRED.split(".")[0]):
        tom.status(reload=True)  # not "Access token has expired": the client does not try to refresh

    other_token = tom_elsewhere.auth_key[0]
    tom_elsewhere.logout()
    wait_for(lambda: _refused_by_every_worker(gateway, other_token), 15, "every worker to refuse after logout")


def test_the_client_refreshes_with_a_fresh_token_and_a_stolen_one_ends_the_session(gateway, clients, manager_idle):
    tom = clients("tom")
    spent = tom.auth_key[1]
    tom.session_refresh()
    assert tom.auth_key[1] != spent and tom.status(reload=True)["manager_state"] == "idle"

    thief = clients()
    with pytest.raises(thief.HTTPClientError, match="401"):
        thief.session_refresh(refresh_token=spent)
    wait_for(lambda: _refused_by_every_worker(gateway, tom.auth_key[0]), 15, "the session to end everywhere")
    with pytest.raises(tom.HTTPClientError, match=SESSION_EXPIRED.split(".")[0]):
        tom.session_refresh()


def test_wrong_passwords_through_the_client_are_throttled(clients):
    eve = clients()
    for _ in range(3):
        with pytest.raises(eve.HTTPClientError, match="Incorrect username or password"):
            eve.login("eve", password="wrong")
    with pytest.raises(eve.HTTPClientError, match="429.*Too many failed logins"):
        eve.login("eve", password=PASSWORDS["eve"])
    clients("alice")  # another user logs in from the same address


def test_a_key_the_client_makes_with_a_fixed_scope_key_stays_within_it(clients):
    bob = clients("bob")
    narrow = ["admin:apikeys", "user:apikeys"]
    secret = bob.apikey_new(expires_in=600, scopes=narrow)["secret"]
    with_key = clients()
    with_key.set_authorization_key(api_key=secret)
    bob_uuid = bob.whoami()["uuid"]
    assert with_key.apikey_new(expires_in=60, principal_uid=bob_uuid)["scopes"] == narrow
    assert with_key.apikey_new(expires_in=60)["scopes"] == narrow


def test_the_clients_system_info_monitor_works_with_a_token(clients, manager_idle):
    """It makes a 60 s API key with the token, opens the websocket with it, and deletes the key."""
    tom = clients("tom")
    try:
        tom.system_info_monitor.enable()
        message = tom.system_info_monitor.next_msg(timeout=10)
        assert message["msg"]["status"]["manager_state"] in ("idle", "executing_queue")
    finally:
        tom.system_info_monitor.disable()
    wait_for(lambda: tom.whoami()["api_keys"] == [], 10, "the temporary key to be deleted")
