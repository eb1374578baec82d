"""Single sign-on end to end: gunicorn with two workers, the real OpenID provider (npm's
oidc-provider), headless Chromium as the person, and bluesky-queueserver-api as the script.

The browser signs in to the web page through the provider's own login page; a script's device
sign-in is approved by Chromium entering the user code; a script signs in at the provider itself
(its device flow, Chromium again) and uses the provider's token at the gateway.
"""

from __future__ import annotations

import httpx
import pytest
from bluesky_queueserver_api.http import REManagerAPI
from selenium.webdriver.common.by import By

from qs_gateway.serving.stack import free_port, start_gateway

from .auth_support import private_prefix, write_config
from .oidc_support import CLIENT_SECRET, USERS, documented_config, poll_device_sign_in, running_provider
from .support import PLAN_COUNT
from .web_support import Page, recorded_page, start_chromium

PROVIDER = "facility"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, re_manager):
    """The provider and the gateway (configured as docs/authentication.md's generic example)."""
    workdir = tmp_path_factory.mktemp("sso")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running_provider(workdir, [f"{url}/api/auth/provider/{PROVIDER}/code"]) as oidc:
        config = documented_config(PROVIDER, {"https://login.example.org": oidc.issuer})
        env = re_manager.gateway_env(
            QSERVER_HTTP_SERVER_CONFIG=write_config(workdir, config),
            QS_GATEWAY_REDIS_PREFIX=private_prefix(),
            QS_GATEWAY_WORKERS="2",  # the sign-in's steps may land on either worker
            OIDC_CLIENT_SECRET=CLIENT_SECRET,
        )
        process, url = start_gateway(workdir, env, port=port, log_name="gateway-sso.log")
        try:
            yield oidc, url
        finally:
            process.stop()


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    chromium = start_chromium(tmp_path_factory.mktemp("chromium") / "profile", "--window-size=1200,1000")
    yield chromium
    chromium.quit()


@pytest.fixture
def page(driver, tmp_path, request):
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})  # no sign-in left at the provider
    with recorded_page(driver, tmp_path, request.node.name) as page:
        yield page


def _sign_in_at_provider_page(page: Page, user: str) -> None:
    """The provider's own login page, as a person fills it in.

    The provider always asks: each test starts without its cookies. Waiting for the login form
    itself, not for "an address that is not an interaction", matters: right after a click the
    browser still shows the page clicked on, whose address is not an interaction either.
    """
    driver = page.driver
    page.wait(lambda: driver.find_elements(By.ID, "login"), "the provider's login page")
    driver.find_element(By.ID, "login").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(USERS[user]["password"])
    driver.find_element(By.ID, "sign-in").click()


def test_the_web_page_signs_in_through_the_provider_s_login_page(stack, page):
    oidc, url = stack
    page.open(f"{url}/ui/")
    signin = page.sign_in_region()
    page.button(f"Sign in with {PROVIDER}", signin).click()
    page.wait(lambda: page.driver.current_url.startswith(oidc.base), "the provider's page")
    _sign_in_at_provider_page(page, "dana")
    page.wait(lambda: page.region("Status").is_displayed(), "the Status region")
    page.wait(lambda: "Signed in as dana" in page.driver.find_element(By.ID, "account-name").text, "dana's name")
    assert "code=" not in page.driver.current_url  # the one-time code is out of the address bar


def _device_sign_in_in_browser(page: Page, verification_uri: str, user_code: str, user: str) -> None:
    page.open(verification_uri)
    field = page.field("Code shown by your terminal")
    field.clear()
    field.send_keys(user_code)
    page.button(f"Sign in with {PROVIDER}").click()
    _sign_in_at_provider_page(page, user)
    page.wait(lambda: page.driver.find_elements(By.ID, "confirmation"), "the confirmation")


def test_a_script_s_device_sign_in_approved_in_chromium_then_bluesky_queueserver_api(stack, page):
    oidc, url = stack
    started = httpx.post(f"{url}/api/auth/provider/{PROVIDER}/authorize").json()
    _device_sign_in_in_browser(page, started["verification_uri"], started["user_code"], "dana")
    tokens = poll_device_sign_in(
        lambda: httpx.post(f"{url}/api/auth/provider/{PROVIDER}/token", data={"device_code": started["device_code"]}),
        started["interval"],
    )
    rm = REManagerAPI(http_server_uri=url)
    try:
        rm.set_authorization_key(token=tokens["access_token"], refresh_token=tokens["refresh_token"])
        assert rm.status()["manager_state"] in ("idle", "executing_queue", "paused")
        added = rm.item_add(PLAN_COUNT)
        assert added["success"] is True and added["item"]["user"] == "dana"
        rm.item_remove(uid=added["item"]["item_uid"])
    finally:
        rm.close()


def test_a_script_with_the_provider_s_own_token_from_its_device_flow(stack, page):
    oidc, url = stack
    started = oidc.device_token()
    page.open(started["verification_uri_complete"])
    page.wait(lambda: page.driver.find_elements(By.TAG_NAME, "button"), "the provider's code page")
    page.driver.find_element(By.TAG_NAME, "button").click()  # the code is filled in: Continue
    _sign_in_at_provider_page(page, "erin")
    page.wait(lambda: page.driver.title in ("Confirm the device", "Signed in"), "the provider's next page")
    if page.driver.title == "Confirm the device":  # the provider may ask, depending on its version
        page.driver.find_element(By.TAG_NAME, "button").click()
    page.wait(lambda: page.driver.title == "Signed in", "the provider's success page")
    token = oidc.device_access_token(started["device_code"])
    rm = REManagerAPI(http_server_uri=url)
    try:
        rm.set_authorization_key(token=token)
        assert rm.status()["manager_state"] in ("idle", "executing_queue", "paused")
        # erin is not in the policy: her group gives her the expert role, hence its scopes
        scopes = httpx.get(f"{url}/api/auth/scopes", headers={"Authorization": f"Bearer {token}"}).json()
        assert scopes["roles"] == ["expert"] and "write:permissions" in scopes["scopes"]
    finally:
        rm.close()
