"""Reviewed submissions and the scopes around them, in-process against real Redis and RE Manager
(the concurrent decisions under gunicorn: test_submissions_e2e.py)."""

from __future__ import annotations

import pytest

from qs_gateway.api.declare import registered_endpoints
from qs_gateway.auth.scopes import DEFAULT_ROLES

from .agents_support import AGENT_SCOPES, agents_config, key_of
from .auth_support import NOT_ENOUGH, sample_path
from .support import PLAN_COUNT, plan


@pytest.fixture
def gateway(build_app, manager_idle):  # noqa: ANN001
    app = build_app(agents_config())
    client = app.test_client()
    client.application = app
    return client


def test_the_agent_role_holds_reads_and_submit_only_and_no_default_role_holds_the_new_scopes():
    assert DEFAULT_ROLES["agent"] == frozenset({*AGENT_SCOPES, "write:queue:submit"})
    for role, scopes in DEFAULT_ROLES.items():
        if role != "agent":
            assert not scopes & {"write:queue:submit", "write:queue:approve"}, role


def test_a_submission_waits_for_approval_and_is_added_as_its_submitter(gateway, manager_idle):
    agent = key_of(gateway, "ada")
    reviewer = key_of(gateway, "ross")
    added = gateway.post(
        "/api/queue/submission/add", json={"item": PLAN_COUNT, "note": "a quick look"}, headers=agent
    ).get_json()
    assert added["success"] is True and added["errors"] == {}
    submission = added["submission"]
    assert submission["state"] == "pending" and submission["note"] == "a quick look"
    assert submission["username"] == "ada" and submission["user_group"] == "primary"
    assert submission["validation"] == {"success": True, "msg": "", "errors": {}}
    assert manager_idle.queue_get()["items"] == []  # nothing queued yet

    listed = gateway.get("/api/queue/submission/get", json={"state": "pending"}, headers=reviewer).get_json()
    assert [s["uid"] for s in listed["submissions"]] == [submission["uid"]] and listed["total"] == 1

    approved = gateway.post(
        "/api/queue/submission/approve", json={"uid": submission["uid"], "note": "fine"}, headers=reviewer
    ).get_json()
    assert approved["success"] is True, approved
    queue = manager_idle.queue_get()["items"]
    assert [item["item_uid"] for item in queue] == [approved["item_uid"]]
    assert queue[0]["user"] == "ada" and queue[0]["user_group"] == "primary"  # the submitter, not ross
    record = gateway.get("/api/queue/submission/get", json={"uid": submission["uid"]}, headers=agent).get_json()
    decided = record["submissions"][0]
    assert decided["state"] == "approved" and decided["item_uid"] == approved["item_uid"]
    assert decided["decided_by"] == "ross" and decided["decision_note"] == "fine"

    again = gateway.post("/api/queue/submission/approve", json={"uid": submission["uid"]}, headers=reviewer)
    assert again.get_json()["success"] is False and again.get_json()["state"] == "approved"
    assert len(manager_idle.queue_get()["items"]) == 1


def test_an_invalid_item_is_refused_at_once_as_validate_refuses_it(gateway):
    agent = key_of(gateway, "ada")
    bad = plan(num="ten")
    added = gateway.post("/api/queue/submission/add", json={"item": bad}, headers=agent).get_json()
    judged = gateway.post("/api/queue/item/validate", json={"item": bad}, headers=agent).get_json()
    assert added["success"] is False and added["submission"] is None
    assert {k: added[k] for k in ("success", "msg", "errors")} == judged

    for neither_or_both in ({}, {"item": PLAN_COUNT, "items": []}):
        refused = gateway.post("/api/queue/submission/add", json=neither_or_both, headers=agent)
        assert refused.status_code == 400 and "Exactly one of item, items" in str(refused.get_json()["errors"])
    batch = gateway.post("/api/queue/submission/add", json={"items": [PLAN_COUNT, bad]}, headers=agent).get_json()
    assert batch["success"] is False
    assert batch["results"][0]["submission"]["state"] == "pending" and batch["results"][1]["submission"] is None


def test_a_group_unknown_to_re_manager_is_refused_for_every_item(build_app):
    config = agents_config()
    config["resource_access"] = {"args": {"default_group": "nobody_here"}}
    client = build_app(config).test_client()
    agent = key_of(client, "ada")
    batch = client.post("/api/queue/submission/add", json={"items": [PLAN_COUNT]}, headers=agent)
    assert batch.status_code == 200 and batch.get_json()["success"] is False
    assert "nobody_here" in batch.get_json()["msg"] and batch.get_json()["results"] == []
    single = client.post("/api/queue/submission/add", json={"item": PLAN_COUNT}, headers=agent).get_json()
    assert single["success"] is False and single["submission"] is None
    assert client.get("/api/queue/submission/get", headers=agent).get_json()["total"] == 0


