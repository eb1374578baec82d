"""Logins, tokens, sessions and API keys, in-process against real Redis and RE Manager. What
roles, scopes and the configuration allow: tests/test_access_inprocess.py."""

from __future__ import annotations

import re

import pytest

from qs_gateway.auth.scopes import DEFAULT_ROLES
from qs_gateway.extensions import EXTENSION_KEY

from .auth_support import (
    NOT_ENOUGH,
    api_key_header,
    bearer,
    login,
    private_prefix,
    toy_config,
)
from .support import API_KEY, wait_for

# -- login, tokens, sessions -----------------------------------------------------------------


def test_login_answers_tokens_and_ignores_a_stale_authorization_header(toy):
    response = toy.post(
        "/api/auth/provider/toy/token",
        data={"username": "bob", "password": "bob_password"},
        headers={"Authorization": "Bearer expired-or-garbage"},
    )
    assert response.status_code == 200
    tokens = response.get_json()
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900.0 and isinstance(tokens["expires_in"], float)
    assert tokens["refresh_token_expires_in"] == 604800.0

    who = toy.get("/api/auth/whoami", headers=bearer(tokens)).get_json()
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", who["uuid"])
    assert who["identities"][0]["id"] == "bob" and who["identities"][0]["provider"] == "toy"
    assert who["roles"] == ["admin", "expert"]
    assert len(who["sessions"]) == 1 and who["sessions"][0]["revoked"] is False

    # the same user logging in again is the same principal, with a second session
    again = login(toy, "bob")
    who_again = toy.get("/api/auth/whoami", headers=bearer(again)).get_json()
    assert who_again["uuid"] == who["uuid"] and len(who_again["sessions"]) == 2


@pytest.mark.parametrize(
    "username, password, detail",
    [
        ("bob", "wrong", "Incorrect username or password"),
        ("nobody", "x", "Incorrect username or password"),
        ("cara", "cara_password", "User is not authorized to access the server"),
    ],
)
def test_login_refusals(toy, username, password, detail):
    response = toy.post("/api/auth/provider/toy/token", data={"username": username, "password": password})
    assert response.status_code == 401 and response.get_json()["detail"] == detail


def test_no_login_provider_in_single_user_mode(client):
    unknown = client.post("/api/auth/provider/nobody/token", data={"username": "bob", "password": "x"})
    assert unknown.status_code == 404 and unknown.get_json() == {"detail": "Not Found"}


def test_login_needs_a_known_password_provider_and_form_fields(toy):
    # as bluesky-httpserver, which has no route for a provider it does not have
    unknown = toy.post("/api/auth/provider/nope/token", data={"username": "bob", "password": "bob_password"})
    assert unknown.status_code == 404 and unknown.get_json() == {"detail": "Not Found"}
    missing = toy.post("/api/auth/provider/toy/token", data={"username": "bob"})
    assert missing.status_code == 400 and "password" in missing.get_json()["detail"]


def test_refresh_gives_new_tokens_for_the_same_session_and_revoke_ends_it(toy):
    tokens = login(toy, "alice")
    refreshed = toy.post(
        "/api/auth/session/refresh",
        json={"refresh_token": tokens["refresh_token"]},
        headers={"Authorization": "Bearer stale"},
    )
    assert refreshed.status_code == 200
    body = refreshed.get_json()
    assert body["expires_in"] == 900 and isinstance(body["expires_in"], int)
    assert toy.get("/api/status", headers=bearer(body)).status_code == 200

    who = toy.get("/api/auth/whoami", headers=bearer(body)).get_json()
    session_id = who["sessions"][0]["uuid"]
    # someone else cannot revoke it
    other = login(toy, "tom")
    assert toy.delete(f"/api/auth/session/revoke/{session_id}", headers=bearer(other)).status_code == 404
    assert toy.delete("/api/auth/session/revoke/not-a-uuid", headers=bearer(other)).status_code == 404
    revoked = toy.delete(f"/api/auth/session/revoke/{session_id.replace('-', '')}", headers=bearer(body))
    assert revoked.get_json() == {"success": True, "msg": ""}
    # the session's access tokens stop working too (at once on the worker that revoked it)
    refused = toy.get("/api/auth/whoami", headers=bearer(body))
    assert refused.status_code == 401 and refused.get_json()["detail"] == "Session has expired. Please re-authenticate."
    sessions = toy.get("/api/auth/whoami", headers=bearer(login(toy, "alice"))).get_json()["sessions"]
    assert [s["revoked"] for s in sessions if s["uuid"] == session_id] == [True]

    again = toy.post("/api/auth/session/refresh", json={"refresh_token": body["refresh_token"]})
    assert again.status_code == 401
    assert again.get_json()["detail"] == "Session has expired. Please re-authenticate."
    garbage = toy.post("/api/auth/session/refresh", json={"refresh_token": "garbage"})
    assert garbage.status_code == 401 and garbage.get_json()["detail"] == "Could not validate credentials"
    # an access token is not a refresh token
    wrong_kind = toy.post("/api/auth/session/refresh", json={"refresh_token": body["access_token"]})
    assert wrong_kind.status_code == 401


