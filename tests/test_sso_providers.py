"""Single sign-on with the providers docs/authentication.md documents, and its edges: Keycloak's
realm and Entra (its tenant's issuer template, its group ids as roles) configured as documented,
wrong codes throttled, a provider that does not answer, the authenticators' configuration, and
the redirects after a sign-in. The gateway runs in-process; the provider is the real one of
tests/oidc_support.py (npm's oidc-provider), playing Keycloak and Entra at their paths.
"""

from __future__ import annotations

import urllib.parse

import jwt
import pytest

from qs_gateway.auth.providers import openid
from qs_gateway.auth.providers.oidc import EntraAuthenticator
from qs_gateway.auth.providers.proxied import ProxiedOIDCAuthenticator
from qs_gateway.config import ConfigError
from qs_gateway.serving.stack import free_port

from . import oidc_support
from .auth_support import configured_app
from .oidc_support import (
    AUDIENCE,
    CLIENT_ID,
    CLIENT_SECRET,
    ENTRA_AUDIENCE,
    ENTRA_CLIENT_ID,
    ENTRA_STAFF_GROUP,
    GATEWAY,
    POLICY,
    TENANT,
    bearer_header,
    browser_sign_in,
    documented_config,
    private_pem,
    provider_token,
    running_provider,
    signed_in_identity,
    token_claims,
)

oidc = oidc_support.oidc  # this module's provider


# -- Keycloak and Entra: the documented configurations ---------------------------------------------


def test_keycloak_s_realm_by_its_documented_configuration(tmp_path, re_manager):
    redirect = f"{GATEWAY}/api/auth/provider/keycloak/code"
    with running_provider(tmp_path / "keycloak", [redirect], issuer_path="/realms/facility") as keycloak:
        config = documented_config("keycloak", {"https://keycloak.example.org/realms/facility": keycloak.issuer})
        config["api_access"] = POLICY
        with configured_app(re_manager, tmp_path, config, KEYCLOAK_CLIENT_SECRET=CLIENT_SECRET) as app:
            client = app.test_client()
            identity = signed_in_identity(client, "dana", "keycloak")
            assert (identity["id"], identity["provider"]) == ("dana", "keycloak")
            erin = provider_token(keycloak, "erin")
            assert client.get("/api/auth/scopes", headers=bearer_header(erin)).get_json()["roles"] == ["expert"]


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
        assert signed_in_identity(client, "dana", "entra")["id"] == "dana"  # preferred_username, Entra's default
        # the provider's own token for the exposed API, the group's object id mapped to a role
        claims = {**token_claims("erin", iss=entra.issuer, aud=ENTRA_AUDIENCE), "tid": TENANT}
        assert ENTRA_STAFF_GROUP in claims["groups"]
        scopes = client.get("/api/auth/scopes", headers=bearer_header(entra.sign(claims))).get_json()
        assert scopes["roles"] == ["expert"]


def test_entra_s_issuer_template_is_filled_in_from_the_token_s_tenant(entra):
    provider = openid.OpenIDProvider(well_known_uri=f"{entra.base}/common/v2.0/.well-known/openid-configuration")
    assert provider.metadata()["issuer"] == f"{entra.base}/{{tenantid}}/v2.0"
    claims = {**token_claims("dana", iss=entra.issuer, aud=ENTRA_CLIENT_ID), "tid": TENANT}
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
        token = jwt.encode({"sub": "dana"}, private_pem(), algorithm="RS256", headers={"kid": "some-key"})
        assert client.get("/api/status", headers=bearer_header(token)).status_code == 503
        hs256 = jwt.encode(
            {"sub": "dana"}, "a-shared-secret-of-thirty-two-bytes!", algorithm="HS256"
        )  # refused before any key is read
        assert client.get("/api/status", headers=bearer_header(hs256)).status_code == 401


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
        success = browser_sign_in(client, "dana", state="portal-state")
        assert success.status_code == 303
        assert success.headers["Location"].startswith("https://portal.example.org/signed-in?code=")
        assert "state=portal-state" in success.headers["Location"]
        failure = browser_sign_in(client, "erin")
        assert failure.status_code == 303
        failed = urllib.parse.urlsplit(failure.headers["Location"])
        assert failed.path == "/failed"
        assert dict(urllib.parse.parse_qsl(failed.query)) == {"error": "User is not authorized to access the server"}
    without_page = documented_config("facility", {"https://login.example.org": oidc.issuer})
    with configured_app(re_manager, tmp_path, without_page, OIDC_CLIENT_SECRET=CLIENT_SECRET, QS_GATEWAY_UI="0") as app:
        client = app.test_client()
        answer = browser_sign_in(client, "dana")
        assert answer.status_code == 200 and isinstance(answer.get_json(), str)  # the refresh token
        tokens = client.post("/api/auth/session/refresh", json={"refresh_token": answer.get_json()})
        assert tokens.status_code == 200
