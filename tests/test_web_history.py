"""The History panel of the web page, as with the Qt queue monitor: filtered by plan name, user
and exit status, an item's full parameters and result (traceback included) on demand, several
items copied back to the queue as one batch, and the history exported as JSON, YAML and text.
Headless Chromium against gunicorn (two workers), the real RE Manager and Redis."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from . import web_fixtures
from .support import wait_for
from .test_item_checks import FAILS_AT_RUN_TIME

# this module's gateway, browser and signed-in page
web_gateway, driver, page = web_fixtures.web_gateway, web_fixtures.driver, web_fixtures.page

COUNT = {"item_type": "plan", "name": "count", "args": [["det1"]], "kwargs": {"num": 2}}


def _history_rows(page):
    return page.region("History").find_elements(By.CSS_SELECTOR, "tbody tr[data-uid]")


def _plans(page) -> list[str]:
    return [cell.text for cell in page.region("History").find_elements(By.CSS_SELECTOR, "td[data-label=Plan]")]


def _run_two_items(web_gateway, manager_open) -> list[dict]:
    """count completes, then move_then_count fails (and RE Manager stops the queue)."""
    assert web_gateway.api("POST", "queue/item/add/batch", json={"items": [COUNT, FAILS_AT_RUN_TIME]}).json()["success"]
    assert web_gateway.api("POST", "queue/start").json()["success"] is True
    wait_for(lambda: manager_open.status()["items_in_history"] == 2, 90, "both items to finish")
    wait_for(lambda: manager_open.status()["manager_state"] == "idle", 30, "the queue to stop")
    return manager_open.request("history_get")["items"]


def _download(page, directory: Path, format_label: str, name: str) -> Path:
    Select(page.field("Export as", page.region("History"))).select_by_visible_text(format_label)
    page.button("Export history", page.region("History")).click()
    target = directory / name
    page.wait(lambda: target.exists() and target.stat().st_size > 0, f"the file {name}")
    return target


def test_filter_details_copy_and_export_the_history(page, web_gateway, manager_open, tmp_path):
    history = _run_two_items(web_gateway, manager_open)
    page.wait(lambda: page.history_statuses() == ["failed", "completed"], "both items in the page's history")
    region = page.region("History")

    # filters: exit status, plan name, user
    Select(page.field("Exit status", region)).select_by_visible_text("failed")
    page.wait(lambda: page.history_statuses() == ["failed"], "only the failed item")
    assert "1 of 2 items shown" in region.text
    Select(page.field("Exit status", region)).select_by_visible_text("any")
    page.field("Plan name", region).send_keys("move")
    page.wait(lambda: _plans(page) == ["move_then_count"], "only move_then_count")
    page.field("Plan name", region).clear()
    page.field("Plan name", region).send_keys(Keys.BACKSPACE)  # an input event for the cleared field
    page.field("User", region).send_keys("nobody")
    page.wait(lambda: page.history_statuses() == [], "no item of user nobody")
    page.field("User", region).send_keys(Keys.CONTROL, "a", Keys.BACKSPACE)
    page.field("User", region).send_keys("bo")
    page.wait(lambda: len(page.history_statuses()) == 2, "bob's two items")

    # the failed item's whole result, its traceback included, on demand
    failed = history[1]
    details = page.buttons("Details", _history_rows(page)[0])[0]
    assert details.get_attribute("aria-expanded") == "false"
    details.click()
    shown = page.wait(lambda: page.driver.find_element(By.ID, f"history-item-{failed['item_uid']}-details"), "details")
    assert failed["result"]["traceback"].strip().splitlines()[-1] in shown.text
    assert '"motor1"' in shown.text and failed["result"]["msg"].splitlines()[0] in shown.text
    assert page.buttons("Details", _history_rows(page)[0])[0].get_attribute("aria-expanded") == "true"

    # both selected (click, then Shift+click) and copied to the queue as one batch, in the order they ran
    before = [item["item_uid"] for item in manager_open.queue_get()["items"]]
    rows = _history_rows(page)
    rows[0].find_element(By.CSS_SELECTOR, ".pick").click()
    chain = ActionChains(page.driver).key_down(Keys.SHIFT)
    chain.click(_history_rows(page)[1].find_element(By.CSS_SELECTOR, ".pick")).key_up(Keys.SHIFT).perform()
    page.button("Copy selected to queue", region).click()
    wait_for(lambda: len(manager_open.queue_get()["items"]) == len(before) + 2, 15, "the two copies")
    copies = manager_open.queue_get()["items"][len(before) :]
    assert [(c["name"], c["args"], c.get("kwargs")) for c in copies] == [
        (h["name"], h["args"], h.get("kwargs")) for h in history
    ]

    # exported: the files hold the history RE Manager reports
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    page.driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    assert json.loads(_download(page, downloads, "JSON", "plan-history.json").read_text()) == history
    assert yaml.safe_load(_download(page, downloads, "YAML", "plan-history.yaml").read_text()) == history
    text = _download(page, downloads, "Text", "plan-history.txt").read_text()
    for item in history:
        assert item["item_uid"] in text and f"Exit status: {item['result']['exit_status']}" in text
    assert failed["result"]["traceback"].strip().splitlines()[-1] in text
    assert page.accessibility_violations() == []