def test_expired_access_token_says_so_in_the_words_clients_look_for(build_app):
    client = build_app(toy_config(access_token_max_age=1)).test_client()
    tokens = login(client, "tom")
    assert client.get("/api/status", headers=bearer(tokens)).status_code == 200

    def expired() -> bool:
        response = client.get("/api/status", headers=bearer(tokens))
        return response.status_code == 401

    wait_for(expired, 10, "the access token to expire", period=0.2)
    detail = client.get("/api/status", headers=bearer(tokens)).get_json()["detail"]
    assert detail.startswith("Access token has expired")
    fresh = client.post("/api/auth/session/refresh", json={"refresh_token": tokens["refresh_token"]}).get_json()
    assert client.get("/api/status", headers=bearer(fresh)).status_code == 200


def test_a_session_ends_at_its_max_age(build_app):
    client = build_app(toy_config(session_max_age=1)).test_client()
    tokens = login(client, "tom")

    def refresh_refused() -> bool:
        response = client.post("/api/auth/session/refresh", json={"refresh_token": tokens["refresh_token"]})
        return response.status_code == 401

    wait_for(refresh_refused, 10, "the session to expire", period=0.2)
    response = client.post("/api/auth/session/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert response.get_json()["detail"] == "Session has expired. Please re-authenticate."


def test_bad_tokens_and_keys(toy):
    garbage = toy.get("/api/status", headers={"Authorization": "Bearer abc.def.ghi"})
    assert garbage.status_code == 401 and garbage.get_json()["detail"] == "Could not validate credentials"
    assert garbage.headers["WWW-Authenticate"] == "Bearer"
    for key in ("not-hex", "ab" * 36, API_KEY):  # the single-user key means nothing with providers
        response = toy.get("/api/status", headers=api_key_header(key))
        assert response.status_code == 401 and response.get_json()["detail"] == "Invalid API key", key
    scheme = toy.get("/api/status", headers={"Authorization": "Basic abc"})
    assert scheme.status_code == 400 and scheme.get_json()["detail"].startswith("Authorization header must include")
    # the scheme is case-insensitive
    tokens = login(toy, "tom")
    assert toy.get("/api/status", headers={"Authorization": f"bEARER {tokens['access_token']}"}).status_code == 200


def test_tokens_signed_with_a_rotated_key_stay_valid(build_app):
    old = build_app(toy_config(secret_keys=["old-secret-of-at-least-thirty-two-bytes"])).test_client()
    tokens = login(old, "tom")
    rotated = build_app(
        toy_config(secret_keys=["new-secret-of-at-least-thirty-two-bytes", "old-secret-of-at-least-thirty-two-bytes"]),
        QS_GATEWAY_REDIS_PREFIX=old.application.extensions[EXTENSION_KEY].store.prefix,
    ).test_client()
    assert rotated.get("/api/status", headers=bearer(tokens)).status_code == 200
    dropped = build_app(toy_config(secret_keys=["new-secret-of-at-least-thirty-two-bytes"])).test_client()
    assert dropped.get("/api/status", headers=bearer(tokens)).get_json()["detail"] == "Could not validate credentials"


K0, K1 = "k0" * 16, "k1" * 16


def test_secret_keys_from_the_environment(build_app):
    config = toy_config()
    prefix = private_prefix()  # the token's session must be where the other gateways look
    first = build_app(config, QSERVER_HTTP_SERVER_SERVER_SECRET_KEYS=f"{K1};{K0}", QS_GATEWAY_REDIS_PREFIX=prefix)
    tokens = login(first.test_client(), "tom")
    second = build_app(config, QSERVER_HTTP_SERVER_SERVER_SECRET_KEYS=K0, QS_GATEWAY_REDIS_PREFIX=prefix).test_client()
    assert second.get("/api/status", headers=bearer(tokens)).status_code == 401
    third = build_app(config, QSERVER_HTTP_SERVER_SERVER_SECRET_KEYS=K1, QS_GATEWAY_REDIS_PREFIX=prefix).test_client()
    assert third.get("/api/status", headers=bearer(tokens)).status_code == 200


# -- API keys --------------------------------------------------------------------------------


def test_api_keys_create_use_inspect_delete(toy):
    tokens = login(toy, "tom")
    # expires_in is required (null: the key never expires)
    assert toy.post("/api/auth/apikey", json={}, headers=bearer(tokens)).status_code == 400
    created = toy.post("/api/auth/apikey", json={"expires_in": 600, "note": "for a script"}, headers=bearer(tokens))
    assert created.status_code == 200
    key = created.get_json()
    assert re.fullmatch(r"[0-9a-f]{72}", key["secret"]) and key["first_eight"] == key["secret"][:8]
    assert key["scopes"] == ["inherit"] and key["note"] == "for a script"
    # datetimes as bluesky-httpserver writes them: naive UTC ISO text
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?", key["expiration_time"])

    assert toy.get("/api/status", headers=api_key_header(key["secret"])).status_code == 200
    # in the query string too, and then the browser gets it as a cookie
    query = toy.get(f"/api/status?api_key={key['secret']}")
    assert query.status_code == 200
    assert any(c.startswith("bluesky_httpserver_api_key=") for c in query.headers.getlist("Set-Cookie"))
    # a key in a cookie wins over a bearer token, as any API key does
    assert toy.get("/api/auth/apikey", headers=bearer(tokens)).status_code == 200
    toy.delete_cookie("bluesky_httpserver_api_key")

    info = toy.get("/api/auth/apikey", headers=api_key_header(key["secret"])).get_json()
    assert info["first_eight"] == key["first_eight"] and info["latest_activity"] is not None
    no_key = toy.get("/api/auth/apikey", headers=bearer(tokens))
    assert no_key.status_code == 401 and no_key.get_json()["detail"] == "No API key was provided with this request."
    scopes = toy.get("/api/auth/scopes", headers=api_key_header(key["secret"])).get_json()
    assert scopes["scopes"] == sorted(DEFAULT_ROLES["user"])

    who = toy.get("/api/auth/whoami", headers=api_key_header(key["secret"])).get_json()
    assert [k["first_eight"] for k in who["api_keys"]] == [key["first_eight"]]
    assert who["api_key_scopes"] == ["inherit"]

    # another principal cannot delete it
    alice = login(toy, "alice")
    assert toy.delete(f"/api/auth/apikey?first_eight={key['first_eight']}", headers=bearer(alice)).status_code == 404
    deleted = toy.delete(f"/api/auth/apikey?first_eight={key['first_eight']}", headers=bearer(tokens))
    assert deleted.get_json() == {"success": True, "msg": ""}
    gone = toy.get("/api/status", headers=api_key_header(key["secret"]))
    assert gone.status_code == 401 and gone.get_json()["detail"] == "Invalid API key"
    assert toy.delete("/api/auth/apikey?first_eight=abcdefgh", headers=bearer(tokens)).status_code == 404
    assert toy.delete("/api/auth/apikey", headers=bearer(tokens)).status_code == 400  # first_eight missing


def test_api_key_scopes_are_limited_by_the_issuer(toy):
    tokens = login(toy, "tom")  # role user
    too_wide = toy.post(
        "/api/auth/apikey",
        json={"expires_in": None, "scopes": ["read:status", "admin:apikeys"]},
        headers=bearer(tokens),
    )
    assert too_wide.status_code == 400
    assert too_wide.get_json()["detail"].startswith(
        "Requested scopes ['read:status', 'admin:apikeys'] must be a subset"
    )

    narrow = toy.post(
        "/api/auth/apikey",
        json={"expires_in": None, "scopes": ["read:status", "user:apikeys"]},
        headers=bearer(tokens),
    ).get_json()
    assert narrow["scopes"] == ["read:status", "user:apikeys"] and narrow["expiration_time"] is None
    narrow_key = api_key_header(narrow["secret"])
    assert toy.get("/api/status", headers=narrow_key).status_code == 200
    refused = toy.get("/api/queue/get", headers=narrow_key)
    assert refused.status_code == 401 and refused.get_json()["detail"].startswith(NOT_ENOUGH)

    # a key made with a fixed-scope key: at most those scopes; "inherit" copies them
    copied = toy.post("/api/auth/apikey", json={"expires_in": 60}, headers=narrow_key).get_json()
    assert copied["scopes"] == ["read:status", "user:apikeys"]
    wider = toy.post("/api/auth/apikey", json={"expires_in": 60, "scopes": ["read:queue"]}, headers=narrow_key)
    assert wider.status_code == 400


def test_api_key_expires_and_is_purged(toy):
    tokens = login(toy, "tom")
    key = toy.post("/api/auth/apikey", json={"expires_in": 1}, headers=bearer(tokens)).get_json()

    def expired() -> bool:
        return toy.get("/api/status", headers=api_key_header(key["secret"])).status_code == 401

    wait_for(expired, 10, "the API key to expire", period=0.2)
    who = toy.get("/api/auth/whoami", headers=bearer(tokens)).get_json()
    assert who["api_keys"] == []
    state = toy.application.extensions[EXTENSION_KEY].auth.state
    state.purge()
    assert (
        state.store.run(
            lambda r: r.scard(state.store.key("auth", "principal", who["uuid"].replace("-", ""), "apikeys"))
        )
        == 0
    )


def test_admin_reads_principals_and_makes_keys_for_others(toy):
    tom = login(toy, "tom")
    tom_uuid = toy.get("/api/auth/whoami", headers=bearer(tom)).get_json()["uuid"]
    bob = login(toy, "bob")  # admin + expert
    listed = toy.get("/api/auth/principal", headers=bearer(bob)).get_json()
    assert {p["identities"][0]["id"] for p in listed} >= {"tom", "bob"}
    one = toy.get(f"/api/auth/principal/{tom_uuid}", headers=bearer(bob)).get_json()
    assert one["uuid"] == tom_uuid and one["roles"] == ["user"]
    assert toy.get("/api/auth/principal/0123", headers=bearer(bob)).status_code == 404
    assert toy.get(f"/api/auth/principal/{'0' * 32}", headers=bearer(bob)).status_code == 404

    made = toy.post(f"/api/auth/principal/{tom_uuid}/apikey", json={"expires_in": 60}, headers=bearer(bob))
    assert made.status_code == 200
    as_tom = toy.get("/api/auth/whoami", headers=api_key_header(made.get_json()["secret"])).get_json()
    assert as_tom["uuid"] == tom_uuid
    # limited by tom's scopes, not bob's
    beyond = toy.post(
        f"/api/auth/principal/{tom_uuid}/apikey",
        json={"expires_in": 60, "scopes": ["write:config"]},
        headers=bearer(bob),
    )
    assert beyond.status_code == 400
    assert (
        toy.post(f"/api/auth/principal/{'0' * 32}/apikey", json={"expires_in": 60}, headers=bearer(bob)).status_code
        == 404
    )
    # tom is no administrator
    assert toy.get("/api/auth/principal", headers=bearer(tom)).status_code == 401
