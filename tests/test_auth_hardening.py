"""Sessions, tokens, keys and guessing, in-process against real Redis and RE Manager (issue 13,
items 3-6): a session's end stops its access tokens; refresh tokens are spent once, and a spent
one used again ends the session; a key made with a key stays within that key's scopes; failed
logins and credential checks are throttled (429 with Retry-After) in counts shared through Redis.
"""

from __future__ import annotations

import pytest

from qs_gateway.extensions import EXTENSION_KEY

from .auth_support import api_key_header, bearer, login, private_prefix, toy_config, write_config
from .support import make_app

SESSION_EXPIRED = "Session has expired. Please re-authenticate."
SECRET = "a-configured-secret-of-at-least-32-bytes"
ELSEWHERE = {"REMOTE_ADDR": "192.0.2.7"}  # another client address


@pytest.fixture
def build_app(tmp_path, re_manager):
    apps = []

    def build(config: dict | None = None, **env: str):
        if config is not None:
            env["QSERVER_HTTP_SERVER_CONFIG"] = write_config(tmp_path, config)
        env.setdefault("QS_GATEWAY_REDIS_PREFIX", private_prefix())
        app = make_app(re_manager, **env)
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions[EXTENSION_KEY].close()


@pytest.fixture
def toy(build_app):
    return build_app(toy_config()).test_client()


# -- item 4: a key made with a key stays within that key's scopes ----------------------------------


def test_a_fixed_scope_key_makes_no_wider_key_through_any_endpoint(toy):
    bob = bearer(login(toy, "bob"))  # admin and expert
    bob_uuid = toy.get("/api/auth/whoami", headers=bob).get_json()["uuid"]
    tom_uuid = toy.get("/api/auth/whoami", headers=bearer(login(toy, "tom"))).get_json()["uuid"]
    narrow = ["admin:apikeys", "user:apikeys"]
    made = toy.post("/api/auth/apikey", json={"expires_in": 600, "scopes": narrow}, headers=bob).get_json()
    key = api_key_header(made["secret"])

    for path in ("/api/auth/apikey", f"/api/auth/principal/{bob_uuid}/apikey"):
        for scopes in (None, ["inherit"]):
            answer = toy.post(path, json={"expires_in": 600, "scopes": scopes}, headers=key)
            assert answer.status_code == 200 and answer.get_json()["scopes"] == narrow, (path, scopes)
            new_key = api_key_header(answer.get_json()["secret"])
            assert toy.get("/api/auth/scopes", headers=new_key).get_json()["scopes"] == narrow
            assert toy.get("/api/queue/get", headers=new_key).status_code == 401
        wider = toy.post(path, json={"expires_in": 600, "scopes": ["read:queue"]}, headers=key)
        assert wider.status_code == 400 and "must be a subset" in wider.get_json()["detail"], path
    # for another principal: within the key's scopes and that principal's
    for_tom = toy.post(f"/api/auth/principal/{tom_uuid}/apikey", json={"expires_in": 600}, headers=key)
    assert for_tom.get_json()["scopes"] == ["user:apikeys"]
    # an administrator's token (or inherit key) still gives another principal all of theirs
    by_token = toy.post(f"/api/auth/principal/{tom_uuid}/apikey", json={"expires_in": 600}, headers=bob)
    assert by_token.get_json()["scopes"] == ["inherit"]


