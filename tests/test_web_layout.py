"""The web page's layout and access, in headless Chromium against gunicorn (two workers) and the
real RE Manager: from a 390-pixel phone to a 2560-pixel control-room screen nothing scrolls
sideways or is cut off, the dark theme follows the system, every control is reached with the
Tab key, and axe-core finds no serious or critical violation in any state visited.

``QS_GATEWAY_SCREENSHOT_DIR=docs pytest tests/test_web_layout.py`` also writes the pictures of
docs/web-page.md (web-ui-phone.png; web-ui.png comes from tests/test_web_ui.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from . import web_fixtures
from .auth_support import PASSWORDS
from .support import wait_for

# this module's gateway, browser and signed-in page
web_gateway, driver, page = web_fixtures.web_gateway, web_fixtures.driver, web_fixtures.page

PHONE, TABLET, DESKTOP, CONTROL_ROOM = (390, 844), (768, 1024), (1400, 1000), (2560, 1440)
CONTROLS = "button, input, select, textarea, [tabindex='0']"


def _emulate(page, size: tuple[int, int], dark: bool = False) -> None:
    width, height = size
    page.driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )
    scheme = "dark" if dark else "light"
    features = [{"name": "prefers-color-scheme", "value": scheme}]
    page.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": features})


@pytest.fixture
def emulation(driver):
    yield
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def _cut_off(page) -> list[str]:
    """Visible controls and headings that reach past the right edge of the window."""
    return page.driver.execute_script(
        "const width = document.documentElement.clientWidth;"
        "return [...document.querySelectorAll(arguments[0] + ', h1, h2, h3, label, td, dd')]"
        "  .filter(e => e.offsetParent !== null && e.getBoundingClientRect().right > width + 0.5)"
        "  .map(e => e.outerHTML.slice(0, 120));",
        CONTROLS,
    )


def _check(page, what: str) -> None:
    """The page as it is now: no sideways scrolling, nothing cut off, no axe violation."""
    page.wait(lambda: page.sideways_overflow() <= 0, f"no sideways scrolling ({what})")
    assert _cut_off(page) == [], what
    assert page.accessibility_violations() == [], what


def _with_content(web_gateway, manager_open) -> None:
    """A finished item (with its run) in the history and three items in the queue."""
    item = {"item_type": "plan", "name": "count", "args": [["det1", "det2"]], "kwargs": {"num": 2}}
    assert web_gateway.api("POST", "queue/item/add", json={"item": item}).json()["success"] is True
    assert web_gateway.api("POST", "queue/start").json()["success"] is True
    wait_for(lambda: manager_open.status()["items_in_history"] == 1, 60, "the item to finish")
    wait_for(lambda: manager_open.status()["manager_state"] == "idle", 30, "the queue to stop")
    items = [{**item, "kwargs": {"num": n, "delay": 0.1}} for n in (3, 4, 5)]
    assert web_gateway.api("POST", "queue/item/add/batch", json={"items": items}).json()["success"] is True


def _screenshot(page, name: str) -> None:
    directory = os.environ.get("QS_GATEWAY_SCREENSHOT_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        page.driver.save_screenshot(str(Path(directory) / name))


@pytest.mark.parametrize("size", [PHONE, TABLET, DESKTOP, CONTROL_ROOM], ids=lambda s: f"{s[0]}px")
def test_every_width_from_phone_to_control_room(page, web_gateway, manager_open, emulation, size):
    _with_content(web_gateway, manager_open)
    _emulate(page, size)
    page.wait(lambda: len(page.queue_rows()) == 3 and page.history_statuses() == ["completed"], "queue and history")
    _check(page, "the signed-in page")
    if size == PHONE:  # the queue, on a phone
        page.driver.execute_script("arguments[0].scrollIntoView()", page.region("Queue"))
        _screenshot(page, "web-ui-phone.png")
    # the queue and the console use the room there is
    assert page.region("Console").rect["width"] >= 0.9 * size[0] - 40
    assert page.region("Queue").rect["width"] >= 0.4 * size[0]

    # the states a person goes through: an item's details, a selection, a question
    page.buttons("Details", page.region("History"))[0].click()
    page.wait(lambda: page.driver.find_elements(By.CSS_SELECTOR, ".details-row"), "the details")
    page.queue_rows()[0].find_element(By.CSS_SELECTOR, ".pick").click()
    _check(page, "details and a selection")
    page.button("Remove selected").click()
    dialog = page.driver.find_element(By.ID, "confirm")
    page.wait(dialog.is_displayed, "the question")
    _check(page, "the question")
    page.button("Cancel", dialog).click()


def test_the_dark_theme_follows_the_system(page, web_gateway, manager_open, emulation):
    _with_content(web_gateway, manager_open)
    page.wait(lambda: len(page.queue_rows()) == 3, "the queue")
    background = "return getComputedStyle(document.querySelector('.panel')).backgroundColor"
    light = page.driver.execute_script(background)
    for size in (DESKTOP, PHONE):
        _emulate(page, size, dark=True)
        page.wait(lambda: page.driver.execute_script(background) != light, "the dark colours")
        red, green, blue = (int(part) for part in page.driver.execute_script(background)[4:-1].split(","))
        assert max(red, green, blue) < 60, (red, green, blue)
        _check(page, f"dark at {size[0]} px")


def test_every_control_is_reached_with_the_tab_key(page, web_gateway, manager_open):
    _with_content(web_gateway, manager_open)
    page.wait(lambda: len(page.queue_rows()) == 3 and page.history_statuses() == ["completed"], "queue and history")
    page.driver.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
    controls = page.driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].filter(e => e.offsetParent !== null && !e.disabled"
        " && e.type !== 'radio')",
        CONTROLS,
    )
    reached = []
    for _ in range(3 * len(controls)):
        ActionChains(page.driver).send_keys(Keys.TAB).perform()  # to whatever has the focus
        active = page.driver.switch_to.active_element
        if reached and active == reached[0]:
            break
        reached.append(active)
    missing = [c.get_attribute("outerHTML")[:100] for c in controls if c not in reached]
    assert missing == []


def test_the_sign_in_page_and_an_observer(page, web_gateway, manager_idle, emulation):
    for size in (PHONE, DESKTOP):
        page.open(web_gateway.url + "/")  # a new tab: signed out
        _emulate(page, size)
        page.sign_in_region()
        _check(page, f"the sign-in page at {size[0]} px")
        page.sign_in_with_password("toy (user name and password)", "olga", PASSWORDS["olga"])
        page.wait(lambda: page.status("Manager state") == "idle", "the status")
        _check(page, f"an observer's page at {size[0]} px")


def test_an_account_that_may_not_read_the_queue_is_told_so(page, web_gateway, manager_idle):
    page.open(web_gateway.url + "/")
    page.sign_in_with_password("toy (user name and password)", "adam", PASSWORDS["adam"])  # role admin
    page.wait(lambda: page.status("Manager state") == "idle", "the status")
    note = page.driver.find_element(By.ID, "unseen-panels")
    page.wait(note.is_displayed, "the note")
    for what in ("the queue (read:queue)", "the history (read:history)", "the console output (read:console)"):
        assert what in note.text
    assert not page.region("Queue").is_displayed()
    (start,) = page.visible_buttons("Start queue")
    assert not start.is_enabled() and "lacks the scope write:queue:control" in page.description(start)
    _check(page, "an administrator's page")
