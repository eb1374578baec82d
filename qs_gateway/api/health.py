"""Liveness and readiness, for process supervisors, load balancers and orchestrators.

``/healthz`` answers as long as the worker process serves requests. ``/readyz`` says whether
requests can succeed: RE Manager answers, its list of allowed plans is not empty (after a
timeout while loading its lists RE Manager can look idle with empty lists, and then refuses
every plan), and Redis answers. Both are public: probes carry no credentials, and the answers
name no secrets.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import ServiceUnavailable
from ..extensions import services
from .access import PUBLIC
from .declare import Call, Resource

health = Resource("health", __name__)


class NotReady(ServiceUnavailable):
    def __init__(self, checks: dict[str, dict[str, Any]]) -> None:
        reasons = [f"{name}: {check['reason']}" for name, check in checks.items() if not check["ok"]]
        super().__init__("Not ready: " + "; ".join(reasons), 1, ready=False, checks=checks)


@health.endpoint("/healthz", scope=PUBLIC)
def healthz(call: Call) -> dict:
    """The process answers (liveness)."""
    return {"alive": True}


def _failure(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def _check_manager() -> tuple[dict[str, Any], dict[str, Any]]:
    manager = services().manager
    try:
        status = manager.status(reload=True)
    except Exception as exc:
        reason = f"RE Manager did not answer ({_failure(exc)})"
        return {"ok": False, "reason": reason}, {"ok": False, "reason": "not checked: RE Manager did not answer"}
    manager_check = {"ok": True, "manager_state": status.get("manager_state")}

    group = services().auth.single_user.user_group
    try:
        reply = manager.read("plans_allowed", {"user_group": group})
    except Exception as exc:
        return manager_check, {"ok": False, "reason": f"RE Manager did not answer ({_failure(exc)})"}
    plans = reply.get("plans_allowed") or {}
    if not reply.succeeded:
        plans_check = {"ok": False, "reason": f"RE Manager refused: {reply.get('msg')}"}
    elif not plans:
        plans_check = {"ok": False, "reason": f"RE Manager allows no plans to user group {group!r}"}
    else:
        plans_check = {"ok": True, "count": len(plans), "user_group": group}
    return manager_check, plans_check


@health.endpoint("/readyz", scope=PUBLIC, errors=(503,))
def readyz(call: Call) -> dict:
    """RE Manager answers, allows plans, and Redis answers (readiness); 503 with reasons if not."""
    manager_check, plans_check = _check_manager()
    store = services().store
    redis_check = {"ok": True}
    if not store.ping():
        redis_check = {"ok": False, "reason": f"Redis at {store.display_url} did not answer"}
    checks = {"re_manager": manager_check, "allowed_plans": plans_check, "redis": redis_check}
    if not all(check["ok"] for check in checks.values()):
        raise NotReady(checks)
    return {"ready": True, "checks": checks}
