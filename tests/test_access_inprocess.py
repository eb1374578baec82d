"""What a signed-in or anonymous caller may do, in-process against real Redis and RE Manager: the
default roles and their scopes, role edits, the user and group sent to RE Manager, the short list
of public routes, cookies with CSRF and CORS for browsers, single-user mode, Redis down, and
configurations refused at start-up. Logins, sessions and API keys: tests/test_auth_inprocess.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qs_gateway.app import endpoint_specs
from qs_gateway.auth.scopes import DEFAULT_ROLES
from qs_gateway.config import ConfigError

from .auth_support import (
    NOT_ENOUGH,
    PASSWORDS,
    ROLES,
    api_key_header,
    bearer,
    login,
    sample_path,
    toy_config,
)
from .support import API_KEY, plan

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
