"""Single sign-on against a real OpenID provider (npm's oidc-provider, tests/oidc/provider.mjs):
discovery, the browser sign-in (PKCE, state, nonce), the device-code sign-in, the provider's own
tokens (proxied), key rotation, and Entra's issuer template. The gateway runs in-process; the
person at the provider's pages is an HTTP client (tests/test_sso_browser.py does it in Chromium).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from qs_gateway.auth.providers import openid
from qs_gateway.auth.providers.oidc import EntraAuthenticator
from qs_gateway.auth.providers.proxied import ProxiedOIDCAuthenticator
from qs_gateway.config import ConfigError
from qs_gateway.serving.stack import free_port

from .auth_support import configured_app
from .oidc_support import (
    AUDIENCE,
    CLIENT_ID,
    CLIENT_SECRET,
    ENTRA_AUDIENCE,
    ENTRA_CLIENT_ID,
    ENTRA_STAFF_GROUP,
    TENANT,
    USERS,
    documented_config,
    poll_device_sign_in,
    running_provider,
    sign_in_at_provider,
)

GATEWAY = "http://localhost"  # the Flask test client's address
REDIRECT_URI = f"{GATEWAY}/api/auth/provider/facility/code"
POLICY = {
    "policy": "bluesky_httpserver.authorization:DictionaryAPIAccessControl",
    "args": {"users": {"dana": {"roles": "user"}}},
}


@pytest.fixture(scope="module")
def oidc(tmp_path_factory):
    with running_provider(tmp_path_factory.mktemp("oidc"), [REDIRECT_URI]) as provider:
        yield provider


@pytest.fixture
def gateway(oidc, tmp_path, re_manager):
    config = documented_config("facility", {"https://login.example.org": oidc.issuer})
    assert config["api_access"] == POLICY  # dana is a user; erin is the provider's user only
    with configured_app(re_manager, tmp_path, config, OIDC_CLIENT_SECRET=CLIENT_SECRET) as app:
        yield app.test_client()


def _browser_sign_in(client, user: str, state: str = "page-state", provider: str = "facility"):
    """/authorize, the provider's pages as ``user``, and the provider's redirect to the gateway."""
    start = client.get(f"/api/auth/provider/{provider}/authorize?state={state}")
    assert start.status_code == 302, start.get_data(as_text=True)
    back = sign_in_at_provider(start.headers["Location"], user, USERS[user]["password"], GATEWAY)
    return client.get(back.headers["Location"].removeprefix(GATEWAY))


def _session_of(client, handover_location: str, provider: str = "facility") -> dict:
    """The page's part: the hand-over code exchanged for the refresh token, then for tokens."""
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(handover_location).query))
    refresh_token = client.post(f"/api/auth/provider/{provider}/code?code={query['code']}").get_json()
    tokens = client.post("/api/auth/session/refresh", json={"refresh_token": refresh_token}).get_json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def test_discovery_gives_the_provider_s_endpoints_and_the_browser_is_sent_there_with_pkce(gateway, oidc):
    described = {p["name"]: p for p in gateway.get("/api/auth/providers").get_json()["providers"]}
    assert described["facility"]["authorization_url"] == f"{GATEWAY}/api/auth/provider/facility/authorize"
    assert described["facility-tokens"]["mode"] == "proxied"
    assert described["facility-tokens"]["device_flow_client_id"] == "qs-cli"
    start = gateway.get("/api/auth/provider/facility/authorize")
    location = urllib.parse.urlsplit(start.headers["Location"])
    query = dict(urllib.parse.parse_qsl(location.query))
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{oidc.base}/auth"  # from discovery
    assert query["client_id"] == CLIENT_ID and query["redirect_uri"] == REDIRECT_URI
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 40 and len(query["nonce"]) >= 40
    assert "qs_gateway_sso_state" in start.headers["Set-Cookie"] and "HttpOnly" in start.headers["Set-Cookie"]


def test_browser_sign_in_through_the_provider_s_login_page(gateway):
    returned = _browser_sign_in(gateway, "dana")
    assert returned.status_code == 303, returned.get_data(as_text=True)
    location = returned.headers["Location"]
    assert location.startswith("/ui/?") and "state=page-state" in location
    who = gateway.get("/api/auth/whoami", headers=_session_of(gateway, location)).get_json()
    assert [(i["id"], i["provider"]) for i in who["identities"]] == [("dana", "facility")]
    assert who["roles"] == ["user"]
    # the hand-over code works once
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))["code"]
    assert gateway.post(f"/api/auth/provider/facility/code?code={code}").status_code == 401


