"""The web page in real headless Chromium, against gunicorn with two workers, the real RE Manager
and Redis: the environment, the queue edited through the form and by dragging, a plan run with
its output and history, an observer's disabled controls, the console after the workers restart,
the page under a prefix behind nginx, and single-user mode with its streams refused. One gateway
(with password and OpenID Connect logins, short-lived access tokens) and one browser serve the
whole module; signing in through the providers: tests/test_web_ui_sign_in.py. Each test saves a
screenshot under its temporary directory and prints where (pytest shows it when the test fails).

``QS_GATEWAY_SCREENSHOT_DIR=docs pytest tests/test_web_ui.py`` also writes the picture of the
README and docs/web-page.md (docs/web-ui.png).
"""

from __future__ import annotations

import os
import re
import signal
import ssl
import time
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from qs_gateway.serving.stack import start_gateway, stopped_on_failure

from . import web_fixtures
from .auth_support import PASSWORDS, private_prefix
from .support import API_KEY, PLAN_SLOW, self_signed_certificate, wait_for
from .test_deploy import start_nginx
from .web_support import TOY, Page, WebGateway

identity_provider = web_fixtures.identity_provider
web_gateway = web_fixtures.web_gateway_with_oidc
driver, page = web_fixtures.driver_trusting_nginx, web_fixtures.page_signed_out

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def _readme_screenshot(driver) -> None:
    directory = os.environ.get("QS_GATEWAY_SCREENSHOT_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        driver.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
        driver.save_screenshot(str(Path(directory) / "web-ui.png"))


def _choose_devices(page: Page, parameter: str, *names: str) -> None:
    select = Select(page.field(parameter, page.region("Queue")))
    for name in names:
        select.select_by_visible_text(name)


def _fill_count(page: Page, detector: str, num: str) -> None:
    queue = page.region("Queue")
    page.choose(page.field("Plan", queue), "count")
    page.wait(lambda: page.field("num", queue), "the field num")
    _choose_devices(page, "detectors", detector)
    page.field("num", queue).send_keys(num)


def _queue_uids_and_nums(zmq_rm) -> list[tuple[str, object]]:
    return [(item["item_uid"], item.get("kwargs", {}).get("num")) for item in zmq_rm.queue_get()["items"]]


def test_sign_in_with_an_api_key_and_open_the_environment(page, web_gateway, manager_closed):
    page.open(web_gateway.url + "/")
    page.sign_in_with_key(web_gateway.api_key)
    page.wait_status("Environment", lambda text: text == "closed", "closed")  # the first status
    assert "Signed in as bob (API key)" in page.driver.find_element(By.ID, "account").text
    # the key was kept for this tab only
    assert page.driver.execute_script("return localStorage.length") == 0

    # light on the wire: the first load is small, and no file of the page is fetched twice
    loaded = page.driver.execute_script(
        "return [performance.getEntriesByType('navigation')[0].transferSize,"
        " performance.getEntriesByType('resource').map(e => [e.name, e.transferSize])]"
    )
    assert loaded[0] + sum(size for _, size in loaded[1]) < 300_000, loaded
    files = [name for name, _ in loaded[1] if "/ui/" in name]
    assert len(files) == len(set(files)) >= 14, files

    page.button("Open environment").click()
    page.wait_status("Environment", lambda text: text == "idle", "idle (open)")
    page.wait_status("Manager state", lambda text: text == "idle", "idle")
    assert page.button("Close environment").is_enabled()
    assert not page.visible_buttons("Open environment")[0].is_enabled()
    assert page.errors_in_browser_log() == []


def test_add_plans_through_the_form_and_reorder_them(page, web_gateway, manager_open):
    page.open(web_gateway.url + "/ui/")
    page.sign_in_with_key(web_gateway.api_key)
    queue = page.region("Queue")
    _fill_count(page, "det1", "3")
    page.button("Add to queue", queue).click()
    page.wait(lambda: len(page.queue_rows()) == 1, "the first item in the queue")
    item = zmq_item = manager_open.queue_get()["items"][0]
    assert (zmq_item["name"], zmq_item["kwargs"]) == ("count", {"detectors": ["det1"], "num": 3})
    assert "det1" in page.queue_names()[0] and "num=3" in page.queue_names()[0]

    _fill_count(page, "det2", "5")
    page.button("Add to queue", queue).click()
    page.wait(lambda: len(page.queue_rows()) == 2, "the second item in the queue")
    first, second = (uid for uid, _ in _queue_uids_and_nums(manager_open))

    # drag the second item above the first, by its handle, with the mouse
    rows = page.queue_rows()
    handle = rows[1].find_element(By.CSS_SELECTOR, ".handle")
    ActionChains(page.driver).click_and_hold(handle).move_to_element_with_offset(rows[0], 0, -5).release().perform()
    wait_for(lambda: [uid for uid, _ in _queue_uids_and_nums(manager_open)] == [second, first], 60, "drag and drop")
    page.wait(lambda: "num=5" in page.queue_names()[0], "the page to show the new order")

    # and back with the keyboard: focus the first row's "Move down" and press Enter
    page.use("Move down", lambda: page.queue_rows()[0], lambda button: button.send_keys(Keys.ENTER))
    wait_for(lambda: [uid for uid, _ in _queue_uids_and_nums(manager_open)] == [first, second], 60, "Move down")
    page.wait(lambda: "num=3" in page.queue_names()[0], "the page to show the order again")
    # focus followed the moved item, so Alt+Up moves it back up
    focused = page.driver.switch_to.active_element
    focused.send_keys(Keys.ALT, Keys.ARROW_UP)
    wait_for(lambda: [uid for uid, _ in _queue_uids_and_nums(manager_open)] == [second, first], 60, "Alt+Up")
    assert item["item_uid"] == first
    assert page.errors_in_browser_log() == []


def test_the_form_refuses_an_invalid_value_before_anything_is_sent(page, web_gateway, manager_open):
    page.open(web_gateway.url + "/")
    page.sign_in_with_key(web_gateway.api_key)
    queue = page.region("Queue")
    _fill_count(page, "det1", "[1, 2")  # not a number
    item = {"item_type": "plan", "name": "count", "kwargs": {"detectors": ["det1"], "num": "[1, 2"}}
    verdict = web_gateway.api("POST", "queue/item/validate", json={"item": item}).json()
    assert verdict["success"] is False and verdict["errors"]["num"], verdict
    message = verdict["errors"]["num"]
    message = "; ".join(message) if isinstance(message, list) else message

    error = page.driver.find_element(By.ID, "param-num-error")
    page.wait(lambda: error.text == message, "the validate endpoint's message beside num")
    assert page.field("num", queue).get_attribute("aria-invalid") == "true"
    page.button("Add to queue", queue).click()
    page.wait(lambda: page.driver.switch_to.active_element.get_attribute("id") == "param-num", "focus on num")
    assert error.text == message
    assert manager_open.queue_get()["items"] == []

    # corrected, it goes in
    page.field("num", queue).clear()
    page.field("num", queue).send_keys("2")
    page.wait(lambda: error.text == "", "the message to go")
    page.button("Add to queue", queue).click()
    page.wait(lambda: len(page.queue_rows()) == 1, "the item in the queue")

    # edit it: its parameters come back into the form, and the item is replaced in place
    uid = manager_open.queue_get()["items"][0]["item_uid"]
    page.click("Edit", lambda: page.queue_rows()[0])
    page.wait(lambda: page.field("num", queue).get_attribute("value") == "2", "the item's num in the form")
    page.field("num", queue).clear()
    page.field("num", queue).send_keys("4")
    page.button("Save changes", queue).click()
    wait_for(lambda: manager_open.queue_get()["items"][0]["kwargs"].get("num") == 4, 60, "the edited item")
    assert manager_open.queue_get()["items"][0]["item_uid"] == uid

    page.click("Duplicate", lambda: page.queue_rows()[0])
    page.wait(lambda: len(page.queue_rows()) == 2, "the copy")
    page.click("Remove", lambda: page.queue_rows()[0])
    page.wait(lambda: len(page.queue_rows()) == 1, "one item left")
    assert [item["kwargs"] for item in manager_open.queue_get()["items"]] == [{"detectors": ["det1"], "num": 4}]


def _start_a_plan(page: Page, web_gateway: WebGateway, num: int) -> None:
    """count of ``num`` readings, half a second apart, queued and started through the page."""
    web_gateway.api("POST", "queue/item/add", json={"item": {**PLAN_SLOW, "kwargs": {"num": num, "delay": 0.5}}})
    page.open(web_gateway.url + "/")
    page.sign_in_with_key(web_gateway.api_key)
    page.wait(lambda: len(page.queue_rows()) == 1, "the queued item")
    page.button("Start queue").click()


def test_running_the_queue_shows_the_running_item_its_output_and_history(page, web_gateway, manager_open):
    _start_a_plan(page, web_gateway, num=4)

    running = page.driver.find_element(By.ID, "running-item")
    page.wait(lambda: running.is_displayed() and "count" in running.text, "the running item")
    page.wait(lambda: "run " in running.text, "its run")
    page.wait_status("Queue", lambda text: text == "running", "running")
    page.wait(lambda: "Transient Scan ID" in page.console_text(), "the plan's output in the console")

    history = page.region("History")
    page.wait(lambda: "completed" in page.history_statuses(), "the history entry marked completed", timeout=60)
    exit_status = history.find_element(By.CSS_SELECTOR, "tbody tr .exit")
    assert exit_status.text == "completed" and "ok" in exit_status.get_attribute("class")
    page.wait_status("Queue", lambda text: text == "stopped", "stopped")
    assert page.queue_rows() == []

    # copied back to the queue; the picture of docs/web-page.md: something queued, something finished, output
    history.find_element(By.CSS_SELECTOR, "tbody tr .pick").click()
    page.button("Copy selected to queue", history).click()
    page.wait(lambda: len(page.queue_rows()) == 1, "the copy in the queue")
    assert manager_open.queue_get()["items"][0]["kwargs"] == {"num": 4, "delay": 0.5}
    _readme_screenshot(page.driver)

    page.button("Clear history", history).click()
    page.button("Clear history", page.driver.find_element(By.ID, "confirm")).click()
    page.wait(lambda: "No item has finished yet." in history.text, "an empty history")
    assert manager_open.status()["items_in_history"] == 0
    assert page.errors_in_browser_log() == []


def test_an_observer_sees_the_write_controls_disabled_with_the_reason_and_cannot_write(page, web_gateway, manager_idle):
    web_gateway.api("POST", "queue/item/add", json={"item": {"item_type": "plan", "name": "count", "args": [["det1"]]}})
    page.open(web_gateway.url + "/")
    page.sign_in_with_password(TOY, "olga", PASSWORDS["olga"])
    page.wait(lambda: len(page.queue_rows()) == 1, "the queue")
    page.wait(lambda: page.status("Manager state") == "idle", "the status")
    needs = {
        "write:manager:control": ("Open environment", "Close environment"),
        "write:queue:control": ("Start queue", "Stop queue", "Update environment", "Interrupt kernel"),
        "write:plan:control": ("Pause", "Resume", "Stop", "Abort", "Halt"),
        "write:queue:edit": ("Add to queue", "Add queue stop", "Upload spreadsheet", "Remove", "Move up", "Move down",
                             "Move to top", "Move to bottom", "Edit", "Duplicate", "Remove selected", "Clear queue",
                             "Copy selected to queue"),
        "write:execute": ("Execute now",),
        "write:history:edit": ("Clear history",),
        "write:lock": ("Lock", "Unlock"),
    }  # fmt: skip
    for scope, names in needs.items():
        for name in names:
            (button,) = page.visible_buttons(name)
            assert not button.is_enabled(), name
            # the reason is written in the page and is the button's description
            assert f"lacks the scope {scope}" in page.description(button), name
            assert f"lacks the scope {scope}" in button.find_element(By.XPATH, "ancestor::section").text, name
    for name in ("Autostart", "Loop mode", "Ignore failures"):
        box = page.driver.find_element(By.XPATH, f"//label[normalize-space()='{name}']/input")
        assert not box.is_enabled() and "lacks the scope write:queue:control" in page.description(box)

    tokens = web_gateway.login("olga")
    refused = httpx.post(
        f"{web_gateway.url}/api/queue/item/add",
        json={"item": {"item_type": "plan", "name": "count"}},
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert refused.status_code == 401 and refused.json()["detail"].startswith("Not enough permissions")
    # nor can the page's own script write without credentials
    status = page.driver.execute_async_script(
        "const done = arguments[0];"
        "fetch('api/environment/open', {method: 'POST', credentials: 'omit'}).then(r => done(r.status));"
    )
    assert status == 401
    assert len(manager_idle.queue_get()["items"]) == 1


def _reading(number: int) -> str:
    """How the line of the ``number``th reading of count starts in its table (10 characters wide)."""
    return f"|{number:>10d} |"


def test_the_console_catches_up_without_a_gap_after_the_workers_restart(page, web_gateway, manager_open):
    _start_a_plan(page, web_gateway, num=12)
    page.wait(lambda: _reading(3) in page.console_text(), "the third reading in the console")

    booted = web_gateway.process.log_path.read_text().count("Booting worker")
    os.kill(web_gateway.process.pid, signal.SIGHUP)  # the gunicorn master: new workers, old ones finish
    wait_for(lambda: web_gateway.process.log_path.read_text().count("Booting worker") >= booted + 2, 60, "new workers")
    page.wait(lambda: "completed" in page.history_statuses(), "the plan to complete", timeout=90)
    # streaming again, not polling (a refused stream is polled for and tried again a moment later)
    page.wait(lambda: page.driver.find_element(By.ID, "console-state").text == "", "the stream to be back")
    # a line RE Manager prints now, with an id of its own, reaches the page
    added = web_gateway.api(
        "POST", "queue/item/add", json={"item": {"item_type": "plan", "name": "count", "args": [["det1"]]}}
    ).json()
    page.wait(lambda: added["item"]["item_uid"] in page.console_text(), "RE Manager's line about the new item")

    def tails_match() -> bool:
        text = web_gateway.api("GET", "console_output", params={"nlines": 400}).json()["text"]
        server = _ESCAPES.sub("", text).splitlines()
        return page.console_text().splitlines()[-len(server) :] == server

    # Every line the gateway kept, the page shows, once and in order. (Lines RE Manager printed
    # while the restarting workers handed over its subscription may be missing from both.)
    page.wait(tails_match, "the page's console to show what the server rendered, line for line")


@pytest.fixture(scope="module")
def nginx_in_front(tmp_path_factory, web_gateway):
    workdir = tmp_path_factory.mktemp("web-nginx")
    cert, key = self_signed_certificate(workdir)
    nginx, port = start_nginx(workdir, web_gateway.url.removeprefix("http://"), cert, key)
    url = f"https://localhost:{port}/qserver"
    trust = ssl.create_default_context(cafile=cert)
    with stopped_on_failure(nginx):
        nginx.wait_until(lambda: httpx.get(f"{url}/healthz", verify=trust).status_code == 200, 60, "proxying")
    yield url
    nginx.stop()


def test_the_page_under_a_prefix_behind_nginx(page, nginx_in_front, web_gateway, manager_idle):
    page.open(nginx_in_front + "/")
    page.sign_in_with_key(web_gateway.api_key)
    page.wait(lambda: page.status("Manager state") == "idle", "the status through nginx")
    urls = page.driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(url.startswith(nginx_in_front + "/") for url in urls), urls
    assert f"{nginx_in_front}/ui/app.js" in urls and f"{nginx_in_front}/api/status" in urls
    page.open(nginx_in_front + "/ui/")
    page.sign_in_with_key(web_gateway.api_key)
    page.wait(lambda: page.status("Manager state") == "idle", "the status at /qserver/ui/")


@pytest.fixture(scope="module")
def single_user_gateway(tmp_path_factory, re_manager):
    """Single-user mode, and no streams at all: every stream is refused (503)."""
    workdir = tmp_path_factory.mktemp("web-single-user")
    env = re_manager.gateway_env(
        QS_GATEWAY_REDIS_PREFIX=private_prefix(), QS_GATEWAY_WORKERS="2", QS_GATEWAY_STREAM_LIMIT="0"
    )
    process, url = start_gateway(workdir, env, log_name="gateway-web-single-user.log")
    yield url, process.log_path
    process.stop()


def test_refused_streams_fall_back_to_polling_in_single_user_mode(page, single_user_gateway, manager_open):
    url, log = single_user_gateway
    page.open(url + "/")
    assert not page.field("Sign in with", page.sign_in_region()).is_displayed()  # the key is the only way
    page.sign_in_with_key(API_KEY)
    state = page.driver.find_element(By.ID, "console-state")
    page.wait(lambda: "checking for new output" in state.text, "the console to poll")
    page.wait(lambda: page.status("Manager state") == "idle", "the status")
    manager_open.request("queue_item_add", {"item": {**PLAN_SLOW, "kwargs": {"num": 3, "delay": 0.5}},
                                            "user": "tests", "user_group": "primary"})  # fmt: skip
    page.button("Start queue").click()
    page.wait_status("Queue", lambda text: text == "running", "running")
    page.wait(lambda: "completed" in page.history_statuses(), "the history entry", timeout=60)
    page.wait(lambda: _reading(3) in page.console_text(), "the plan's output, polled")

    # idle and polling, the page asks at most once a second (an upper bound: a busy machine
    # only makes the page's timers late, never early)
    page.wait(lambda: page.status("Manager state") == "idle", "idle")
    time.sleep(2)  # the last fetches of the finished plan's queue and history
    before, started = log.read_text().count("qs_gateway.request"), time.monotonic()
    time.sleep(8)
    requests = log.read_text().count("qs_gateway.request") - before
    assert requests <= time.monotonic() - started + 1, requests
    assert page.errors_in_browser_log() == [] or all("503" in e for e in page.errors_in_browser_log())
