"""Plans and devices: all that exist, and those the caller's user group may use."""

from __future__ import annotations

from ..extensions import services
from ..manager import Reply, method
from ..manager.plan_descriptions import reduce_plans
from ..manager.plan_schema import plan_schemas
from .declare import Call, Resource
from .schemas import CHECKED, Flag, Payload, Reload


class PlansList(Payload):
    reduced = Flag(allow_none=True, metadata=CHECKED)  # read by the gateway, never sent


def _reduced(reply: Reply) -> Reply:
    # the reply's list has the method's name: plans_allowed, plans_existing
    list_key = next((key for key in ("plans_allowed", "plans_existing") if key in reply.data), None)
    if not reply.succeeded or list_key is None:
        return reply
    return Reply({**reply.data, list_key: reduce_plans(reply.data[list_key])})


def _plans(call: Call, name: str) -> Reply:
    params = call.params(method(name).identity)
    if params.pop("reduced", False):
        return services().manager.read(name, params, variant="reduced", transform=_reduced)
    return services().manager.read(name, params)


resources = Resource("resources", __name__)


@resources.endpoint("/plans/allowed", scope="read:resources", schema=PlansList, manager_method="plans_allowed")
def plans_allowed(call: Call) -> Reply:
    """Plans the caller's user group may use (`reduced` gives simplified descriptions)."""
    return _plans(call, "plans_allowed")


@resources.endpoint("/plans/existing", scope="read:resources", schema=PlansList, manager_method="plans_existing")
def plans_existing(call: Call) -> Reply:
    """Every plan in the worker environment (`reduced` gives simplified descriptions)."""
    return _plans(call, "plans_existing")


def _as_schemas(reply: Reply) -> Reply:
    if not reply.succeeded or "plans_allowed" not in reply.data:
        return reply
    rest = {key: value for key, value in reply.data.items() if key != "plans_allowed"}
    return Reply({**rest, "schemas": plan_schemas(reply.data["plans_allowed"])})


@resources.endpoint("/plans/allowed/json_schema", scope="read:resources", schema=Reload, manager_method="plans_allowed")
def plans_allowed_json_schema(call: Call) -> Reply:
    """A JSON Schema (draft 2020-12) of the queue item of each plan the caller's group may use.

    Answers `{"success", "msg", "plans_allowed_uid", "schemas": {plan name: schema}}`; each schema
    describes the whole item (`item_type`, `name`, `args`, `kwargs`, `meta`), derived from the plan's
    parameter descriptions (kinds, annotations, enums of devices and plans, defaults, min/max).
    """
    params = call.params(method("plans_allowed").identity)
    reload = bool(params.pop("reload", False))
    return services().manager.read("plans_allowed", params, reload=reload, variant="json_schema", transform=_as_schemas)


resources.forward("/devices/allowed", "devices_allowed", methods=("GET",), scope="read:resources", schema=Reload)
resources.forward("/devices/existing", "devices_existing", methods=("GET",), scope="read:resources", schema=Reload)
