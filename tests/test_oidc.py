"""OIDC authorization-code login: the test is the identity provider (its RSA keys, its id_tokens,
its token endpoint on a free port)."""

from __future__ import annotations

import base64
import hashlib
import time
import urllib.parse

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .auth_support import TOY_PROVIDER, JsonServer, auth_config, bearer, configured_app, provider

CLIENT_ID = "qs-gateway-test"
CLIENT_SECRET = "client-secret"
GOOD_CODE = "good-code"


def _rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class IdentityProvider:
    def __init__(self) -> None:
        self.key = _rsa_key()
        self.kid = "test-key-1"
        self.claims = {"sub": "dana", "aud": CLIENT_ID}
        self.signing_key = self.key  # what id_tokens are signed with (a test may swap it)
        self.access_token = "opaque-access-token"
        self.at_hash_of = self.access_token  # the id_token's at_hash is of this token; None: no at_hash
        self.server = JsonServer(self.token_endpoint)

    @property
    def jwk(self) -> dict:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def token_endpoint(self, method: str, path: str, body: str) -> tuple[int, dict]:
        form = dict(urllib.parse.parse_qsl(body))
        if method != "POST" or form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            return 401, {"error": "invalid_client"}
        if form.get("code") != GOOD_CODE:
            return 400, {"error": "invalid_grant"}
        now = int(time.time())
        at_hash = {}
        if self.at_hash_of is not None:
            half = hashlib.sha256(self.at_hash_of.encode()).digest()[:16]
            at_hash = {"at_hash": base64.urlsafe_b64encode(half).rstrip(b"=").decode()}
        id_token = jwt.encode(
            {"iss": self.server.url, "iat": now, "exp": now + 300, **at_hash, **self.claims},
            _pem(self.signing_key),
            algorithm="RS256",
            headers={"kid": self.kid},
        )
        return 200, {"access_token": self.access_token, "token_type": "Bearer", "id_token": id_token}


@pytest.fixture
def idp():
    provider = IdentityProvider()
    yield provider
    provider.server.close()


@pytest.fixture
def oidc_client(idp, tmp_path, re_manager):
    oidc = provider(
        "oidc",
        "OIDCAuthenticator",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri="http://localhost/api/auth/provider/oidc/code",
        token_uri=f"{idp.server.url}/token",
        authorization_endpoint=f"{idp.server.url}/authorize",
        public_keys=[idp.jwk],
        issuer=idp.server.url,
    )
    config = auth_config([TOY_PROVIDER, oidc], users={"dana": {"roles": "user"}, "tom": {"roles": "user"}})
    with configured_app(re_manager, tmp_path, config) as app:
        yield app.test_client()


def test_code_login_answers_a_refresh_token_that_opens_a_session(oidc_client, idp):
    response = oidc_client.get(f"/api/auth/provider/oidc/code?code={GOOD_CODE}&state=xyz&session_state=abc")
    assert response.status_code == 200, response.get_json()
    refresh_token = response.get_json()
    assert isinstance(refresh_token, str)  # a bare JSON string, as the reference server answers
    tokens = oidc_client.post("/api/auth/session/refresh", json={"refresh_token": refresh_token}).get_json()
    who = oidc_client.get("/api/auth/whoami", headers=bearer(tokens)).get_json()
    assert [(i["id"], i["provider"]) for i in who["identities"]] == [("dana", "oidc")]
    assert who["roles"] == ["user"]
    # the code went to the token endpoint with the client's credentials
    method, path, body = idp.server.requests[-1]
    assert (method, path) == ("POST", "/token") and f"code={GOOD_CODE}" in body
    # POST works as well
    assert oidc_client.post(f"/api/auth/provider/oidc/code?code={GOOD_CODE}").status_code == 200


def _refused(client, code: str = GOOD_CODE) -> None:
    response = client.get(f"/api/auth/provider/oidc/code?code={code}")
    assert response.status_code == 401 and response.get_json()["detail"] == "Authentication failure"


def test_a_bad_code_is_refused(oidc_client):
    _refused(oidc_client, "stolen-code")


def test_an_id_token_signed_by_another_key_is_refused(oidc_client, idp):
    idp.signing_key = _rsa_key()
    _refused(oidc_client)


def test_an_id_token_for_another_client_is_refused(oidc_client, idp):
    idp.claims["aud"] = "another-client"
    _refused(oidc_client)


def test_an_expired_id_token_is_refused(oidc_client, idp):
    idp.claims["exp"] = int(time.time()) - 60
    _refused(oidc_client)


def test_an_id_token_from_another_issuer_is_refused(oidc_client, idp):
    idp.claims["iss"] = "https://impostor.example.org"
    _refused(oidc_client)


def test_an_id_token_whose_at_hash_is_not_of_the_access_token_is_refused(oidc_client, idp):
    idp.at_hash_of = "another-access-token"
    _refused(oidc_client)


def test_an_id_token_without_at_hash_is_accepted(oidc_client, idp):
    idp.at_hash_of = None  # optional in the authorization-code flow
    assert oidc_client.get(f"/api/auth/provider/oidc/code?code={GOOD_CODE}").status_code == 200


def test_a_user_the_policy_does_not_know_is_not_authorized(oidc_client, idp):
    idp.claims["sub"] = "mallory"
    response = oidc_client.get(f"/api/auth/provider/oidc/code?code={GOOD_CODE}")
    assert (
        response.status_code == 401 and response.get_json()["detail"] == "User is not authorized to access the server"
    )


def test_each_flow_only_on_its_own_kind_of_provider(oidc_client):
    password_on_oidc = oidc_client.post("/api/auth/provider/oidc/token", data={"username": "dana", "password": "x"})
    assert password_on_oidc.status_code == 404
    code_on_toy = oidc_client.get(f"/api/auth/provider/toy/code?code={GOOD_CODE}")
    assert code_on_toy.status_code == 404
    assert oidc_client.get("/api/auth/provider/oidc/code").status_code == 400  # no code
