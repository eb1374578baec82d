"""Single sign-on against a real OpenID provider (npm's oidc-provider, tests/oidc/provider.mjs):
discovery, the browser sign-in (PKCE, state, nonce), the device-code sign-in, the provider's own
tokens (proxied), bad tokens refused, and key rotation. The gateway runs in-process; the person
at the provider's pages is an HTTP client (tests/test_sso_browser.py does it in Chromium).
Keycloak, Entra and the configuration's edges: tests/test_sso_providers.py.
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

from qs_gateway.auth.providers import openid

from . import oidc_support
from .auth_support import configured_app
from .oidc_support import (
    CLIENT_ID,
    CLIENT_SECRET,
    GATEWAY,
    POLICY,
    REDIRECT_URI,
    USERS,
    bearer_header,
    browser_sign_in,
    documented_config,
    poll_device_sign_in,
    private_pem,
    provider_token,
    session_of,
    sign_in_at_provider,
    token_claims,
)

oidc = oidc_support.oidc  # this module's provider


@pytest.fixture
def gateway(oidc, tmp_path, re_manager):
    config = documented_config("facility", {"https://login.example.org": oidc.issuer})
    assert config["api_access"] == POLICY  # dana is a user; erin is the provider's user only
    with configured_app(re_manager, tmp_path, config, OIDC_CLIENT_SECRET=CLIENT_SECRET) as app:
        yield app.test_client()


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
    returned = browser_sign_in(gateway, "dana")
    assert returned.status_code == 303, returned.get_data(as_text=True)
    location = returned.headers["Location"]
    assert location.startswith("/ui/?") and "state=page-state" in location
    who = gateway.get("/api/auth/whoami", headers=session_of(gateway, location)).get_json()
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
    returned = browser_sign_in(gateway, "erin")
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


def test_the_provider_s_own_access_token_from_its_device_flow(gateway, oidc):
    started = oidc.device_token()
    sign_in_at_provider(started["verification_uri_complete"], "erin", USERS["erin"]["password"], GATEWAY)
    token = oidc.device_access_token(started["device_code"])
    who = gateway.get("/api/auth/whoami", headers=bearer_header(token)).get_json()
    assert who["identities"] == [{"id": "erin", "provider": "facility-tokens", "latest_login": None}]
    assert who["roles"] == ["expert"]  # her group beamline-staff, mapped
    assert gateway.post("/api/permissions/reload", json={}, headers=bearer_header(token)).status_code == 200


def test_proxied_tokens_get_the_roles_of_the_policy_and_of_their_groups_and_only_their_scopes(gateway, oidc):
    dana = provider_token(oidc, "dana")
    assert gateway.get("/api/auth/scopes", headers=bearer_header(dana)).get_json()["roles"] == ["user"]
    refused = gateway.post("/api/permissions/reload", json={}, headers=bearer_header(dana))
    assert refused.status_code == 401 and refused.get_json()["detail"].startswith("Not enough permissions")
    assert gateway.get("/api/status", headers=bearer_header(dana)).status_code == 200
    stranger = gateway.get("/api/status", headers=bearer_header(provider_token(oidc, "mallory", groups=["visitors"])))
    assert (
        stranger.status_code == 401 and stranger.get_json()["detail"] == "User is not authorized to access the server"
    )


def _foreign_key_token(oidc, claims: dict) -> str:
    real_kid = jwt.get_unverified_header(oidc.sign(claims))["kid"]
    return jwt.encode(claims, private_pem(), algorithm="RS256", headers={"kid": real_kid})


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
    claims = token_claims("dana", iss=oidc.issuer)
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
    answer = gateway.get("/api/status", headers=bearer_header(token))
    assert answer.status_code == 401 and answer.get_json()["detail"] == "Could not validate credentials"


def test_after_the_provider_rotates_its_keys_the_next_token_still_works(gateway, oidc):
    assert gateway.get("/api/status", headers=bearer_header(provider_token(oidc, "dana"))).status_code == 200
    new_kid = oidc.rotate_keys()
    token = provider_token(oidc, "dana")
    assert jwt.get_unverified_header(token)["kid"] == new_kid
    assert gateway.get("/api/status", headers=bearer_header(token)).status_code == 200
    # and a browser sign-in, whose id_token is signed with the new key
    assert browser_sign_in(gateway, "dana").status_code == 303


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