def test_the_provider_s_redirect_counts_once_and_only_in_the_browser_that_started(gateway, oidc, re_manager, tmp_path):
    start = gateway.get("/api/auth/provider/facility/authorize")
    back = sign_in_at_provider(start.headers["Location"], "dana", USERS["dana"]["password"], GATEWAY)
    redirect = back.headers["Location"].removeprefix(GATEWAY)
    other_browser = gateway.application.test_client()  # no state cookie
    refused = other_browser.get(redirect)
    assert refused.status_code == 400 and "not started in this browser" in refused.get_json()["detail"]
    # the state was spent by that attempt: the right browser cannot use it afterwards either
    assert gateway.get(redirect).status_code in (400, 401)


def test_a_user_of_the_provider_unknown_to_the_gateway_is_not_authorized(gateway):
    returned = _browser_sign_in(gateway, "erin")
    assert returned.status_code == 401
    assert returned.get_json()["detail"] == "User is not authorized to access the server"


def test_device_code_sign_in(gateway):
    started = gateway.post("/api/auth/provider/facility/authorize").get_json()
    assert set(started) == {
        "authorization_uri",
        "verification_uri",
        "device_code",
        "user_code",
        "expires_in",
        "interval",
    }
    assert started["verification_uri"] == f"{GATEWAY}/api/auth/provider/facility/device_code"

    def poll():
        return gateway.post("/api/auth/provider/facility/token", data={"device_code": started["device_code"]})

    pending = poll()
    assert pending.status_code == 400 and pending.get_json()["detail"]["error"] == "authorization_pending"
    assert poll().get_json()["error"] == "slow_down"  # polled again at once
    page = gateway.get(started["authorization_uri"].removeprefix(GATEWAY))
    assert page.status_code == 200 and started["user_code"] in page.get_data(as_text=True)
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    wrong = gateway.post("/api/auth/provider/facility/device_code", data={"user_code": "BBBB-BBBB"})
    assert wrong.status_code == 200 and "Unknown or expired code" in wrong.get_data(as_text=True)
    to_provider = gateway.post(
        "/api/auth/provider/facility/device_code", data={"user_code": started["user_code"].lower()}
    )
    assert to_provider.status_code == 302
    back = sign_in_at_provider(to_provider.headers["Location"], "dana", USERS["dana"]["password"], GATEWAY)
    confirmation = gateway.get(back.headers["Location"].removeprefix(GATEWAY))
    assert confirmation.status_code == 200 and "You are signed in" in confirmation.get_data(as_text=True)
    tokens = poll_device_sign_in(poll, started["interval"])
    who = gateway.get("/api/auth/whoami", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert who.get_json()["identities"][0]["id"] == "dana"
    spent = poll()  # single use
    assert spent.status_code == 400 and spent.get_json()["error"] == "expired_token"


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _claims(user: str, **changes) -> dict:
    now = int(time.time())
    claims = {"iss": None, "sub": user, "preferred_username": user, "aud": AUDIENCE, "iat": now, "exp": now + 300}
    claims["groups"] = USERS.get(user, {}).get("groups", [])
    return {**claims, **changes}


def _provider_token(oidc, user: str, **changes) -> str:
    return oidc.sign({**_claims(user, iss=oidc.issuer), **changes})


def test_the_provider_s_own_access_token_from_its_device_flow(gateway, oidc):
    started = oidc.device_token()
    sign_in_at_provider(started["verification_uri_complete"], "erin", USERS["erin"]["password"], GATEWAY)
    token = oidc.device_access_token(started["device_code"])
    who = gateway.get("/api/auth/whoami", headers=_bearer(token)).get_json()
    assert who["identities"] == [{"id": "erin", "provider": "facility-tokens", "latest_login": None}]
    assert who["roles"] == ["expert"]  # her group beamline-staff, mapped
    assert gateway.post("/api/permissions/reload", json={}, headers=_bearer(token)).status_code == 200


def test_proxied_tokens_get_the_roles_of_the_policy_and_of_their_groups_and_only_their_scopes(gateway, oidc):
    dana = _provider_token(oidc, "dana")
    assert gateway.get("/api/auth/scopes", headers=_bearer(dana)).get_json()["roles"] == ["user"]
    refused = gateway.post("/api/permissions/reload", json={}, headers=_bearer(dana))
    assert refused.status_code == 401 and refused.get_json()["detail"].startswith("Not enough permissions")
    assert gateway.get("/api/status", headers=_bearer(dana)).status_code == 200
    stranger = gateway.get("/api/status", headers=_bearer(_provider_token(oidc, "mallory", groups=["visitors"])))
    assert (
        stranger.status_code == 401 and stranger.get_json()["detail"] == "User is not authorized to access the server"
    )


def _private_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _foreign_key_token(oidc, claims: dict) -> str:
    real_kid = jwt.get_unverified_header(oidc.sign(claims))["kid"]
    return jwt.encode(claims, _private_pem(), algorithm="RS256", headers={"kid": real_kid})


def _hs256_with_the_public_key(oidc, claims: dict) -> str:
    """The classic confusion: HMAC keyed with the provider's public key, under the real kid."""
    jwk = httpx.get(f"{oidc.base}/jwks").json()["keys"][0]
    public_pem = jwt.PyJWK(jwk).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signing_input = f"{part({'alg': 'HS256', 'kid': jwk['kid']})}.{part(claims)}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


@pytest.mark.parametrize(
    "case", ["expired", "not yet valid", "wrong audience", "wrong issuer", "forged", "public key as HMAC secret"]
)
def test_bad_provider_tokens_are_refused(gateway, oidc, case):
    now = int(time.time())
    claims = _claims("dana", iss=oidc.issuer)
    if case == "expired":
        token = oidc.sign({**claims, "iat": now - 900, "exp": now - 300})
    elif case == "not yet valid":
        token = oidc.sign({**claims, "nbf": now + 600})
    elif case == "wrong audience":
        token = oidc.sign({**claims, "aud": "https://another-service.example.org"})
    elif case == "wrong issuer":
        token = oidc.sign({**claims, "iss": "https://impostor.example.org"})
    elif case == "forged":
        token = _foreign_key_token(oidc, claims)
    else:
        token = _hs256_with_the_public_key(oidc, claims)
    answer = gateway.get("/api/status", headers=_bearer(token))
    assert answer.status_code == 401 and answer.get_json()["detail"] == "Could not validate credentials"


def test_after_the_provider_rotates_its_keys_the_next_token_still_works(gateway, oidc):
    assert gateway.get("/api/status", headers=_bearer(_provider_token(oidc, "dana"))).status_code == 200
    new_kid = oidc.rotate_keys()
    token = _provider_token(oidc, "dana")
    assert jwt.get_unverified_header(token)["kid"] == new_kid
    assert gateway.get("/api/status", headers=_bearer(token)).status_code == 200
    # and a browser sign-in, whose id_token is signed with the new key
    assert _browser_sign_in(gateway, "dana").status_code == 303


def test_keys_are_fetched_again_for_an_unknown_kid_at_most_once_a_minute(monkeypatch):
    fetched = []
    provider = openid.OpenIDProvider(well_known_uri="https://idp.example.org/.well-known/openid-configuration")
    provider._metadata = {"issuer": "https://idp.example.org", "jwks_uri": "https://idp.example.org/jwks"}
    monkeypatch.setattr(provider, "_fetch_keys", lambda: (fetched.append(1), setattr(provider, "_keys_fetched", True)))
    clock = [1000.0]
    monkeypatch.setattr(openid.time, "monotonic", lambda: clock[0])
    for _ in range(5):
        with pytest.raises(openid.TokenRefused):
            provider._key("made-up")
    assert len(fetched) == 2  # the first fetch, and one more for the unknown kid
    clock[0] += openid.KEYS_REFETCH_SECONDS
    with pytest.raises(openid.TokenRefused):
        provider._key("made-up")
    assert len(fetched) == 3


# -- Keycloak and Entra: the documented configurations ---------------------------------------------


def test_keycloak_s_realm_by_its_documented_configuration(tmp_path, re_manager):
    redirect = f"{GATEWAY}/api/auth/provider/keycloak/code"
    with running_provider(tmp_path / "keycloak", [redirect], issuer_path="/realms/facility") as keycloak:
        config = documented_config("keycloak", {"https://keycloak.example.org/realms/facility": keycloak.issuer})
        config["api_access"] = POLICY
        with configured_app(re_manager, tmp_path, config, KEYCLOAK_CLIENT_SECRET=CLIENT_SECRET) as app:
            client = app.test_client()
            returned = _browser_sign_in(client, "dana", provider="keycloak")
            assert returned.status_code == 303, returned.get_data(as_text=True)
            who = client.get("/api/auth/whoami", headers=_session_of(client, returned.headers["Location"], "keycloak"))
            identity = who.get_json()["identities"][0]
            assert (identity["id"], identity["provider"]) == ("dana", "keycloak")
            erin = _provider_token(keycloak, "erin")
            assert client.get("/api/auth/scopes", headers=_bearer(erin)).get_json()["roles"] == ["expert"]


@pytest.fixture(scope="module")
def entra(tmp_path_factory):
    redirect = f"{GATEWAY}/api/auth/provider/entra/code"
    with running_provider(
        tmp_path_factory.mktemp("entra"),
        [redirect],
        issuer_path=f"/{TENANT}/v2.0",
        tenant=TENANT,
        client_id=ENTRA_CLIENT_ID,
        audience=ENTRA_AUDIENCE,
    ) as provider:
        yield provider


def test_entra_by_its_documented_configuration(entra, re_manager, tmp_path):
    config = documented_config("entra", {"https://login.microsoftonline.com": entra.base})
    config["api_access"] = POLICY
    with configured_app(re_manager, tmp_path, config, ENTRA_CLIENT_SECRET=CLIENT_SECRET) as app:
        client = app.test_client()
        returned = _browser_sign_in(client, "dana", provider="entra")
        assert returned.status_code == 303, returned.get_data(as_text=True)
        who = client.get("/api/auth/whoami", headers=_session_of(client, returned.headers["Location"], "entra"))
        assert who.get_json()["identities"][0]["id"] == "dana"  # preferred_username, Entra's default
        # the provider's own token for the exposed API, the group's object id mapped to a role
        claims = {**_claims("erin", iss=entra.issuer, aud=ENTRA_AUDIENCE), "tid": TENANT}
        assert ENTRA_STAFF_GROUP in claims["groups"]
        scopes = client.get("/api/auth/scopes", headers=_bearer(entra.sign(claims))).get_json()
        assert scopes["roles"] == ["expert"]


def test_entra_s_issuer_template_is_filled_in_from_the_token_s_tenant(entra):
    provider = openid.OpenIDProvider(well_known_uri=f"{entra.base}/common/v2.0/.well-known/openid-configuration")
    assert provider.metadata()["issuer"] == f"{entra.base}/{{tenantid}}/v2.0"
    claims = {**_claims("dana", iss=entra.issuer, aud=ENTRA_CLIENT_ID), "tid": TENANT}
    assert provider.verify(entra.sign(claims), audience=ENTRA_CLIENT_ID)["tid"] == TENANT
    other_tenant = {**claims, "tid": "another-tenant"}  # its issuer is not the template filled with its tid
    with pytest.raises(openid.TokenRefused):
        provider.verify(entra.sign(other_tenant), audience=ENTRA_CLIENT_ID)
    with pytest.raises(openid.TokenRefused):  # no tenant at all
        provider.verify(entra.sign({k: v for k, v in claims.items() if k != "tid"}), audience=ENTRA_CLIENT_ID)


def test_wrong_user_codes_and_device_codes_are_throttled_like_logins(oidc, re_manager, tmp_path):
    config = documented_config("facility", {"https://login.example.org": oidc.issuer})
    limits = {"QS_GATEWAY_LOGIN_FAILURES_PER_ADDRESS": "3/hour", "QS_GATEWAY_CREDENTIAL_FAILURES_PER_ADDRESS": "3/hour"}
    with configured_app(re_manager, tmp_path, config, OIDC_CLIENT_SECRET=CLIENT_SECRET, **limits) as app:
        client = app.test_client()
        guesses = [
            client.post("/api/auth/provider/facility/device_code", data={"user_code": f"BBBB-BBB{c}"}).status_code
            for c in "BCDF"
        ]
        assert guesses == [200, 200, 200, 429]  # the page again with "Unknown or expired code", then refused
        polls = [
            client.post("/api/auth/provider/facility/token", data={"device_code": f"guess-{n}"}).status_code
            for n in range(4)
        ]
        assert polls == [400, 400, 400, 429]


def test_a_provider_that_does_not_answer_is_503_not_a_failed_guess(re_manager, tmp_path):
    config = documented_config("facility", {"https://login.example.org": f"http://127.0.0.1:{free_port()}"})
    with configured_app(re_manager, tmp_path, config, OIDC_CLIENT_SECRET=CLIENT_SECRET) as app:
        client = app.test_client()
        away = client.get("/api/auth/provider/facility/authorize")
        assert away.status_code == 503 and "identity provider does not answer" in away.get_json()["detail"]
        token = jwt.encode({"sub": "dana"}, _private_pem(), algorithm="RS256", headers={"kid": "some-key"})
        assert client.get("/api/status", headers=_bearer(token)).status_code == 503
        hs256 = jwt.encode(
            {"sub": "dana"}, "a-shared-secret-of-thirty-two-bytes!", algorithm="HS256"
        )  # refused before any key is read
        assert client.get("/api/status", headers=_bearer(hs256)).status_code == 401


def test_entra_s_and_the_proxied_authenticator_s_configuration():
    entra = EntraAuthenticator(tenant_id=TENANT, client_id=ENTRA_CLIENT_ID, client_secret="s")
    assert entra.provider.well_known_uri == (
        f"https://login.microsoftonline.com/{TENANT}/v2.0/.well-known/openid-configuration"
    )
    assert entra.username_claim == "preferred_username" and entra.discovered  # nothing fetched yet
    with pytest.raises(ConfigError, match="tenant_id"):
        EntraAuthenticator(client_id=ENTRA_CLIENT_ID)
    args = {"audience": AUDIENCE, "client_id": CLIENT_ID, "well_known_uri": "https://login.example.org/x"}
    proxied = ProxiedOIDCAuthenticator(**args, role_mapping={"staff": ["expert", "observer"], "ops": "user"})
    assert proxied.mapped_roles({"groups": ["staff", "unknown"]}) == {"expert", "observer"}
    assert proxied.mapped_roles({"groups": "ops"}) == {"user"} and proxied.mapped_roles({}) == frozenset()
    assert proxied.device_flow_client_id == CLIENT_ID  # by default the same client
    with pytest.raises(ConfigError, match="role_mapping.staff"):
        ProxiedOIDCAuthenticator(**args, role_mapping={"staff": 3})
    with pytest.raises(ConfigError, match="audience"):
        ProxiedOIDCAuthenticator(**{**args, "audience": ""})


def test_redirects_on_success_and_failure_and_the_answer_without_a_page(oidc, re_manager, tmp_path):
    config = documented_config("facility", {"https://login.example.org": oidc.issuer})
    facility = config["authentication"]["providers"][0]["args"]
    facility["redirect_on_success"] = "https://portal.example.org/signed-in"
    facility["redirect_on_failure"] = "https://portal.example.org/failed"
    with configured_app(re_manager, tmp_path, config, OIDC_CLIENT_SECRET=CLIENT_SECRET) as app:
        client = app.test_client()
        success = _browser_sign_in(client, "dana", state="portal-state")
        assert success.status_code == 303
        assert success.headers["Location"].startswith("https://portal.example.org/signed-in?code=")
        assert "state=portal-state" in success.headers["Location"]
        failure = _browser_sign_in(client, "erin")
        assert failure.status_code == 303
        failed = urllib.parse.urlsplit(failure.headers["Location"])
        assert failed.path == "/failed"
        assert dict(urllib.parse.parse_qsl(failed.query)) == {"error": "User is not authorized to access the server"}
    without_page = documented_config("facility", {"https://login.example.org": oidc.issuer})
    with configured_app(re_manager, tmp_path, without_page, OIDC_CLIENT_SECRET=CLIENT_SECRET, QS_GATEWAY_UI="0") as app:
        client = app.test_client()
        answer = _browser_sign_in(client, "dana")
        assert answer.status_code == 200 and isinstance(answer.get_json(), str)  # the refresh token
        tokens = client.post("/api/auth/session/refresh", json={"refresh_token": answer.get_json()})
        assert tokens.status_code == 200
