"""Sessions, tokens, keys and guessing, in-process against real Redis and RE Manager (issue 13,
items 3-6): a session's end stops its access tokens; refresh tokens are spent once, and a spent
one used again ends the session; a key made with a key stays within that key's scopes; failed
logins and credential checks are throttled (429 with Retry-After) in counts shared through Redis.
"""

from __future__ import annotations

import threading

import jwt

from .auth_support import (
    PASSWORDS,
    api_key_header,
    bearer,
    login,
    private_prefix,
    toy_config,
)
from .support import API_KEY, wait_for

SESSION_EXPIRED = "Session has expired. Please re-authenticate."
SECRET = "a-configured-secret-of-at-least-32-bytes"
ELSEWHERE = {"REMOTE_ADDR": "192.0.2.7"}  # another client address


def _refresh(client, refresh_token: str, **environ: str):
    return client.post("/api/auth/session/refresh", json={"refresh_token": refresh_token}, environ_base=environ)


def _session_of(client, tokens: dict) -> str:
    return client.get("/api/auth/whoami", headers=bearer(tokens)).get_json()["sessions"][0]["uuid"]


def _refused_for_the_session(response) -> bool:
    return response.status_code == 401 and response.get_json()["detail"] == SESSION_EXPIRED


# -- item 3: a session's end stops its access tokens ---------------------------------------------


def test_a_revoked_sessions_access_token_stops_working_on_every_worker(build_app, manager_idle):
    prefix = private_prefix()
    config = toy_config(secret_keys=[SECRET])
    one = build_app(config, QS_GATEWAY_REDIS_PREFIX=prefix).test_client()
    other = build_app(config, QS_GATEWAY_REDIS_PREFIX=prefix).test_client()  # another worker's memory
    tokens = login(one, "tom")
    headers = bearer(tokens)
    assert other.get("/api/status", headers=headers).status_code == 200  # the other worker knows it alive

    session = _session_of(one, tokens)
    assert one.delete(f"/api/auth/session/revoke/{session}", headers=headers).get_json()["success"] is True
    # on the worker that revoked it: at once, for reads, writes and making keys alike
    for method, path, body in (
        ("GET", "/api/status", None),
        ("GET", "/api/queue/get", None),
        ("POST", "/api/queue/clear", None),
        ("POST", "/api/auth/apikey", {"expires_in": None}),
    ):
        assert _refused_for_the_session(one.open(path, method=method, json=body, headers=headers)), path
    # on another worker: within the bound of its memory (1 s)
    wait_for(lambda: _refused_for_the_session(other.get("/api/status", headers=headers)), 10, "the other worker")
    assert _refused_for_the_session(_refresh(one, tokens["refresh_token"]))


def test_an_expired_sessions_access_token_stops_working(build_app):
    client = build_app(toy_config(session_max_age=1)).test_client()  # access tokens live 900 s
    tokens = login(client, "tom")
    assert client.get("/api/status", headers=bearer(tokens)).status_code == 200
    wait_for(lambda: _refused_for_the_session(client.get("/api/status", headers=bearer(tokens))), 10, "refusal")


def test_logout_with_a_token_ends_its_session(toy):
    tokens = login(toy, "alice")
    assert toy.post("/api/auth/logout", headers=bearer(tokens)).get_json() == {}
    assert _refused_for_the_session(toy.get("/api/status", headers=bearer(tokens)))
    assert _refused_for_the_session(_refresh(toy, tokens["refresh_token"]))
    # other sessions of the same user go on
    assert toy.get("/api/status", headers=bearer(login(toy, "alice"))).status_code == 200


