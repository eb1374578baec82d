"""Reviewed submissions: items a script or agent proposes and a person approves or denies.

A submission is validated at once, exactly as ``/queue/item/validate`` judges an item, and kept
pending in Redis (:mod:`qs_gateway.submissions.store`); approving it adds the item through
RE Manager's ``queue_item_add`` with the submitter's ``user`` and ``user_group``, exactly once
however many workers are asked at the same moment. Answers are in RE Manager's shape
(``success``, ``msg``): a decision that comes too late (the submission is no longer pending) is
``success: false`` with the state it is in. See docs/agents.md.
"""

from __future__ import annotations

import time
from typing import Any

from marshmallow import fields, validate

from ..auth import Principal
from ..auth.scopes import APPROVE_SCOPE, SUBMIT_SCOPE
from ..extensions import services
from ..notifications.derive import Event
from ..observability import hand_over_audit
from ..submissions import STATES, Submission, TransitionRefused
from ..transport import CircuitOpen, PoolExhausted
from .declare import Call, Resource
from .queue import MAY_ASK_MANAGER, AnyJson
from .schemas import TEXT_MAX_LENGTH, Int64, OneOfKeys, Payload, Position, identifier, lock_key_field, uid_field

# -- payloads ----------------------------------------------------------------------------------

PAGE_LIMIT = 1000


def _note() -> fields.String:
    return fields.String(load_default="", validate=validate.Length(max=TEXT_MAX_LENGTH))


class SubmissionAdd(OneOfKeys):
    one_of = ("item", "items")
    item = AnyJson(allow_none=True)
    items = fields.List(AnyJson(allow_none=True))
    note = _note()


class SubmissionGet(Payload):
    uid = uid_field()
    state = fields.String(allow_none=True, validate=validate.OneOf(STATES))
    limit = Int64(minimum=0, maximum=PAGE_LIMIT, load_default=100)
    offset = Int64(minimum=0, load_default=0)


class SubmissionApprove(OneOfKeys):
    one_of = ("uid", "uids")
    uid = identifier()
    uids = fields.List(identifier())
    pos = Position(allow_none=True)
    before_uid = uid_field()
    after_uid = uid_field()
    note = _note()
    lock_key = lock_key_field()


class SubmissionDeny(Payload):
    uid = identifier(required=True)
    reason = _note()


class SubmissionWithdraw(Payload):
    uid = identifier(required=True)


# -- helpers -----------------------------------------------------------------------------------


def _notify(kind: str, submission: Submission) -> None:
    """A notification of the submission's news, if notifications are configured."""
    if not services().settings.notifications.targets:
        return
    record = submission.as_dict()
    event = Event(f"{kind}:{submission.uid}", kind, round(time.time(), 3), {"submission": record})
    services().notifications.append(event)


def _refused(error: TransitionRefused, wanted: str = "pending") -> dict[str, Any]:
    if error.state == "missing":
        msg = f"No submission with uid '{error.uid}'"
    elif error.state == "owner":
        msg = f"Submission '{error.uid}' was made by someone else: only its submitter may withdraw it"
    else:
        msg = f"Submission '{error.uid}' is {error.state}, not {wanted}"
    return {"success": False, "msg": msg, "state": None if error.state in ("missing", "owner") else error.state}


# -- endpoints ---------------------------------------------------------------------------------

submissions = Resource("submissions", __name__)


@submissions.endpoint(
    "/queue/submission/add",
    methods=("POST",),
    scope=SUBMIT_SCOPE,
    schema=SubmissionAdd,
    errors=MAY_ASK_MANAGER,
    idempotent=True,
)
def submission_add(call: Call) -> dict[str, Any]:
    """Propose `item` (or each of `items`) for a person to approve; nothing is queued yet.

    Each item is validated at once as `/queue/item/validate` does; a valid one becomes a pending
    submission. One item: `{"success", "msg", "errors", "submission"}`; `items`: `{"success", "msg",
    "results": [...]}` with one such result per item (`submission` is null for a refused one).
    """
    payload, principal = call.payload, call.principal
    validator = services().item_validator
    if "items" not in payload:
        verdict = validator.check({"item": payload["item"]}, principal.user_group)
        result = {**verdict, "submission": _stored(payload["item"], verdict, payload["note"], principal)}
        hand_over_audit(submissions=[result["submission"]["uid"]] if result["submission"] else [])
        return result
    batch = validator.check_batch({"items": payload["items"]}, principal.user_group)
    if len(batch["results"]) != len(payload["items"]):  # the group itself was refused: no item judged
        return {**batch, "results": []}
    results = [
        {**verdict, "submission": _stored(item, verdict, payload["note"], principal)}
        for item, verdict in zip(payload["items"], batch["results"], strict=True)
    ]
    hand_over_audit(submissions=[r["submission"]["uid"] for r in results if r["submission"]])
    return {"success": batch["success"], "msg": batch["msg"], "results": results}


def _stored(item: Any, verdict: dict[str, Any], note: str, principal: Principal) -> dict[str, Any] | None:
    if not verdict["success"]:
        return None
    submission = services().submissions.add(
        {
            "item": item,
            "note": note,
            "validation": verdict,
            "user": principal.displayed_name,
            "user_group": principal.user_group,
            "username": principal.username,
        }
    )
    _notify("submission_added", submission)
    return submission.as_dict()


