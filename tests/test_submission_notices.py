"""People hear of submissions: notification events for a new submission and each decision (the
existing notification targets), and an audit line for every submission and decision. Under
gunicorn with two workers, the real RE Manager and Redis, and a receiver of the test's own."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from .agents_support import agents_config, key_of
from .auth_support import JsonServer, start_auth_gateway
from .support import PLAN_COUNT, wait_for

EVENTS = ["submission_added", "submission_approved", "submission_denied"]


def test_submissions_and_decisions_are_notified_and_audited(stack_dir: Path, re_manager, manager_idle):
    receiver = JsonServer(lambda method, path, body: (200, {"ok": True}))
    target = [{"url": f"{receiver.url}/hook", "events": EVENTS, "retries": 5}]
    process, url = start_auth_gateway(
        stack_dir,
        re_manager,
        "notices",
        agents_config(),
        QS_GATEWAY_WORKERS="2",
        QS_GATEWAY_LOG_FORMAT="json",
        QS_GATEWAY_NOTIFICATIONS=json.dumps(target),
    )
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            agent, reviewer = key_of(http, "ada"), key_of(http, "ross")
            first, second = (
                http.post("/api/queue/submission/add", json={"item": PLAN_COUNT, "note": "n"}, headers=agent).json()[
                    "submission"
                ]["uid"]
                for _ in range(2)
            )
            approved = http.post("/api/queue/submission/approve", json={"uid": first}, headers=reviewer).json()
            denied = http.post("/api/queue/submission/deny", json={"uid": second, "reason": "no"}, headers=reviewer)
            assert approved["success"] is True and denied.json()["success"] is True

        def received() -> dict[tuple[str, str], dict]:
            events = [json.loads(body) for method, path, body in receiver.requests if path == "/hook"]
            return {(e["type"], e["data"]["submission"]["uid"]): e["data"]["submission"] for e in events}

        wanted = {
            ("submission_added", first),
            ("submission_added", second),
            ("submission_approved", first),
            ("submission_denied", second),
        }
        wait_for(lambda: wanted <= set(received()), 60, "the four notifications")
        events = received()
        assert events[("submission_approved", first)]["item_uid"] == approved["item_uid"]
        assert events[("submission_denied", second)]["decision_note"] == "no"
        assert events[("submission_added", first)]["username"] == "ada"

        log = stack_dir / "gunicorn-notices.log"
        audits = []
        for line in log.read_text().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("message") == "audit" and "/submission/" in record.get("endpoint", ""):
                    audits.append(record)
        by_endpoint = {(a["endpoint"], tuple(a.get("submissions", ()))): a for a in audits}
        assert ("/api/queue/submission/add", (first,)) in by_endpoint
        assert ("/api/queue/submission/add", (second,)) in by_endpoint
        approval = by_endpoint[("/api/queue/submission/approve", (first,))]
        assert approval["user"] == "ross" and approval["item_uids"] == [approved["item_uid"]]
        assert approval["success"] is True
        assert by_endpoint[("/api/queue/submission/deny", (second,))]["user"] == "ross"
    finally:
        process.stop()
        receiver.close()
