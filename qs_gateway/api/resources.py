"""Plans and devices: all that exist, and those the caller's user group may use."""

from __future__ import annotations

from collections.abc import Callable

from ..extensions import services
from ..manager import Reply
from . import schemas
from .declare import Call, Resource

resources = Resource("resources", __name__)


def _reduced(list_key: str) -> Callable[[Reply], Reply]:
    def transform(reply: Reply) -> Reply:
        if not reply.succeeded or list_key not in reply.data:
            return reply
        # Imported on first use: bluesky_queueserver is large and most workers never need it.
        from bluesky_queueserver.manager.conversions import simplify_plan_descriptions

        return Reply({**reply.data, list_key: simplify_plan_descriptions(reply.data[list_key])})

    return transform


def _plans(call: Call, method: str, params: dict) -> Reply:
    reduced = bool(call.payload.get("reduced"))
    list_key = method  # the reply's list has the method's name: plans_allowed, plans_existing
    return services().manager.cached(
        method,
        params,
        uid_field=f"{method}_uid",
        variant="reduced" if reduced else None,
        transform=_reduced(list_key) if reduced else None,
    )


@resources.endpoint(
    "/plans/allowed",
    scope="read:resources",
    schema=schemas.PlansList,
    manager_method="plans_allowed",
    injects=("user_group",),
)
def plans_allowed(call: Call) -> Reply:
    """Plans the caller's user group may use (`reduced` gives simplified descriptions)."""
    return _plans(call, "plans_allowed", {"user_group": call.principal.user_group})


@resources.endpoint(
    "/plans/existing", scope="read:resources", schema=schemas.PlansList, manager_method="plans_existing"
)
def plans_existing(call: Call) -> Reply:
    """Every plan in the worker environment (`reduced` gives simplified descriptions)."""
    return _plans(call, "plans_existing", {})


@resources.endpoint(
    "/devices/allowed",
    scope="read:resources",
    schema=schemas.Reload,
    manager_method="devices_allowed",
    injects=("user_group",),
)
def devices_allowed(call: Call) -> Reply:
    """Devices the caller's user group may use."""
    return services().manager.cached(
        "devices_allowed",
        {"user_group": call.principal.user_group},
        uid_field="devices_allowed_uid",
        reload=bool(call.payload.get("reload")),
    )


@resources.endpoint(
    "/devices/existing", scope="read:resources", schema=schemas.Reload, manager_method="devices_existing"
)
def devices_existing(call: Call) -> Reply:
    """Every device in the worker environment."""
    return services().manager.cached(
        "devices_existing", uid_field="devices_existing_uid", reload=bool(call.payload.get("reload"))
    )