def test_deny_and_withdraw_and_who_may(gateway):
    agent, other_agent = key_of(gateway, "ada"), key_of(gateway, "ross", ["read:queue"])
    reviewer = key_of(gateway, "rita")
    first, second = (
        gateway.post("/api/queue/submission/add", json={"item": PLAN_COUNT}, headers=agent).get_json()["submission"]
        for _ in range(2)
    )
    # an agent cannot decide, and a reviewer cannot propose
    assert gateway.post("/api/queue/submission/deny", json={"uid": first["uid"]}, headers=agent).status_code == 401
    assert gateway.post("/api/queue/submission/add", json={"item": PLAN_COUNT}, headers=reviewer).status_code == 401
    assert (
        gateway.post("/api/queue/submission/withdraw", json={"uid": first["uid"]}, headers=other_agent).status_code
        == 401
    )

    denied = gateway.post(
        "/api/queue/submission/deny", json={"uid": first["uid"], "reason": "not now"}, headers=reviewer
    ).get_json()
    assert denied["success"] is True and denied["submission"]["state"] == "denied"
    assert denied["submission"]["decision_note"] == "not now" and denied["submission"]["decided_by"] == "rita"
    late = gateway.post("/api/queue/submission/withdraw", json={"uid": first["uid"]}, headers=agent).get_json()
    assert late == {"success": False, "msg": f"Submission '{first['uid']}' is denied, not pending", "state": "denied"}

    withdrawn = gateway.post("/api/queue/submission/withdraw", json={"uid": second["uid"]}, headers=agent).get_json()
    assert withdrawn["submission"]["state"] == "withdrawn"
    states = gateway.get("/api/queue/submission/get", headers=reviewer).get_json()["submissions"]
    assert [s["state"] for s in states] == ["withdrawn", "denied"]  # newest first
    third = gateway.post("/api/queue/submission/add", json={"item": PLAN_COUNT}, headers=agent).get_json()
    someone_else = key_of(gateway, "ari")  # another agent: may submit, not withdraw ada's
    refused = gateway.post(
        "/api/queue/submission/withdraw", json={"uid": third["submission"]["uid"]}, headers=someone_else
    )
    assert refused.get_json()["success"] is False and "someone else" in refused.get_json()["msg"]
    missing = gateway.post("/api/queue/submission/deny", json={"uid": "nope"}, headers=reviewer).get_json()
    assert missing["success"] is False and "No submission" in missing["msg"]


def test_pending_submissions_expire(build_app, manager_idle):
    app = build_app(agents_config(), QS_GATEWAY_SUBMISSION_EXPIRY_SECONDS="1")
    client = app.test_client()
    agent, reviewer = key_of(client, "ada"), key_of(client, "ross")
    uid = client.post("/api/queue/submission/add", json={"item": PLAN_COUNT}, headers=agent).get_json()["submission"][
        "uid"
    ]

    def state() -> str:
        return client.get("/api/queue/submission/get", json={"uid": uid}, headers=agent).get_json()["submissions"][0][
            "state"
        ]

    from .support import wait_for

    wait_for(lambda: state() == "expired", 30, "the submission to expire")
    refused = client.post("/api/queue/submission/approve", json={"uid": uid}, headers=reviewer).get_json()
    assert refused["success"] is False and refused["state"] == "expired"
    assert manager_idle.queue_get()["items"] == []


def test_a_submit_only_key_can_change_nothing_but_submissions(gateway, manager_idle):
    """Every endpoint that needs a write scope, as the app declares it, refuses a key that holds
    only write:queue:submit; nothing reaches RE Manager's queue."""
    key = key_of(gateway, "ada", ["write:queue:submit"])
    app = gateway.application
    rules = {rule.rule: rule for rule in app.url_map.iter_rules()}
    checked = []
    for path, spec in registered_endpoints(app):
        if not spec.scope or not spec.scope.startswith(("write:", "admin:")) or spec.scope == "write:queue:submit":
            continue
        url = sample_path(app, rules[path]) if "<" in path else path
        for method in spec.methods:
            response = gateway.open(url, method=method, json={"item": PLAN_COUNT}, headers=key)
            assert response.status_code == 401 and NOT_ENOUGH in response.get_json()["detail"], (method, path)
            checked.append(path)
    assert "/api/queue/item/add" in checked and "/api/queue/start" in checked
    assert "/api/queue/item/execute" in checked and "/api/queue/submission/approve" in checked
    assert len(checked) >= 40
    assert manager_idle.queue_get()["items"] == []
    assert manager_idle.status()["manager_state"] == "idle"
