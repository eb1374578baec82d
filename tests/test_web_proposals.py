"""The Proposals panel of the web page: an agent's submissions, approved and denied by a
reviewer in Chromium, and shown disabled, with the reason, to a person who may not decide.
gunicorn (two workers), the real RE Manager and Redis; outcomes checked in RE Manager and
through the API."""

from __future__ import annotations

import copy

import httpx
import pytest
from selenium.webdriver.common.by import By

from . import web_fixtures
from .auth_support import PASSWORDS, ROLES, TOY_PROVIDER
from .support import wait_for
from .web_support import TOY, recorded_page, start_web_gateway

driver = web_fixtures.driver  # this module's browser

REVIEWERS = {"reviewer": {"scopes_set": ["read:queue", "write:queue:approve"]}}
EXTRA_PASSWORDS = {"ada": "ada_password", "ross": "ross_password"}


@pytest.fixture(scope="module")
def web_gateway(tmp_path_factory, re_manager):
    toy = copy.deepcopy(TOY_PROVIDER)
    toy["args"]["users_to_passwords"] = {**PASSWORDS, **EXTRA_PASSWORDS}
    users = {name: {"roles": roles} for name, roles in ROLES.items()}
    users |= {"ada": {"roles": ["agent"]}, "ross": {"roles": ["user", "reviewer"]}}
    gateway = start_web_gateway(tmp_path_factory.mktemp("web-proposals"), re_manager, [toy], users, roles=REVIEWERS)
    yield gateway
    gateway.process.stop()


@pytest.fixture
def page(driver, tmp_path, request):
    with recorded_page(driver, tmp_path, request.node.name) as page:
        yield page


def _propose(web_gateway, num: int, note: str) -> str:
    """ada (an agent) proposes a count; the submission's uid."""
    token = httpx.post(
        f"{web_gateway.url}/api/auth/provider/toy/token", data={"username": "ada", "password": "ada_password"}
    ).json()["access_token"]
    item = {"item_type": "plan", "name": "count", "args": [["det1"]], "kwargs": {"num": num}}
    answer = httpx.post(
        f"{web_gateway.url}/api/queue/submission/add",
        json={"item": item, "note": note},
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    assert answer["success"] is True, answer
    return answer["submission"]["uid"]


def _proposal_rows(page):
    return page.region("Proposals").find_elements(By.CSS_SELECTOR, "li[data-uid]")


def test_a_reviewer_approves_and_denies_proposals(page, web_gateway, manager_idle):
    approved = _propose(web_gateway, 5, "the agent's first idea")
    denied = _propose(web_gateway, 6, "the agent's second idea")
    page.open(web_gateway.url + "/")
    page.sign_in_with_password(TOY, "ross", EXTRA_PASSWORDS["ross"])
    page.wait(lambda: len(_proposal_rows(page)) == 2, "both proposals in the page")
    first = next(row for row in _proposal_rows(page) if "num=5" in row.text)
    assert "by ada" in first.text and "the agent's first idea" in first.text
    assert page.accessibility_violations() == []

    page.button("Approve", first).click()
    wait_for(lambda: [i["kwargs"] for i in manager_idle.queue_get()["items"]] == [{"num": 5}], 15, "the item queued")
    assert manager_idle.queue_get()["items"][0]["user"] == "ada"
    page.wait(lambda: len(_proposal_rows(page)) == 1, "one proposal left")

    page.field("Reason for a denial", page.region("Proposals")).send_keys("not today")
    page.button("Deny", _proposal_rows(page)[0]).click()
    page.wait(lambda: page.driver.find_element(By.ID, "proposals-empty").is_displayed(), "no proposal left")
    state = web_gateway.api("GET", "queue/submission/get", params={"uid": denied}).json()["submissions"][0]
    assert (state["state"], state["decision_note"], state["decided_by"]) == ("denied", "not today", "ross")
    done = web_gateway.api("GET", "queue/submission/get", params={"uid": approved}).json()["submissions"][0]
    assert done["state"] == "approved"
    assert page.errors_in_browser_log() == []


def test_who_may_not_decide_sees_why(page, web_gateway, manager_idle):
    _propose(web_gateway, 7, "")
    page.open(web_gateway.url + "/")
    page.sign_in_with_key(web_gateway.api_key)  # bob: admin and expert, no reviewer
    page.wait(lambda: len(_proposal_rows(page)) == 1, "the proposal in the page")
    for name in ("Approve", "Deny"):
        (button,) = page.visible_buttons(name, _proposal_rows(page)[0])
        assert not button.is_enabled()
        assert "lacks the scope write:queue:approve" in page.description(button)
    assert manager_idle.queue_get()["items"] == []
