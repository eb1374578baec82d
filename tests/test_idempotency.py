"""Idempotency-Key in-process (real RE Manager and Redis): what is remembered and what is not.
The retries after a cut connection and concurrent requests: test_submissions_e2e.py."""

from __future__ import annotations

import uuid

from .support import PLAN_COUNT, plan


def test_a_refused_payload_is_not_remembered_and_the_answer_is_per_key(client, manager_idle):
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    refused = client.post("/api/queue/item/add", json={"item": {**PLAN_COUNT, "args": "det1"}}, headers=key)
    assert refused.status_code in (200, 400) and manager_idle.queue_get()["items"] == []
    first = client.post("/api/queue/item/add", json={"item": PLAN_COUNT}, headers=key)
    assert first.status_code == 200 and first.get_json()["success"] is True  # carried out, not a 422
    replayed = client.post("/api/queue/item/add", json={"item": PLAN_COUNT}, headers=key)
    assert replayed.get_json() == first.get_json() and replayed.headers["Idempotent-Replayed"] == "true"
    # JSON key order and spacing are not a different request
    reordered = client.post(
        "/api/queue/item/add", data='{ "item": {"args": [["det1", "det2"]], "name": "count", "item_type": "plan"} }',
        content_type="application/json", headers=key,
    )  # fmt: skip
    assert reordered.status_code == 200 and reordered.headers["Idempotent-Replayed"] == "true"
    # RE Manager's own refusal is an answer like any other: remembered
    other = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    no_plan = client.post("/api/queue/item/add", json={"item": plan("no_such_plan")}, headers=other).get_json()
    assert no_plan["success"] is False
    assert client.post("/api/queue/item/add", json={"item": plan("no_such_plan")}, headers=other).get_json() == no_plan
    assert len(manager_idle.queue_get()["items"]) == 1


def test_batches_and_execute_read_the_key_and_a_bad_key_is_refused(client, manager_idle):
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    batch = {"items": [PLAN_COUNT, PLAN_COUNT]}
    first = client.post("/api/queue/item/add/batch", json=batch, headers=key).get_json()
    assert client.post("/api/queue/item/add/batch", json=batch, headers=key).get_json() == first
    assert len(manager_idle.queue_get()["items"]) == 2
    bad = client.post("/api/queue/item/add", json={"item": PLAN_COUNT}, headers={"Idempotency-Key": "x" * 256})
    assert bad.status_code == 400 and "Idempotency-Key" in bad.get_json()["detail"]
    assert len(manager_idle.queue_get()["items"]) == 2
