"""Fixtures of the web page test modules, one gateway (gunicorn, two workers) and one Chromium per
module that takes them. A module takes them by assigning them to names of its own.

Most modules need no more than the toy logins: ``web_gateway``, ``driver`` and ``page``, each
test's page signed in with bob's API key. tests/test_web_ui*.py need more: a gateway with an
OpenID Connect login too and short-lived access tokens, a browser that takes nginx's self-signed
certificate, and pages signed in to nothing."""

from __future__ import annotations

import pytest

from qs_gateway.serving.stack import free_port

from .auth_support import ROLES, TOY_PROVIDER, provider
from .test_oidc import CLIENT_ID, CLIENT_SECRET, GOOD_CODE, IdentityProvider
from .web_support import SignInPage, recorded_page, start_chromium, start_web_gateway

WINDOW = (1400, 1500)
ACCESS_TOKEN_SECONDS = 3  # of the gateway with OpenID Connect: a page renews its tokens often


@pytest.fixture(scope="module")
def web_gateway(tmp_path_factory, re_manager):
    users = {name: {"roles": roles} for name, roles in ROLES.items()}
    gateway = start_web_gateway(tmp_path_factory.mktemp("web-page"), re_manager, [TOY_PROVIDER], users)
    yield gateway
    gateway.process.stop()


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    chromium = start_chromium(tmp_path_factory.mktemp("chromium") / "profile", "--window-size={},{}".format(*WINDOW))
    yield chromium
    chromium.quit()


@pytest.fixture
def page(driver, tmp_path, request, web_gateway):
    """The page signed in with bob's key, in a window of the usual size."""
    driver.set_window_size(*WINDOW)
    with recorded_page(driver, tmp_path, request.node.name) as page:
        page.open(web_gateway.url + "/")
        page.sign_in_with_key(web_gateway.api_key)
        yield page


# -- the gateway with OpenID Connect too, for tests/test_web_ui*.py ---------------------------------


@pytest.fixture(scope="module")
def identity_provider():
    """An OpenID Connect provider, and its sign-in page that sends the browser straight back."""
    idp = IdentityProvider()
    sign_in_page = SignInPage(GOOD_CODE)
    yield idp, sign_in_page
    sign_in_page.close()
    idp.server.close()


@pytest.fixture(scope="module")
def web_gateway_with_oidc(tmp_path_factory, re_manager, identity_provider):
    """gunicorn (two workers) with the toy logins and an OpenID Connect provider (dana signs in
    there), its access tokens short-lived."""
    idp, sign_in_page = identity_provider
    workdir = tmp_path_factory.mktemp("web")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    oidc = provider(
        "oidc",
        "OIDCAuthenticator",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        # bluesky-httpserver's convention: the identity provider sends the browser to the code endpoint
        redirect_uri=f"{url}/api/auth/provider/oidc/code",
        token_uri=f"{idp.server.url}/token",
        authorization_endpoint=sign_in_page.url,
        public_keys=[idp.jwk],
        issuer=idp.server.url,
    )
    users = {name: {"roles": roles} for name, roles in ROLES.items()} | {"dana": {"roles": "user"}}
    gateway = start_web_gateway(
        workdir, re_manager, [TOY_PROVIDER, oidc], users, port=port, access_token_max_age=ACCESS_TOKEN_SECONDS
    )
    yield gateway
    gateway.process.stop()


@pytest.fixture(scope="module")
def driver_trusting_nginx(tmp_path_factory):
    chromium = start_chromium(
        tmp_path_factory.mktemp("chromium") / "profile",
        "--window-size=1400,1500",
        "--ignore-certificate-errors",  # nginx in front serves a self-signed certificate
    )
    yield chromium
    chromium.quit()


@pytest.fixture
def page_signed_out(driver, tmp_path, request):
    """A page of its own for each test, signed in to nothing."""
    with recorded_page(driver, tmp_path, request.node.name) as page:
        yield page
