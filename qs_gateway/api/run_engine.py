"""The Run Engine: pausing and ending plans, runs and metadata."""

from __future__ import annotations

from marshmallow import fields, validate

from ..extensions import services
from .declare import Call, Resource
from .schemas import CHECKED, Empty, LockKeyOnly, Payload, lock_key_field, reload_field


class RePause(Payload):
    option = fields.String(allow_none=True, validate=validate.OneOf(("deferred", "immediate")))
    lock_key = lock_key_field()


RUN_OPTIONS = (None, "active", "open", "closed")


class ReRuns(Payload):
    # bluesky-httpserver checks the option itself (RE Manager is never asked for a subset)
    option = fields.String(
        allow_none=True,
        validate=validate.OneOf(
            RUN_OPTIONS[1:], error=f"Unsupported option {{input!r}}. Supported options: {RUN_OPTIONS}"
        ),
        metadata=CHECKED,
    )
    reload = reload_field()


run_engine = Resource("re", __name__)

run_engine.forward("/re/pause", "re_pause", scope="write:plan:control", schema=RePause)
for action in ("resume", "stop", "abort", "halt"):
    run_engine.forward(f"/re/{action}", f"re_{action}", scope="write:plan:control", schema=LockKeyOnly)
run_engine.forward("/re/metadata", "re_metadata", methods=("GET",), scope="read:monitor", schema=Empty)


def _runs(option: str | None, reload: bool = False) -> dict:
    # RE Manager is always asked for every run; the list is filtered here (and cached by uid).
    reply = services().manager.read("re_runs", reload=reload)
    if not reply.succeeded:
        return reply.data
    runs = reply.get("run_list") or []
    if option == "open":
        runs = [run for run in runs if run.get("is_open")]
    elif option == "closed":
        runs = [run for run in runs if not run.get("is_open")]
    return {**reply.data, "run_list": runs}


@run_engine.endpoint("/re/runs", methods=("POST",), scope="read:monitor", schema=ReRuns, manager_method="re_runs")
def re_runs(call: Call) -> dict:
    """Runs opened by the running plan; `option` selects active (all), open or closed ones."""
    return _runs(call.payload.get("option"), bool(call.payload.get("reload")))


@run_engine.endpoint(
    "/re/runs/<any(active, open, closed):option>", scope="read:monitor", schema=Empty, manager_method="re_runs"
)
def re_runs_by_option(call: Call) -> dict:
    """Runs of the running plan: active (all), open or closed ones."""
    return _runs(call.path["option"])
