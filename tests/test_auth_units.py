"""Pure logic of the auth model: import paths, password hashes, tokens, key scopes, PAM."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid

import jwt
import pytest

from qs_gateway.auth.accounts import Accounts
from qs_gateway.auth.authenticator import key_scopes
from qs_gateway.auth.plugins import COMPATIBLE_NAMES, resolve
from qs_gateway.auth.policies import (
    BasicAPIAccessControl,
    DefaultResourceAccessControl,
    DictionaryAPIAccessControl,
    build_roles,
)
from qs_gateway.auth.providers import Provider, build_providers
from qs_gateway.auth.providers.dictionary import DictionaryAuthenticator, check_password
from qs_gateway.auth.providers.ldap import LDAPAuthenticator
from qs_gateway.auth.providers.oidc import OIDCAuthenticator
from qs_gateway.auth.providers.pam import PAMAuthenticator
from qs_gateway.auth.scopes import DEFAULT_ROLES
from qs_gateway.auth.server_based import ServerBasedAPIAccessControl
from qs_gateway.auth.state import AuthState
from qs_gateway.auth.tokens import SigningKeys, TokenExpired, TokenInvalid, Tokens
from qs_gateway.config import ConfigError
from qs_gateway.config.redis import RedisSettings
from qs_gateway.exceptions import BadRequest
from qs_gateway.redis_store import RedisStore

# -- import paths ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, cls",
    [
        ("bluesky_httpserver.authenticators:DictionaryAuthenticator", DictionaryAuthenticator),
        ("bluesky_httpserver.authenticators:LDAPAuthenticator", LDAPAuthenticator),
        ("bluesky_httpserver.authenticators:PAMAuthenticator", PAMAuthenticator),
        ("bluesky_httpserver.authenticators:OIDCAuthenticator", OIDCAuthenticator),
        ("bluesky_httpserver.authorization:BasicAPIAccessControl", BasicAPIAccessControl),
        ("bluesky_httpserver.authorization:DictionaryAPIAccessControl", DictionaryAPIAccessControl),
        ("bluesky_httpserver.authorization:ServerBasedAPIAccessControl", ServerBasedAPIAccessControl),
        ("bluesky_httpserver.authorization:DefaultResourceAccessControl", DefaultResourceAccessControl),
        ("bluesky_httpserver.authorization.api_access:DictionaryAPIAccessControl", DictionaryAPIAccessControl),
        ("qs_gateway.auth.policies:DictionaryAPIAccessControl", DictionaryAPIAccessControl),
        ("qs_gateway.auth.policies.DictionaryAPIAccessControl", DictionaryAPIAccessControl),
    ],
)
def test_import_paths_of_bluesky_httpserver_name_our_classes(path, cls):
    assert resolve(path, "where") is cls


def test_every_compatible_name_resolves():
    for path in COMPATIBLE_NAMES:
        assert isinstance(resolve(path, "where"), type)


@pytest.mark.parametrize("path", ["", "nodots", "no.such.module:X", "qs_gateway.auth.policies:Nope", 5])
def test_unresolvable_paths_name_the_key(path):
    with pytest.raises(ConfigError, match="^where"):
        resolve(path, "where")


class AsyncAuthenticator:
    """Written for bluesky-httpserver: async, returns an object with ``user_name``."""

    mode = type("Mode", (), {"value": "password"})()

    def __init__(self, accepted: str) -> None:
        self.accepted = accepted

    async def authenticate(self, username: str, password: str):
        if username == self.accepted and password == "pw":
            return type("UserSessionState", (), {"user_name": username})()
        return None


def test_custom_authenticators_plug_in():
    providers = build_providers(
        [{"provider": "custom", "authenticator": f"{__name__}:AsyncAuthenticator", "args": {"accepted": "kim"}}]
    )
    provider = providers["custom"]
    assert provider.mode == "password"
    assert provider.authenticate("kim", "pw") == "kim"
    assert provider.authenticate("kim", "wrong") is None
    with pytest.raises(ConfigError, match=r"providers\[0\].args"):
        build_providers([{"provider": "custom", "authenticator": f"{__name__}:AsyncAuthenticator", "args": {}}])
    with pytest.raises(ConfigError, match=r"providers\[0\]: unknown key"):
        build_providers([{"provider": "p", "authenticator": "x:y", "arguments": {}}])


# -- policies and roles --------------------------------------------------------------------------


def test_role_edits_apply_set_then_add_then_remove():
    roles = build_roles(
        {
            "user": {
                "scopes_set": ["read:status", "read:queue"],
                "scopes_add": "write:queue:edit",
                "scopes_remove": "read:queue",
            },
            "observer": None,
            "NewRole": {"scopes_add": ["Read:Status"]},
        }
    )
    assert roles["user"] == {"read:status", "write:queue:edit"}
    assert roles["observer"] == frozenset()
    assert roles["newrole"] == {"read:status"}
    assert roles["expert"] == DEFAULT_ROLES["expert"]


def test_dictionary_policy_users_names_and_built_ins():
    policy = DictionaryAPIAccessControl(
        users={
            "bob": {"roles": ["Admin", "expert"], "displayed_name": "Bob Smith", "email": "bob@example.org"},
            "ann@example.org": {"roles": "user"},
            "guest": None,
        }
    )
    assert policy.get_user_roles("bob") == {"admin", "expert"}
    assert policy.get_displayed_user_name("bob") == 'bob "Bob Smith <bob@example.org>"'
    assert policy.get_user_scopes("ann@example.org") == DEFAULT_ROLES["user"]
    assert policy.is_user_known("guest") and policy.get_user_scopes("guest") == frozenset()
    assert not policy.is_user_known("nobody")
    assert policy.get_user_roles("UNAUTHENTICATED_SINGLE_USER") == {"unauthenticated_single_user"}
    with pytest.raises(ConfigError, match=r"users.bob: unknown key 'role'"):
        DictionaryAPIAccessControl(users={"bob": {"role": "admin"}})
    with pytest.raises(ConfigError, match=r"users.bob.roles"):
        DictionaryAPIAccessControl(users={"bob": {"roles": [5]}})


# -- passwords -----------------------------------------------------------------------------------


def _passlib_pbkdf2_sha256(password: str, salt: bytes, rounds: int) -> str:
    def ab64(data: bytes) -> str:
        return base64.b64encode(data).decode().rstrip("=").replace("+", ".")

    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, rounds)
    return f"$pbkdf2-sha256${rounds}${ab64(salt)}${ab64(digest)}"


def test_password_formats():
    import bcrypt
    from werkzeug.security import generate_password_hash

    stored = {
        "plain": "s3cret",
        "bcrypt": bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode(),
        "werkzeug": generate_password_hash("s3cret", method="pbkdf2:sha256:1000"),
        "passlib": _passlib_pbkdf2_sha256("s3cret", b"saltsaltsalt", 1000),
    }
    for kind, value in stored.items():
        assert check_password(value, "s3cret"), kind
        assert not check_password(value, "wrong"), kind
    assert not check_password("$pbkdf2-sha256$x$y", "s3cret")  # malformed hash: refused, no error
    authenticator = DictionaryAuthenticator(users_to_passwords={"a": stored["passlib"]})
    assert authenticator.authenticate("a", "s3cret") == "a"
    assert authenticator.authenticate("a", "") is None and authenticator.authenticate("b", "s3cret") is None


# -- tokens ----------------------------------------------------------------------------------------


def _tokens(*keys: str, access: float = 900) -> Tokens:
    return Tokens(SigningKeys(keys, shared=lambda: "shared-key-" * 4), access_max_age=access, refresh_max_age=3600)


def test_tokens_claims_rotation_and_refusals():
    new, old = "n" * 32, "o" * 32
    token = _tokens(old).access_token("abc", {"read:status"}, [("toy", "bob")], SESSION)
    claims = _tokens(new, old).decode(token, "access")
    assert (
        claims["sub"] == "abc" and claims["ids"] == [{"id": "bob", "idp": "toy"}] and claims["scp"] == ["read:status"]
    )
    with pytest.raises(TokenInvalid):
        _tokens(new).decode(token, "access")
    with pytest.raises(TokenInvalid):
        _tokens(old).decode(token, "refresh")
    with pytest.raises(TokenInvalid):
        _tokens(old).decode("garbage", "access")
    expired = jwt.encode({**claims, "exp": int(time.time()) - 5}, old, algorithm="HS256")
    with pytest.raises(TokenExpired):
        _tokens(new, old).decode(expired, "access")


SESSION = "0123456789abcdef0123456789abcdef"


def test_tokens_name_their_session_and_are_unique_and_checked_for_issuer_and_audience():
    tokens = _tokens("k" * 32)
    access = tokens.decode(tokens.access_token("abc", {"read:status"}, [("toy", "bob")], SESSION), "access")
    refresh = tokens.decode(tokens.refresh_token(SESSION, "the-token-id"), "refresh")
    for claims in (access, refresh):
        assert claims["sid"] == SESSION and claims["iss"] == "qs-gateway" and claims["aud"] == "qs-gateway"
        assert abs(claims["iat"] - time.time()) < 60 and claims["exp"] > claims["iat"]
    assert refresh["jti"] == "the-token-id"
    # issued in the same second, for the same session: still different tokens
    twins = {tokens.access_token("abc", set(), [], SESSION) for _ in range(3)}
    assert len(twins) == 3
    assert len({tokens.decode(t, "access")["jti"] for t in twins}) == 3

    good = {**access}
    for changed in ({"iss": "tiled"}, {"aud": "somewhere-else"}, {"sid": None}, {"jti": None}, {"iat": None}):
        claims = {name: value for name, value in {**good, **changed}.items() if value is not None}
        forged = jwt.encode(claims, "k" * 32, algorithm="HS256")  # the right key: only the claims are wrong
        with pytest.raises(TokenInvalid):
            tokens.decode(forged, "access")
    assert tokens.decode(jwt.encode(good, "k" * 32, algorithm="HS256"), "access") == good


def test_without_configured_keys_the_shared_key_is_fetched_once():
    calls = []
    keys = SigningKeys((), shared=lambda: calls.append(1) or "k" * 32)
    assert keys.all() == ("k" * 32,) and keys.all() == ("k" * 32,)
    assert calls == [1]


# -- API key scopes ------------------------------------------------------------------------------


def test_key_scopes_are_the_stored_ones_within_the_principals():
    principal = frozenset({"read:status", "read:queue"})
    assert key_scopes(["inherit"], principal) == principal
    assert key_scopes(["read:status", "write:queue:edit"], principal) == {"read:status"}
    assert key_scopes([], principal) == frozenset()


def test_new_key_scopes_follow_the_reference_rules():
    user = frozenset({"read:status", "read:queue", "user:apikeys"})
    assert Accounts.scopes_for_new_key(user, None, None) == ["inherit"]  # made with a token
    assert Accounts.scopes_for_new_key(user, ("inherit",), ["inherit", "read:status"]) == ["inherit"]
    assert Accounts.scopes_for_new_key(user, None, ["read:queue"]) == ["read:queue"]
    with pytest.raises(BadRequest, match=r"Requested scopes \['write:config'\] must be a subset"):
        Accounts.scopes_for_new_key(user, None, ["write:config"])
    fixed = ("read:status", "user:apikeys")
    assert Accounts.scopes_for_new_key(user, fixed, None) == ["read:status", "user:apikeys"]
    assert Accounts.scopes_for_new_key(user, fixed, ["inherit"]) == ["read:status", "user:apikeys"]
    with pytest.raises(BadRequest):
        Accounts.scopes_for_new_key(user, fixed, ["read:queue"])


def test_a_key_made_with_a_fixed_scope_key_is_bounded_by_it_whoever_it_is_for():
    admins_key = ("admin:apikeys", "user:apikeys")  # what an administrator's narrow key may do
    others = frozenset({"read:status", "read:queue", "write:queue:edit", "user:apikeys"})
    # "inherit" means the key's scopes, within the owner's
    assert Accounts.scopes_for_new_key(others, admins_key, None) == ["user:apikeys"]
    with pytest.raises(BadRequest, match=r"allowed principal's scopes \['user:apikeys'\]"):
        Accounts.scopes_for_new_key(others, admins_key, ["read:queue"])


# -- PAM (unit tests only: a real login would need an account and its password on this host) ------


def test_pam_refuses_an_unknown_account_through_real_pam():
    authenticator = PAMAuthenticator(service="login")
    assert authenticator.authenticate("qs-gateway-no-such-user", "x") is None


def test_pam_accepts_what_pam_accepts(monkeypatch):
    authenticator = PAMAuthenticator(service="other")
    seen = []
    monkeypatch.setattr(authenticator._pamela, "authenticate", lambda user, pw, service: seen.append((user, service)))
    assert Provider("pam", authenticator, "password").authenticate("ann", "pw") == "ann"
    assert seen == [("ann", "other")]


# -- configuration checks of the providers ---------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"server_address": [], "bind_dn_template": "uid={username}"}, "server_address"),
        ({"server_address": "h", "bind_dn_template": "uid=x"}, "bind_dn_template"),
        ({"server_address": "h"}, "bind_dn_template"),
        ({"server_address": "h", "lookup_dn": True}, "lookup_dn"),
        (
            {"server_address": "h", "bind_dn_template": "uid={username}", "valid_username_regex": "("},
            "valid_username_regex",
        ),
    ],
)
def test_ldap_configuration_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LDAPAuthenticator(**kwargs)


def test_ldap_server_addresses():
    ldap = LDAPAuthenticator(
        server_address=["a.example.org", "b.example.org:3389"], server_port=389, bind_dn_template="uid={username}"
    )
    assert ldap.servers == [("a.example.org", 389), ("b.example.org", 3389)]


def test_oidc_configuration_errors():
    args = dict(client_id="c", client_secret="s", redirect_uri="r", token_uri="t", authorization_endpoint="a")
    with pytest.raises(ConfigError, match="public_keys"):
        OIDCAuthenticator(**args, public_keys=[])
    with pytest.raises(ConfigError, match=r"public_keys\[0\]"):
        OIDCAuthenticator(**args, public_keys=[{"kty": "RSA"}])
    with pytest.raises(ConfigError, match="client_id"):
        OIDCAuthenticator(**{**args, "client_id": ""}, public_keys=[{"kty": "oct", "k": "c2VjcmV0"}])


@pytest.fixture
def auth_state(redis_port):
    store = RedisStore(RedisSettings(url=f"redis://127.0.0.1:{redis_port}/0"), prefix=f"auth_state_{time.time_ns()}")
    yield AuthState(store)
    store.close()


def test_a_key_is_read_and_touched_in_one_step_and_a_deleted_one_is_not_recreated(auth_state):
    principal = auth_state.principal_for_identity("toy", "alice")
    auth_state.record_login(principal, "toy", "alice")
    secret, record = auth_state.create_api_key(principal, ["read:status"], None, None)
    key = auth_state.store.key("auth", "apikey", record.digest)
    used, identities = auth_state.use_api_key(secret)
    assert (used.principal, used.scopes, identities) == (principal, ("read:status",), [("toy", "alice")])
    assert float(auth_state.store.run(lambda r: r.hget(key, "latest_activity"))) == used.latest_activity
    assert auth_state.store.run(lambda r: r.ttl(key)) == -1  # no expiration was given: none is set
    auth_state.store.run(lambda r: r.delete(key))  # by another worker
    assert auth_state.use_api_key(secret) is None
    assert auth_state.store.run(lambda r: r.exists(key)) == 0  # no hash without expiry left behind


def test_an_expired_key_is_refused_and_deleted(auth_state):
    principal = auth_state.principal_for_identity("toy", "carol")
    secret, record = auth_state.create_api_key(principal, ["read:status"], 60, None)
    key = auth_state.store.key("auth", "apikey", record.digest)
    auth_state.store.run(lambda r: r.hset(key, "expiration_time", time.time() - 1))
    assert auth_state.use_api_key(secret) is None
    assert auth_state.store.run(lambda r: r.exists(key)) == 0


def test_partial_hashes_are_no_key_and_no_session(auth_state):
    principal = auth_state.principal_for_identity("toy", "bob")
    secret, record = auth_state.create_api_key(principal, ["read:status"], None, None)
    key = auth_state.store.key("auth", "apikey", record.digest)
    # what an older version's touch left of a key deleted meanwhile: one field, no expiry
    auth_state.store.run(lambda r: (r.delete(key), r.hset(key, "latest_activity", time.time())))
    assert auth_state.use_api_key(secret) is None
    assert auth_state.store.run(lambda r: r.exists(key)) == 0
    session = auth_state.create_session(principal, 60, "jti")
    auth_state.store.run(lambda r: r.hdel(auth_state.session_key(session.uuid), "principal"))
    assert auth_state.session(session.uuid) is None
    gone = uuid.uuid4().hex
    auth_state.revoke_session(gone)  # a session that is gone stays gone
    assert auth_state.store.run(lambda r: r.exists(auth_state.session_key(gone))) == 0
    assert auth_state.use_api_key(auth_state.create_api_key(principal, [], None, None)[0])[0].principal == principal
