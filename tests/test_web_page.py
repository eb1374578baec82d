"""The web page's server side, in-process: where it is served, its headers, its files, the
login providers it learns about, and the OpenID Connect redirect it takes over. The page itself
runs in Chromium in tests/test_web_ui.py."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import pytest

from qs_gateway.web import STATIC

from .auth_support import TOY_PROVIDER, auth_config, configured_app, provider
from .conftest import make_app

ASSETS = sorted(path.name for path in STATIC.iterdir())


def _secure(response) -> None:
    policy = response.headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'" and "unsafe-inline" not in policy
    assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
    assert directives["connect-src"] == "'self'" and directives["style-src"] == "'self'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize(("path", "assets"), [("/", "ui/"), ("/ui/", "")])
def test_the_page_is_served_at_the_root_and_under_ui_with_relative_asset_urls(anonymous, path, assets):
    response = anonymous.get(path)
    assert response.status_code == 200 and response.mimetype == "text/html"
    _secure(response)
    html = response.get_data(as_text=True)
    urls = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert urls and all(not url.startswith(("/", "http:", "https:")) for url in urls), urls
    assert f'src="{assets}app.js"' in html and f'href="{assets}style.css"' in html
    assert "<script>" not in html and " style=" not in html  # nothing inline for the policy to forbid
    # served again only when it changed
    again = anonymous.get(path, headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304


def test_ui_without_a_slash_is_sent_to_ui_with_one(anonymous):
    response = anonymous.get("/ui")
    assert response.status_code == 308 and response.headers["Location"] == "ui/"


@pytest.mark.parametrize("name", ASSETS)
def test_every_file_of_the_page_is_served_with_the_policy(anonymous, name):
    response = anonymous.get(f"/ui/{name}")
    assert response.status_code == 200
    _secure(response)
    expected = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}[Path(name).suffix]
    assert response.mimetype == expected
    assert response.headers["Cache-Control"] == "no-cache" and response.headers["ETag"]


def test_the_page_is_small_and_uses_no_third_party_code():
    total = sum(path.stat().st_size for path in STATIC.iterdir())
    assert total < 300_000
    for path in STATIC.glob("*.js"):
        text = path.read_text()
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text and "eval(" not in text, path.name
        # modules import only each other, by relative URL
        for imported in re.findall(r'from "([^"]+)"', text):
            assert imported.startswith("./") and (STATIC / imported[2:]).exists(), (path.name, imported)


def test_unknown_files_and_escapes_are_not_found(anonymous):
    for path in ("/ui/nothing.js", "/ui/../app.py", "/ui/%2e%2e/__init__.py"):
        response = anonymous.get(path)
        assert response.status_code == 404 and response.get_json() == {"detail": "Not Found"}, path


def test_the_page_can_be_turned_off(re_manager):
    client = make_app(re_manager, QS_GATEWAY_UI="0").test_client()
    for path in ("/", "/ui/", "/ui/app.js"):
        assert client.get(path).status_code == 404, path


def test_providers_in_single_user_mode(anonymous):
    assert anonymous.get("/api/auth/providers").get_json() == {
        "providers": [],
        "single_user": True,
        "anonymous": False,
    }


@pytest.fixture
def oidc_app(re_manager, tmp_path):
    oidc = provider(
        "orcid",
        "OIDCAuthenticator",
        client_id="the-client",
        client_secret="secret",
        redirect_uri="https://qs.example.org/api/auth/provider/orcid/code",
        token_uri="https://idp.example.org/token",
        authorization_endpoint="https://idp.example.org/authorize?client_id={client_id}&redirect_uri={redirect_uri}",
        public_keys=[{"kty": "oct", "k": "c2VjcmV0", "alg": "HS256", "kid": "k"}],
    )
    plain = {**oidc, "provider": "plain"}
    plain["args"] = {**oidc["args"], "authorization_endpoint": "https://idp.example.org/authorize"}
    config = auth_config([TOY_PROVIDER, oidc, plain], anonymous=True)
    with configured_app(re_manager, tmp_path, config) as app:
        yield app


def test_providers_name_each_login_and_how_it_starts(oidc_app):
    client = oidc_app.test_client()
    answer = client.get("/api/auth/providers", headers={"X-Forwarded-Prefix": "/ignored"}).get_json()
    assert answer["single_user"] is False and answer["anonymous"] is True
    toy, orcid, plain = answer["providers"]
    assert toy == {"name": "toy", "mode": "password", "token_url": "/api/auth/provider/toy/token"}
    assert orcid["mode"] == "external" and orcid["code_url"] == "/api/auth/provider/orcid/code"
    # bluesky-httpserver's template form of authorization_endpoint is filled in
    redirect = urllib.parse.quote("https://qs.example.org/api/auth/provider/orcid/code", safe="")
    assert (
        orcid["authorization_url"] == f"https://idp.example.org/authorize?client_id=the-client&redirect_uri={redirect}"
    )
    # a plain endpoint gets the standard parameters
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(plain["authorization_url"]).query))
    assert query == {
        "response_type": "code",
        "scope": "openid",
        "client_id": "the-client",
        "redirect_uri": "https://qs.example.org/api/auth/provider/orcid/code",
    }


def test_an_identity_providers_redirect_goes_on_to_the_page_when_the_page_started_it(oidc_app):
    client = oidc_app.test_client()
    response = client.get("/api/auth/provider/orcid/code?code=abc&state=qsui.0123&session_state=x")
    assert response.status_code == 303
    assert response.headers["Location"] == "/ui/?code=abc&state=qsui.0123"
    # any other sign-in is exchanged at the provider as before, not sent on (here the provider's
    # address does not exist: 503, "the identity provider does not answer")
    assert client.get("/api/auth/provider/orcid/code?code=abc&state=other").status_code == 503
    assert client.post("/api/auth/provider/orcid/code?code=abc&state=qsui.0123").status_code == 503
