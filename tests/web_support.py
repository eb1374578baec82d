"""Helpers of the web page tests: headless Chromium, finding things as a person names them, an
identity provider whose sign-in page sends the browser straight back, the gateway the pages are
served by (gunicorn, two workers), axe-core's accessibility check."""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from qs_gateway.serving.stack import free_port, start_gateway

from .auth_support import PASSWORDS, JsonServer, auth_config, private_prefix, write_config

# Where to look for something on the page: an element, or how to find it (found again at each
# look, since the page may re-render it meanwhile: a queue row after each status poll).
Scope = WebElement | Callable[[], WebElement] | None

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT_SECONDS = 60  # generous: a busy machine renders late
TOY = "toy (user name and password)"  # the toy provider, as the sign-in form names it
# installed from npm by scripts/setup (tests/web/package.json); never served by the gateway
AXE_SCRIPT = Path(__file__).parent / "web" / "node_modules" / "axe-core" / "axe.min.js"


class WebGateway:
    def __init__(self, process: Any, url: str, api_key: str) -> None:
        self.process = process
        self.url = url
        self.api_key = api_key  # bob's: admin and expert

    def login(self, user: str) -> dict:
        response = httpx.post(
            f"{self.url}/api/auth/provider/toy/token", data={"username": user, "password": PASSWORDS[user]}
        )
        assert response.status_code == 200, response.text
        return response.json()

    def api(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"ApiKey {key or self.api_key}"}
        return httpx.request(method, f"{self.url}/api/{path}", headers=headers, timeout=10, **kwargs)


def start_web_gateway(
    workdir: Path, manager: Any, providers: list[dict], users: dict, port: int | None = None, **auth: Any
) -> WebGateway:
    """gunicorn with two workers in front of ``manager``, with these login providers and users,
    and an API key of bob's (admin and expert) for the test to act with."""
    config = auth_config(providers, users=users, secret_keys=["web-ui-test"], **auth)
    env = manager.gateway_env(
        QSERVER_HTTP_SERVER_CONFIG=write_config(workdir, config),
        QS_GATEWAY_REDIS_PREFIX=private_prefix(),
        QS_GATEWAY_WORKERS="2",
        QS_GATEWAY_PROXY_HOPS="1",  # nginx in front for the prefix test; direct clients send no X-Forwarded-*
    )
    # SIGHUP restarts the workers (a test does it), as under systemd
    process, url = start_gateway(
        workdir, env, port=port or free_port(), log_name=f"gateway-{workdir.name}.log", serve_args=["--reload-on-hup"]
    )
    try:
        tokens = httpx.post(
            f"{url}/api/auth/provider/toy/token", data={"username": "bob", "password": PASSWORDS["bob"]}
        )
        key = httpx.post(
            f"{url}/api/auth/apikey",
            json={"expires_in": None, "note": "web page tests"},
            headers={"Authorization": f"Bearer {tokens.json()['access_token']}"},
        )
        assert key.status_code == 200, key.text
    except BaseException:
        process.stop()
        raise
    return WebGateway(process, url, key.json()["secret"])


def start_chromium(profile: Path, *extra_arguments: str) -> webdriver.Chrome:
    """Debian's headless Chromium through its chromedriver, offline, with its own profile."""
    os.environ["SE_OFFLINE"] = "true"  # selenium must not try to download anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *extra_arguments,
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER, log_output=os.devnull))


@contextmanager
def recorded_page(driver: webdriver.Chrome, directory: Path, name: str) -> Iterator["Page"]:
    """The page of one test: a screenshot of it afterwards, and the browser's log printed (pytest
    shows both when the test fails)."""
    screenshot = directory / f"{name}.png"
    print(f"screenshot of the page: {screenshot}")
    driver.get_log("browser")  # what earlier tests left in the log
    yield Page(driver)
    driver.save_screenshot(str(screenshot))
    for entry in driver.get_log("browser"):
        print("browser:", entry["level"], entry["message"])


def _literal(text: str) -> str:
    """``text`` as an XPath string literal."""
    return f'"{text}"' if '"' not in text else f"'{text}'"


