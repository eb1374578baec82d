"""Fixtures of the web page test modules that need no more than the toy logins: one gateway
(gunicorn, two workers) and one Chromium per module, and each test's page signed in with bob's
API key. A module takes them by assigning them to names of its own."""

from __future__ import annotations

import pytest

from .auth_support import ROLES, TOY_PROVIDER
from .web_support import recorded_page, start_chromium, start_web_gateway

WINDOW = (1400, 1500)


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
