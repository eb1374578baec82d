"""Logins, sessions, API keys, roles and scopes, in-process against real Redis and RE Manager."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qs_gateway.api import endpoint_specs
from qs_gateway.auth.scopes import DEFAULT_ROLES
from qs_gateway.config import ConfigError
from qs_gateway.extensions import EXTENSION_KEY

from .auth_support import (
    PASSWORDS,
    ROLES,
    api_key_header,
    bearer,
    login,
    private_prefix,
    sample_path,
    toy_config,
)
from .support import API_KEY, plan, wait_for

NOT_ENOUGH = "Not enough permissions"


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


# -- roles and scopes ------------------------------------------------------------------------


@pytest.mark.parametrize("username", sorted(ROLES))
def test_each_default_role_gets_its_scopes_and_is_refused_the_others(toy, username):
    tokens = login(toy, username)
    roles = ROLES[username] if isinstance(ROLES[username], list) else [ROLES[username]]
    expected = set().union(*(DEFAULT_ROLES[role] for role in roles))
    scopes = toy.get("/api/auth/scopes", headers=bearer(tokens)).get_json()
    assert scopes == {"roles": sorted(roles), "scopes": sorted(expected)}
    scope_of = {(f"/api{spec.rule}", method): spec.scope for spec in endpoint_specs() for method in spec.methods}
    refused = 0
    for rule in toy.application.url_map.iter_rules():
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            scope = scope_of.get((rule.rule, method))
            if not scope or scope in expected:
                continue
            path = sample_path(toy.application, rule)
            response = toy.open(path, method=method, json={}, headers=bearer(tokens))
            assert response.status_code == 401, (path, response.get_json())
            assert response.get_json()["detail"].startswith(f"{NOT_ENOUGH}. Requires scopes ['{scope}']")
            refused += 1
    assert refused > 0


def test_role_edits_change_what_users_may_do(build_app, manager_idle):
    roles = {
        "observer": {"scopes_add": "write:queue:edit"},
        "user": {"scopes_remove": ["write:queue:edit"]},
        "reader": {"scopes_set": ["READ:STATUS"]},
        "advanced": None,
    }
    users = {
        "olga": {"roles": "observer"},
        "tom": {"roles": "user"},
        "rita": {"roles": "Reader"},
        "alice": {"roles": "advanced"},
    }
    config = toy_config(users=users, roles=roles)
    config["authentication"]["providers"][0]["args"]["users_to_passwords"]["rita"] = "rita_password"
    client = build_app(config).test_client()

    olga = bearer(login(client, "olga"))
    assert client.post("/api/queue/item/add", json={"item": plan()}, headers=olga).get_json()["success"] is True
    tom = bearer(login(client, "tom"))
    assert client.post("/api/queue/item/add", json={"item": plan()}, headers=tom).status_code == 401
    rita = bearer(login(client, "rita", "rita_password"))
    assert client.get("/api/auth/scopes", headers=rita).get_json() == {"roles": ["reader"], "scopes": ["read:status"]}
    alice = bearer(login(client, "alice"))
    assert client.get("/api/auth/scopes", headers=alice).get_json()["scopes"] == []


def test_user_and_group_sent_to_re_manager_come_from_principal_and_policy(build_app, manager_idle):
    users = {
        "tom": {"roles": "user", "displayed_name": "Tom Jones", "email": "tom@example.org"},
        "alice": {"roles": "advanced"},
    }
    config = toy_config(users=users)
    config["resource_access"] = {
        "policy": "bluesky_httpserver.authorization:DefaultResourceAccessControl",
        "args": {"default_group": "test_user"},
    }
    client = build_app(config).test_client()
    tom = bearer(login(client, "tom"))
    # what the client says about itself is overwritten
    added = client.post(
        "/api/queue/item/add", json={"item": plan(), "user": "mallory", "user_group": "root"}, headers=tom
    )
    assert added.status_code == 400  # user / user_group are not payload keys
    added = client.post("/api/queue/item/add", json={"item": plan()}, headers=tom).get_json()
    assert added["success"] is True, added
    alice = bearer(login(client, "alice"))
    client.post("/api/queue/item/add", json={"item": plan()}, headers=alice)
    queue = manager_idle.queue_get()["items"]  # as RE Manager holds it
    assert [(i["user"], i["user_group"]) for i in queue] == [
        ('tom "Tom Jones <tom@example.org>"', "test_user"),
        ("alice", "test_user"),
    ]
    # the group also chooses the allowed plans: test_user may not use adaptive_scan
    refused = client.post("/api/queue/item/add", json={"item": plan("adaptive_scan")}, headers=tom).get_json()
    assert refused["success"] is False


def test_anonymous_access_gives_the_public_role_only(build_app):
    client = build_app(toy_config(anonymous=True)).test_client()
    assert client.get("/api/status").status_code == 200
    assert client.get("/api/auth/scopes").get_json() == {"roles": ["unauthenticated_public"], "scopes": ["read:status"]}
    refused = client.get("/api/queue/get")
    assert refused.get_json()["detail"] == (
        "Not enough permissions. Requires scopes ['read:queue']. Request had scopes ['read:status']"
    )
    # invalid credentials are still refused
    assert client.get("/api/status", headers=api_key_header("ab" * 36)).status_code == 401


# -- every route is protected, except a short list --------------------------------------------

# Also listed in docs/authentication.md ("Public routes").
PUBLIC_ROUTES = {
    ("POST", "/api/auth/provider/<provider>/token"),
    ("GET", "/api/auth/provider/<provider>/code"),
    ("POST", "/api/auth/provider/<provider>/code"),
    ("POST", "/api/auth/session/refresh"),
    ("GET", "/api/auth/scopes"),
    ("POST", "/api/auth/logout"),
    ("GET", "/api/auth/providers"),
    # single sign-on (docs/authentication.md): a browser or a script starts it before it has credentials
    ("GET", "/api/auth/provider/<provider>/authorize"),
    ("POST", "/api/auth/provider/<provider>/authorize"),
    ("GET", "/api/auth/provider/<provider>/device_code"),
    ("POST", "/api/auth/provider/<provider>/device_code"),
}


def test_every_api_route_refuses_anonymous_requests_except_the_public_ones(toy):
    answered = set()
    checked = 0
    for rule in toy.application.url_map.iter_rules():
        if not rule.rule.startswith("/api"):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = toy.open(sample_path(toy.application, rule), method=method, json={})
            checked += 1
            if response.status_code != 401:
                answered.add((method, rule.rule))
    assert checked > 60
    assert answered == PUBLIC_ROUTES
    page = (Path(__file__).parents[1] / "docs" / "authentication.md").read_text()
    for method, rule in PUBLIC_ROUTES:
        assert f"`{method} {rule}`" in page, f"docs/authentication.md does not list {method} {rule}"


# -- browsers: cookies, CSRF, CORS ---------------------------------------------------------------


def test_csrf_double_submit_for_requests_authenticated_by_cookie(app, manager_idle):
    client = app.test_client()
    first = client.get(f"/api/status?api_key={API_KEY}")
    assert first.status_code == 200
    csrf = client.get_cookie("bluesky_httpserver_csrf").value
    assert client.get_cookie("bluesky_httpserver_api_key").value == API_KEY
    assert client.get("/api/queue/get").status_code == 200  # GET needs no CSRF token

    no_token = client.post("/api/queue/clear")
    assert no_token.status_code == 403
    assert no_token.get_json()["detail"] == "Expected csrf query parameter or x-csrf header"
    mismatch = client.post("/api/queue/clear", headers={"x-csrf": "wrong"})
    assert mismatch.get_json()["detail"] == "Double-submit CSRF tokens do not match"
    assert client.post("/api/queue/clear", headers={"x-csrf": csrf}).get_json()["success"] is True
    assert client.post(f"/api/queue/clear?csrf={csrf}").get_json()["success"] is True

    client.delete_cookie("bluesky_httpserver_csrf")
    no_cookie = client.post("/api/queue/clear", headers={"x-csrf": csrf})
    assert no_cookie.status_code == 403 and no_cookie.get_json()["detail"] == "Expected tiled_csrf_token cookie"

    # logout forgets both cookies
    client.set_cookie("bluesky_httpserver_csrf", csrf)
    assert client.post("/api/auth/logout", headers={"x-csrf": csrf}).get_json() == {}
    assert client.get_cookie("bluesky_httpserver_api_key") is None
    # a header-authenticated client is never asked for the CSRF token
    assert app.test_client().post("/api/queue/clear", headers=api_key_header(API_KEY)).status_code == 200


def test_cors_for_the_configured_origins(build_app):
    client = build_app(QSERVER_HTTP_SERVER_ALLOW_ORIGINS="http://ui.example.org http://other.example.org").test_client()
    allowed = client.get("/api/status", headers={"Origin": "http://ui.example.org", **api_key_header(API_KEY)})
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://ui.example.org"
    assert allowed.headers["Access-Control-Allow-Credentials"] == "true"
    other = client.get("/api/status", headers={"Origin": "http://evil.example.org", **api_key_header(API_KEY)})
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = client.options(
        "/api/queue/item/add",
        headers={
            "Origin": "http://other.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://other.example.org"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
    # from YAML, as bluesky-httpserver's allow_origins list
    yaml_client = build_app({"allow_origins": ["http://yaml.example.org"]}).test_client()
    from_yaml = yaml_client.get("/api/status", headers={"Origin": "http://yaml.example.org", **api_key_header(API_KEY)})
    assert from_yaml.headers["Access-Control-Allow-Origin"] == "http://yaml.example.org"


# -- single-user mode, Redis down, bad configuration -------------------------------------------


def test_single_user_mode_works_without_redis_and_auth_endpoints_explain(build_app, manager_idle):
    client = build_app(QS_GATEWAY_REDIS_URL="redis://127.0.0.1:9/0").test_client()  # nothing listens there
    key = api_key_header(API_KEY)
    assert client.get("/api/status", headers=key).status_code == 200
    scopes = client.get("/api/auth/scopes", headers=key).get_json()
    assert scopes["roles"] == ["unauthenticated_single_user"]
    who = client.get("/api/auth/whoami", headers=key).get_json()
    assert who["identities"][0]["id"] == "UNAUTHENTICATED_SINGLE_USER" and who["uuid"] is None
    made = client.post("/api/auth/apikey", json={"expires_in": 10}, headers=key)
    assert made.status_code == 400 and "single-user mode" in made.get_json()["detail"]
    login_attempt = client.post("/api/auth/provider/toy/token", data={"username": "bob", "password": "x"})
    assert login_attempt.status_code == 404
    assert client.get("/api/status", headers={"Authorization": "Bearer x.y.z"}).status_code == 401


def test_redis_down_answers_503_where_shared_state_is_needed(build_app):
    client = build_app(
        toy_config(secret_keys=["configured-secret-of-at-least-32-bytes"]), QS_GATEWAY_REDIS_URL="redis://127.0.0.1:9/0"
    ).test_client()
    response = client.post("/api/auth/provider/toy/token", data={"username": "bob", "password": "bob_password"})
    assert response.status_code == 503 and "detail" in response.get_json()
    assert client.get("/api/status", headers=api_key_header("ab" * 36)).status_code == 503
    # without credentials nothing needs Redis: the usual refusal
    assert client.get("/api/status").status_code == 401


@pytest.mark.parametrize(
    "config, named",
    [
        (
            {"authentication": {"providers": [{"provider": "x", "authenticator": "no.such.module:Auth"}]}},
            "providers[0].authenticator",
        ),
        (
            {"authentication": {"providers": [{"provider": "bad name!", "authenticator": "x:y"}]}},
            "providers[0].provider",
        ),
        (
            {
                "authentication": {
                    "providers": [{**toy_config()["authentication"]["providers"][0], "args": {"users": {}}}]
                }
            },
            "providers[0].args",
        ),
        (
            {"authentication": {"providers": [toy_config()["authentication"]["providers"][0]] * 2}},
            "providers[1].provider",
        ),
        (
            {
                "authentication": {
                    "providers": [
                        {"provider": "saml", "authenticator": "bluesky_httpserver.authenticators:SAMLAuthenticator"}
                    ]
                }
            },
            "providers[0].authenticator",
        ),
        ({"api_access": {"policy": "bluesky_httpserver.authorization:NoSuchPolicy"}}, "api_access.policy"),
        (
            {
                "api_access": {
                    "policy": "bluesky_httpserver.authorization:DictionaryAPIAccessControl",
                    "args": {"users": {"b@d!": None}},
                }
            },
            "api_access.args.users",
        ),
        ({"api_access": {"args": {"roles": {"user": {"scopes_sett": []}}}}}, "api_access.args.roles.user"),
        (
            {"api_access": {"args": {"roles": {"user": {"scopes_add": ["bad scope"]}}}}},
            "api_access.args.roles.user.scopes_add",
        ),
        ({"api_access": {"args": {"unknown_arg": 1}}}, "api_access.args"),
        ({"resource_access": {"args": {"default_group": "9bad"}}}, "resource_access.args.default_group"),
        (
            {"api_access": {"policy": "bluesky_httpserver.authorization:ServerBasedAPIAccessControl", "args": {}}},
            "api_access.args",
        ),
    ],
)
def test_bad_auth_configuration_stops_start_up_naming_the_key(build_app, config, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        build_app(config)


def test_password_hashes_in_the_dictionary_provider(build_app):
    import bcrypt
    from werkzeug.security import generate_password_hash

    passwords = {
        "tom": bcrypt.hashpw(b"tom_password", bcrypt.gensalt(rounds=4)).decode(),
        "alice": generate_password_hash("alice_password", method="pbkdf2:sha256:1000"),
        "bob": PASSWORDS["bob"],
    }
    config = toy_config()
    config["authentication"]["providers"][0]["args"]["users_to_passwords"] = passwords
    client = build_app(config).test_client()
    for username in ("tom", "alice", "bob"):
        login(client, username)
    wrong = client.post("/api/auth/provider/toy/token", data={"username": "tom", "password": passwords["tom"]})
    assert wrong.status_code == 401  # the hash itself is not the password