def test_a_token_signed_with_the_key_but_not_made_here_is_refused(build_app):
    client = build_app(toy_config(secret_keys=[SECRET])).test_client()
    claims = jwt.decode(login(client, "tom")["access_token"], options={"verify_signature": False})
    old_style = {name: claims[name] for name in ("sub", "sub_typ", "scp", "ids", "type", "exp")}  # no sid, aud, ...
    for forged in (old_style, {**claims, "aud": "tiled"}, {**claims, "iss": "someone"}):
        token = jwt.encode(forged, SECRET, algorithm="HS256")
        answer = client.get("/api/status", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401 and answer.get_json()["detail"] == "Could not validate credentials"


# -- item 5: refresh tokens are spent once --------------------------------------------------------


def test_a_spent_refresh_token_used_again_ends_the_session(toy):
    tokens = login(toy, "tom")
    first = tokens["refresh_token"]
    second = _refresh(toy, first).get_json()
    assert second["refresh_token"] != first and toy.get("/api/status", headers=bearer(second)).status_code == 200
    # someone else presents the spent token: theft; the session ends for everybody
    assert _refused_for_the_session(_refresh(toy, first, **ELSEWHERE))
    assert _refused_for_the_session(toy.get("/api/status", headers=bearer(second)))
    assert _refused_for_the_session(_refresh(toy, second["refresh_token"]))


def test_a_spent_refresh_token_is_refused_even_to_its_client_after_the_grace(build_app):
    client = build_app(toy_config(), QS_GATEWAY_REFRESH_REUSE_GRACE="0").test_client()
    tokens = login(client, "tom")
    second = _refresh(client, tokens["refresh_token"]).get_json()
    assert _refused_for_the_session(_refresh(client, tokens["refresh_token"]))
    assert _refused_for_the_session(_refresh(client, second["refresh_token"]))


def test_a_clients_own_threads_racing_to_refresh_do_not_end_the_session(build_app):
    client = build_app(toy_config(), QS_GATEWAY_REFRESH_REUSE_GRACE="60").test_client()
    tokens = login(client, "tom")
    second = _refresh(client, tokens["refresh_token"]).get_json()
    # the loser of the race, from the same address, within the grace: refused, nothing ends
    assert _refused_for_the_session(_refresh(client, tokens["refresh_token"]))
    assert client.get("/api/status", headers=bearer(second)).status_code == 200
    assert _refresh(client, second["refresh_token"]).status_code == 200


def test_of_concurrent_uses_of_one_refresh_token_one_succeeds(toy):
    refresh_token = login(toy, "tom")["refresh_token"]
    app = toy.application
    start = threading.Barrier(6)
    statuses = []

    def use() -> None:
        client = app.test_client()
        start.wait()
        statuses.append(_refresh(client, refresh_token).status_code)

    threads = [threading.Thread(target=use) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [200, 401, 401, 401, 401, 401]


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


# -- item 6: guessing is throttled ------------------------------------------------------------------


def _password_login(client, username: str, password: str, **environ: str):
    return client.post(
        "/api/auth/provider/toy/token", data={"username": username, "password": password}, environ_base=environ
    )


def _retry_after(response) -> int:
    assert response.status_code == 429, response.get_json()
    assert response.get_json()["detail"].startswith("Too many failed")
    return int(response.headers["Retry-After"])


def test_failed_logins_per_user_name_wait_longer_and_longer(build_app):
    client = build_app(toy_config(), QS_GATEWAY_LOGIN_FAILURES_PER_USER="2/2 seconds;4/hour").test_client()
    for _ in range(2):
        assert _password_login(client, "tom", "wrong").status_code == 401
    # the budget is spent: even the right password is not tried now
    assert 1 <= _retry_after(_password_login(client, "tom", PASSWORDS["tom"])) <= 2
    assert _password_login(client, "alice", PASSWORDS["alice"]).status_code == 200  # another user name
    # after the short window two more tries, then the hour's tier: a much longer wait
    # (a refused attempt is not counted, so waiting out the short window by trying costs nothing)
    wait_for(lambda: _password_login(client, "tom", "wrong").status_code == 401, 10, "the short window")
    wait_for(lambda: _password_login(client, "tom", "wrong", **ELSEWHERE).status_code == 401, 10, "a 4th try")
    assert _retry_after(_password_login(client, "tom", PASSWORDS["tom"])) > 60


def test_a_successful_login_forgives_its_user_names_failures(build_app):
    client = build_app(toy_config(), QS_GATEWAY_LOGIN_FAILURES_PER_USER="3/hour").test_client()
    for _ in range(2):
        assert _password_login(client, "tom", "wrong").status_code == 401
    assert _password_login(client, "tom", PASSWORDS["tom"]).status_code == 200
    for _ in range(3):
        assert _password_login(client, "tom", "wrong").status_code == 401
    _retry_after(_password_login(client, "tom", PASSWORDS["tom"]))


def test_failed_logins_per_client_address(build_app):
    client = build_app(toy_config(), QS_GATEWAY_LOGIN_FAILURES_PER_ADDRESS="3/hour").test_client()
    for name in ("nobody", "somebody", "anybody"):  # unknown names count like known ones
        assert _password_login(client, name, "guess").status_code == 401
    _retry_after(_password_login(client, "tom", PASSWORDS["tom"]))
    assert _password_login(client, "tom", PASSWORDS["tom"], **ELSEWHERE).status_code == 200


def test_failed_key_and_token_checks_per_client_address_shared_by_workers(build_app, manager_idle):
    prefix = private_prefix()
    env = {"QS_GATEWAY_CREDENTIAL_FAILURES_PER_ADDRESS": "3/hour", "QS_GATEWAY_REDIS_PREFIX": prefix}
    one, other = build_app(**env).test_client(), build_app(**env).test_client()  # single-user mode
    for guess in ("ApiKey " + "a" * 32, "ApiKey " + "b" * 32, "Bearer x.y.z"):
        assert one.get("/api/status", headers={"Authorization": guess}).status_code == 401
    _retry_after(one.get("/api/status", headers=api_key_header(API_KEY)))  # even the right key, now
    assert one.get("/api/status", headers=api_key_header(API_KEY), environ_base=ELSEWHERE).status_code == 200
    # the other worker counts the same failures: its first failed check from there tells it
    assert other.get("/api/status", headers=api_key_header("c" * 32)).status_code == 401
    _retry_after(other.get("/api/status", headers=api_key_header(API_KEY)))
    assert one.get("/api/status").status_code == 401  # no credentials: nothing to throttle


def test_without_redis_logins_are_refused_and_key_checks_counted_per_worker(build_app, manager_idle):
    nowhere = {"QS_GATEWAY_REDIS_URL": "redis://127.0.0.1:9/0", "QS_GATEWAY_CREDENTIAL_FAILURES_PER_ADDRESS": "2/hour"}
    keyed = build_app(**nowhere).test_client()
    for _ in range(2):
        assert keyed.get("/api/status", headers=api_key_header("d" * 32)).status_code == 401
    _retry_after(keyed.get("/api/status", headers=api_key_header(API_KEY)))
    assert keyed.get("/api/status", headers=api_key_header(API_KEY), environ_base=ELSEWHERE).status_code == 200
    with_logins = build_app(toy_config(secret_keys=[SECRET]), **nowhere).test_client()
    assert _password_login(with_logins, "tom", PASSWORDS["tom"]).status_code == 503


def test_unknown_users_cost_a_password_check_against_a_dummy_hash_like_the_real_ones(build_app, monkeypatch):
    import bcrypt

    from qs_gateway.auth.providers.dictionary import DictionaryAuthenticator

    provider = DictionaryAuthenticator(
        users_to_passwords={"tom": bcrypt.hashpw(b"tom_password", bcrypt.gensalt(rounds=5)).decode()}
    )
    checked = []
    real_check = bcrypt.checkpw
    monkeypatch.setattr(
        bcrypt, "checkpw", lambda password, hashed: checked.append(hashed) or real_check(password, hashed)
    )
    assert provider.authenticate("nobody", "tom_password") is None
    assert provider.authenticate("tom", "wrong") is None
    assert len(checked) == 2 and all(hashed.startswith(b"$2b$05$") for hashed in checked)
    assert checked[0] != checked[1]  # the dummy, then tom's


def test_every_endpoint_that_checks_credentials_documents_429(anonymous):
    paths = anonymous.get("/openapi.json").get_json()["paths"]
    for path in (
        "/api/status",
        "/api/queue/item/add",
        "/api/auth/provider/{provider}/token",
        "/api/auth/session/refresh",
    ):
        operations = paths[path].values()
        assert all("429" in operation["responses"] for operation in operations), path
    assert "429" not in paths["/healthz"]["get"]["responses"]