@submissions.endpoint("/queue/submission/get", scope="read:queue", schema=SubmissionGet)
def submission_get(call: Call) -> dict[str, Any]:
    """Submissions, newest first: all, those in `state`, or the one with `uid`; paged by `limit`
    and `offset`.

    Answers `{"success", "msg", "submissions", "total", "version"}`; `version` changes whenever
    any submission does (poll it to refresh a view).
    """
    store, payload = services().submissions, call.payload
    version = store.version()
    if payload.get("uid") is not None:
        found = store.get(payload["uid"])
        listed = [found] if found is not None else []
        total = len(listed)
    else:
        listed, total = store.list(payload.get("state"), payload["offset"], payload["limit"])
    return {
        "success": True,
        "msg": "",
        "submissions": [s.as_dict() for s in listed],
        "total": total,
        "version": version,
    }


@submissions.endpoint(
    "/queue/submission/approve",
    methods=("POST",),
    scope=APPROVE_SCOPE,
    schema=SubmissionApprove,
    errors=MAY_ASK_MANAGER,
)
def submission_approve(call: Call) -> dict[str, Any]:
    """Add the submitted item(s) to the queue, as their submitters, at `pos` / `before_uid` /
    `after_uid` (default: the back); `uids` are added in that order, one after the other.

    One `uid`: `{"success", "msg", "submission", "item"}`; `uids`: `{"success", "msg", "results"}`.
    A submission that is no longer pending is refused (`success: false`, `state`).
    """
    payload = call.payload
    place = {k: payload.get(k) for k in ("pos", "before_uid", "after_uid")}
    if "uids" not in payload:
        result = _approve(payload["uid"], place, payload, call.principal)
        hand_over_audit(submissions=[payload["uid"]], item_uids=[result.get("item_uid")])
        return result
    results = []
    for uid in payload["uids"]:
        result = _approve(uid, place, payload, call.principal)
        results.append(result)
        if result["success"]:  # the next one goes right after it
            place = {"after_uid": result["item_uid"]}
    hand_over_audit(submissions=payload["uids"], item_uids=[r.get("item_uid") for r in results])
    failed = sum(not r["success"] for r in results)
    msg = f"{failed} of {len(results)} submissions were not approved" if failed else ""
    return {"success": not failed, "msg": msg, "results": results}


def _approve(uid: str, place: dict[str, Any], payload: dict[str, Any], approver: Principal) -> dict[str, Any]:
    store = services().submissions
    decision = {"decided_by": approver.displayed_name, "decision_note": payload["note"]}
    try:
        claimed = store.move(uid, "pending", "approving", decision)  # one request only gets past here
    except TransitionRefused as refused:
        return _refused(refused)
    params = {
        "item": claimed.item,
        "user": claimed.fields["user"].decode(),
        "user_group": claimed.fields["user_group"].decode(),
        **{k: v for k, v in place.items() if v is not None},
    }
    if payload.get("lock_key"):
        params["lock_key"] = payload["lock_key"]
    try:
        reply = services().manager.call("queue_item_add", params)
    except (CircuitOpen, PoolExhausted) as exc:  # nothing was sent: it may be approved again
        store.move(uid, "approving", "pending", {"error": str(exc)})
        raise
    except Exception as exc:  # sent, no answer: the item may be queued, so never add it again
        error = f"RE Manager did not answer ({type(exc).__name__}): the item may or may not be in the queue"
        store.move(uid, "approving", "failed", {"error": error})
        raise
    if not reply.succeeded:  # RE Manager refused it: nothing was added
        back = store.move(uid, "approving", "pending", {"error": str(reply.get("msg") or "")})
        return {**reply.data, "submission": back.as_dict(), "item_uid": None}
    item = reply.get("item") or {}
    approved = store.move(uid, "approving", "approved", {"item_uid": item.get("item_uid"), "error": ""})
    _notify("submission_approved", approved)
    return {**reply.data, "submission": approved.as_dict(), "item_uid": item.get("item_uid")}


@submissions.endpoint("/queue/submission/deny", methods=("POST",), scope=APPROVE_SCOPE, schema=SubmissionDeny)
def submission_deny(call: Call) -> dict[str, Any]:
    """Deny a pending submission, with a `reason` the submitter sees."""
    uid = call.payload["uid"]
    hand_over_audit(submissions=[uid])
    decision = {"decided_by": call.principal.displayed_name, "decision_note": call.payload["reason"]}
    try:
        denied = services().submissions.move(uid, "pending", "denied", decision)
    except TransitionRefused as refused:
        return _refused(refused)
    _notify("submission_denied", denied)
    return {"success": True, "msg": "", "submission": denied.as_dict()}


@submissions.endpoint("/queue/submission/withdraw", methods=("POST",), scope=SUBMIT_SCOPE, schema=SubmissionWithdraw)
def submission_withdraw(call: Call) -> dict[str, Any]:
    """Withdraw one's own pending submission."""
    uid = call.payload["uid"]
    hand_over_audit(submissions=[uid])
    store = services().submissions
    try:
        withdrawn = store.move(uid, "pending", "withdrawn", owner=call.principal.username)
    except TransitionRefused as refused:
        return _refused(refused)
    return {"success": True, "msg": "", "submission": withdrawn.as_dict()}
