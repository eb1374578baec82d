"""The /docs page in a real headless Chromium (Debian's chromium and chromedriver), offline.

The page must render from the gateway alone (no CDN: this machine has no internet), list the
endpoints, and an authorized "Try it out" of GET /api/status must show RE Manager's status.
"""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from .support import API_KEY
from .web_support import start_chromium


@pytest.fixture
def browser(tmp_path):
    driver = start_chromium(tmp_path / "profile", "--window-size=1280,1600")
    yield driver
    driver.quit()


def test_docs_page_lists_endpoints_and_tries_get_status(browser, gateway_url, manager_idle, tmp_path):
    wait = WebDriverWait(browser, 30)
    browser.get(f"{gateway_url}/docs")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".opblock-summary-path")))
    paths = {
        element.get_attribute("data-path")
        for element in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    }
    assert {"/api/status", "/api/queue/item/add", "/api/queue/upload/spreadsheet", "/readyz"} <= paths
    assert "qs-gateway" in browser.find_element(By.CSS_SELECTOR, ".info .title").text

    # Authorize with the API key as the header scheme expects it: "ApiKey <key>"
    browser.find_element(By.CSS_SELECTOR, ".auth-wrapper .authorize").click()
    containers = wait.until(ec.presence_of_all_elements_located((By.CSS_SELECTOR, ".auth-container")))
    header_scheme = next(c for c in containers if "ApiKeyHeader" in c.text)
    header_scheme.find_element(By.CSS_SELECTOR, "input").send_keys(f"ApiKey {API_KEY}")
    header_scheme.find_element(By.CSS_SELECTOR, "button.authorize").click()
    browser.find_element(By.CSS_SELECTOR, ".btn-done").click()

    operation = browser.find_element(By.ID, "operations-status-get_api_status")
    operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    wait.until(lambda _: operation.find_elements(By.CSS_SELECTOR, ".try-out__btn"))[0].click()
    wait.until(lambda _: operation.find_elements(By.CSS_SELECTOR, ".execute"))[0].click()
    status_cell = wait.until(
        lambda _: operation.find_elements(By.CSS_SELECTOR, ".live-responses-table tbody .response-col_status")
    )[0]
    wait.until(lambda _: status_cell.text.strip())
    body = operation.find_element(By.CSS_SELECTOR, ".live-responses-table tbody .response-col_description pre").text
    browser.save_screenshot(str(tmp_path / "docs.png"))
    assert status_cell.text.strip() == "200", body
    assert '"manager_state": "idle"' in body and '"msg": "RE Manager' in body