class Page:
    """The page in the browser, found by what a person reads: region headings, labels, button names."""

    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver

    def wait(self, condition: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
        def check(_: Any) -> Any:
            try:
                return condition()
            except (StaleElementReferenceException, IndexError):
                return False  # the page re-rendered that part (or is re-rendering a list): look again

        return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(check, f"waiting for {what}")

    def open(self, url: str) -> None:
        """The page in a new tab (its sessionStorage starts empty), with no credentials kept from
        an earlier test."""
        driver = self.driver
        old_tabs = driver.window_handles
        driver.switch_to.new_window("tab")
        for handle in old_tabs:
            driver.switch_to.window(handle)
            driver.close()
        driver.switch_to.window(driver.window_handles[0])
        driver.get(url)
        if driver.execute_script("return localStorage.length"):
            driver.execute_script("localStorage.clear()")
            driver.get(url)

    def region(self, name: str) -> WebElement:
        return self.driver.find_element(
            By.XPATH, f"//section[@aria-labelledby=//h2[normalize-space()={_literal(name)}]/@id]"
        )

    def buttons(self, name: str, within: Scope = None) -> list[WebElement]:
        scope = self.driver if within is None else within() if callable(within) else within
        return scope.find_elements(By.XPATH, f".//button[normalize-space()={_literal(name)}]")

    def visible_buttons(self, name: str, within: Scope = None) -> list[WebElement]:
        return [button for button in self.buttons(name, within) if button.is_displayed()]

    def _enabled_button(self, name: str, within: Scope) -> WebElement | None:
        found = self.visible_buttons(name, within)
        return found[0] if len(found) == 1 and found[0].is_enabled() else None

    def button(self, name: str, within: Scope = None) -> WebElement:
        """The one visible button of that name, once it is enabled."""
        return self.wait(lambda: self._enabled_button(name, within), f"an enabled button {name!r}")

    def use(self, name: str, within: Scope, act: Callable[[WebElement], Any]) -> None:
        """``act`` on the one enabled button of that name, found again if the page re-renders it
        before ``act`` reaches it."""

        def acted() -> bool:
            button = self._enabled_button(name, within)
            if button is None:
                return False
            act(button)
            return True

        self.wait(acted, f"an enabled button {name!r}")

    def click(self, name: str, within: Scope = None) -> None:
        self.use(name, within, lambda button: button.click())

    def field(self, label: str, within: WebElement | None = None) -> WebElement:
        """The form control a <label> names."""
        scope = within or self.driver
        labels = scope.find_elements(By.XPATH, f".//label[normalize-space()={_literal(label)}]")
        target = next(each.get_attribute("for") for each in labels if each.get_attribute("for"))
        return self.driver.find_element(By.ID, target)

    def field_by_text(self, label: str) -> WebElement:
        """The control inside a <label> of that text (a check box with its words beside it)."""
        return self.driver.find_element(By.XPATH, f"//label[normalize-space()={_literal(label)}]//input")

    def status(self, name: str) -> str:
        """The value shown beside ``name`` in the Status region."""
        term = self.region("Status").find_elements(By.XPATH, f".//dt[normalize-space()={_literal(name)}]")
        return term[0].find_element(By.XPATH, "following-sibling::dd[1]").text if term else ""

    def wait_status(self, name: str, accept: Callable[[str], bool], what: str, timeout: float = 60) -> str:
        return self.wait(lambda: accept(self.status(name)) and self.status(name), f"status {name} {what}", timeout)

    def queue_rows(self) -> list[WebElement]:
        return self.region("Queue").find_elements(By.CSS_SELECTOR, "ol > li")

    def queue_names(self) -> list[str]:
        return [row.find_element(By.CSS_SELECTOR, ".item-main").text for row in self.queue_rows()]

    def history_statuses(self) -> list[str]:
        """The exit statuses the History region shows, newest first."""
        return [cell.text for cell in self.region("History").find_elements(By.CSS_SELECTOR, "tbody .exit")]

    def choose(self, select: WebElement, text: str) -> None:
        """Pick the option ``text`` of a <select>, once the page has filled it in."""
        self.wait(lambda: select.find_elements(By.XPATH, f"option[.={_literal(text)}]"), f"the option {text!r}")
        Select(select).select_by_visible_text(text)

    def sign_in_region(self) -> WebElement:
        """The Sign in region, once the page has learnt the ways to sign in and shows it."""
        return self.wait(lambda: self.region("Sign in").is_displayed() and self.region("Sign in"), "Sign in")

    def sign_in_with_key(self, key: str) -> None:
        signin = self.sign_in_region()
        method = self.field("Sign in with", signin)
        if method.is_displayed():
            self.choose(method, "API key")
        self.field("API key", signin).send_keys(key)
        self.button("Sign in", signin).click()
        self.wait(lambda: self.region("Status").is_displayed(), "the Status region")

    def sign_in_with_password(self, provider_label: str, username: str, password: str) -> None:
        signin = self.sign_in_region()
        self.choose(self.field("Sign in with", signin), provider_label)
        self.field("User name", signin).send_keys(username)
        self.field("Password", signin).send_keys(password)
        self.button("Sign in", signin).click()
        self.wait(lambda: self.region("Status").is_displayed(), "the Status region")

    def console_text(self) -> str:
        return self.driver.execute_script("return document.getElementById('console-text').textContent")

    def description(self, element: WebElement) -> str:
        """The text of the elements ``element`` is described by (aria-describedby)."""
        ids = (element.get_attribute("aria-describedby") or "").split()
        return " ".join(self.driver.find_element(By.ID, each).text for each in ids)

    def accessibility_violations(self, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
        """What axe-core finds wrong in the page as it is now, at these impacts, one line each."""
        assert AXE_SCRIPT.exists(), "axe-core is missing: run scripts/setup test (npm ci in tests/web)"
        if not self.driver.execute_script("return Boolean(window.axe)"):
            self.driver.execute_script(AXE_SCRIPT.read_text(encoding="utf-8"))
        found = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations), e => done(String(e)));"
        )
        assert isinstance(found, list), found  # axe's own error
        return [
            f"{v['id']} ({v['impact']}): {v['help']} at {json.dumps([n['target'] for n in v['nodes']])}"
            for v in found
            if v["impact"] in impacts
        ]

    def sideways_overflow(self) -> int:
        """How many pixels the document is wider than the window (0: no sideways scrolling)."""
        return self.driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )

    def errors_in_browser_log(self) -> list[str]:
        return [entry["message"] for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]


class SignInPage:
    """An identity provider's authorization endpoint that signs the person in at once: it sends
    the browser back to ``redirect_uri`` with a good code and the state it was given. The token
    endpoint is the test identity provider's (tests/test_oidc.py)."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.authorizations: list[dict[str, str]] = []
        self.server = JsonServer(self.authorize)
        self.url = f"{self.server.url}/authorize"

    def authorize(self, method: str, path: str, body: str) -> tuple[int, dict, dict]:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query))
        self.authorizations.append(query)
        back = f"{query['redirect_uri']}?" + urllib.parse.urlencode({"code": self.code, "state": query["state"]})
        return 302, {}, {"Location": back}

    def close(self) -> None:
        self.server.close()
