"""Signing in to the web page through its login providers, in real headless Chromium against
gunicorn with two workers: a password login that stays signed in across token refreshes and
reloads and is signed out cleanly, and the OpenID Connect sign-in. The gateway (short-lived access
tokens) and the browser are those of tests/test_web_ui.py, started again for this module.
"""

from __future__ import annotations

from selenium.webdriver.common.by import By

from . import web_fixtures
from .auth_support import PASSWORDS
from .test_oidc import CLIENT_ID
from .web_fixtures import ACCESS_TOKEN_SECONDS
from .web_support import TOY

identity_provider = web_fixtures.identity_provider
web_gateway = web_fixtures.web_gateway_with_oidc
driver, page = web_fixtures.driver_trusting_nginx, web_fixtures.page_signed_out


def test_a_provider_login_stays_signed_in_across_token_refreshes_and_reloads(page, web_gateway, manager_idle):
    page.open(web_gateway.url + "/")
    page.sign_in_with_password(TOY, "bob", PASSWORDS["bob"])
    account = page.driver.find_element(By.ID, "account")
    assert "Signed in as bob" in account.text
    # no credential is kept in localStorage; only the refresh token, for this tab
    assert page.driver.execute_script("return localStorage.length") == 0
    stored = page.driver.execute_script("return Object.keys(sessionStorage)")
    assert stored == ["qs-gateway.refresh-token"]

    # several access-token lifetimes pass: the page renews its tokens before each one ends
    seen = set()

    def renewed_twice() -> bool:
        seen.add(page.driver.execute_script("return sessionStorage.getItem('qs-gateway.refresh-token')"))
        return len(seen) >= 3

    page.wait(renewed_twice, "two renewals of the tokens", timeout=10 * ACCESS_TOKEN_SECONDS)
    page.button("Add queue stop").click()
    page.wait(lambda: len(page.queue_rows()) == 1, "the instruction in the queue")
    assert "Signed in as bob" in account.text and not page.region("Sign in").is_displayed()

    page.driver.refresh()
    page.wait(lambda: page.driver.find_element(By.ID, "account").is_displayed(), "the account after a reload")
    assert "Signed in as bob" in page.driver.find_element(By.ID, "account").text
    page.wait(lambda: len(page.queue_rows()) == 1, "the queue after a reload")

    page.button("Sign out").click()
    page.wait(lambda: page.region("Sign in").is_displayed(), "the Sign in region")
    assert page.driver.execute_script("return sessionStorage.length") == 0
    assert not page.driver.find_element(By.ID, "workspace").is_displayed()


def test_openid_connect_sign_in(page, web_gateway, identity_provider, manager_idle):
    _, sign_in_page = identity_provider
    page.open(web_gateway.url + "/")
    signin = page.sign_in_region()
    page.button("Sign in with oidc", signin).click()  # an external provider has a button of its own
    page.wait(lambda: page.driver.find_element(By.ID, "account").is_displayed(), "the signed-in page")
    assert "Signed in as dana" in page.driver.find_element(By.ID, "account").text
    assert page.driver.current_url == f"{web_gateway.url}/ui/"  # the code is gone from the address
    asked = sign_in_page.authorizations[-1]
    assert asked["client_id"] == CLIENT_ID and asked["response_type"] == "code"
    assert asked["state"].startswith("qsui.")
    page.wait(lambda: page.status("Manager state") == "idle", "the status")
