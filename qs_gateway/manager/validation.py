"""Judging queue items as RE Manager judges them on ``queue_item_add``, without adding them.

RE Manager checks an added item in this order: the item is a dict with a supported
``item_type`` (``plan`` or ``instruction``), the user group is known, then the item itself (a
plan through bluesky-queueserver's ``validate_plan`` against the group's allowed plans and
devices; an instruction must be ``queue_stop``). The verdicts here follow the same order and
use the same words, so a refusal reads exactly as RE Manager's would. The lists of allowed plans
and devices come from :meth:`ManagerClient.read`; once they are cached, judging an item sends
nothing to RE Manager. What is not judged: the queue's lock and the position (``pos``,
``before_uid``, ``after_uid``), which are about the queue, not the item.

bluesky-queueserver's validation module is small (no data-frame library): imported with the
gateway, it adds a few megabytes to a worker.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bluesky_queueserver.manager import profile_ops

from .client import ManagerClient
from .refusals import REFUSALS

# RE Manager's words (bluesky_queueserver.manager.manager), kept verbatim: clients compare them.
ADD_FAILED = REFUSALS["queue_item_add"].prefix
_BATCH = REFUSALS["queue_item_add_batch"].batch
BATCH_ITEM_FAILED = _BATCH.item_prefix
FORMAT_PREFIX = "Incorrect request format: "
NO_ITEM = FORMAT_PREFIX + "request contains no item info"
NO_ITEMS = "Invalid request format: the list of items is not found"
# a null item of a batch: RE Manager takes it for no item at all, and says so this way
NULL_BATCH_ITEM = "Runtime error: Only one of 'request' or 'item' parameters may be not None: request=None, item=None"
SUPPORTED_ITEM_TYPES = ("plan", "instruction")  # what queue_item_add accepts (not "function")
INSTRUCTIONS = ("queue_stop",)


@dataclass(frozen=True)
class GroupLists:
    """What a user group may use; ``refusal`` is RE Manager's reason when it knows no such group."""

    uids: tuple[Any, Any]  # (plans_allowed_uid, devices_allowed_uid) of the status they were read for
    plans: Mapping[str, Any] | None = None
    devices: Mapping[str, Any] | None = None
    refusal: str = ""


@dataclass(frozen=True)
class Verdict:
    success: bool
    msg: str = ""
    errors: Mapping[str, str] | None = None  # plan parameter -> problem, where it can be told

    def as_dict(self) -> dict[str, Any]:
        return {"success": self.success, "msg": self.msg, "errors": dict(self.errors or {})}


# -- the item on its own -----------------------------------------------------------------------


def format_problem(item: Any) -> str:
    """Why RE Manager would not even look at ``item`` (not a dict, no or an unsupported
    ``item_type``); empty when it would."""
    if not isinstance(item, dict):
        return f"{FORMAT_PREFIX}incorrect type ('{type(item)}') of item parameter: item parameter must have type 'dict'"
    item_type = item.get("item_type", None)
    if item_type is None:
        return f"{FORMAT_PREFIX}'item_type' key is not found"
    if item_type not in SUPPORTED_ITEM_TYPES:
        return (
            f"{FORMAT_PREFIX}unsupported 'item_type' value: '{item_type}', supported item types {SUPPORTED_ITEM_TYPES}"
        )
    return ""


def judge_prepared(item: dict, lists: GroupLists) -> Verdict:
    """The verdict on a well-formed item for a known group (RE Manager's ``_prepare_item``)."""
    if item["item_type"] == "instruction":
        if item.get("name") in INSTRUCTIONS:
            return Verdict(True)
        return Verdict(False, f"Unrecognized instruction: {item}")
    success, msg = profile_ops.validate_plan(item, allowed_plans=lists.plans, allowed_devices=lists.devices)
    if success:
        return Verdict(True)
    return Verdict(False, msg, parameter_errors(item, lists, msg))


# -- which parameter is wrong --------------------------------------------------------------------

_QUOTED = re.compile(r"'([^']+)'")
# validate_plan's own lines for the checks that follow pydantic's (types as given, value ranges)
_KEYED_LINE = re.compile(r"(?:Incorrect parameter type|Parameter value is out of range): key='(?P<key>[^']*)'[^\n]*")


def parameter_errors(item: dict, lists: GroupLists, msg: str) -> dict[str, str]:
    """Plan parameter -> problem for a plan ``validate_plan`` refused with ``msg``.

    The binding and pydantic steps are run again (bluesky-queueserver's public functions) to
    learn which parameter failed; the later checks name their parameter in ``msg`` itself.
    Problems with no parameter to blame (an unknown plan, too many positional arguments,
    ``meta``) are in ``msg`` only.
    """
    plans = lists.plans or {}
    name = item.get("name")
    if not isinstance(name, str) or name not in plans:
        return {}
    problems: dict[str, list[str]] = {}
    try:
        description = profile_ops.filter_plan_description(
            plans[name], allowed_plans=lists.plans, allowed_devices=lists.devices
        )
        parameters = profile_ops.construct_parameters(description["parameters"])
        model = profile_ops.pydantic_construct_model_class(parameters)
    except Exception:  # a description RE Manager could not use either: msg says it
        return {}
    try:
        bound = inspect.Signature(parameters).bind(*item.get("args", {}), **item.get("kwargs", {}))
    except TypeError as exc:
        named = _QUOTED.search(str(exc))
        return {named.group(1): str(exc)} if named else {}
    try:
        profile_ops.pydantic_validate_model(bound.arguments, model)
    except Exception as exc:
        for error in _pydantic_errors(exc):
            location = [str(part) for part in error.get("loc", ())]
            if location:
                where = ".".join(location)
                text = error.get("msg", "")
                problems.setdefault(location[0], []).append(text if len(location) == 1 else f"{where}: {text}")
        return _joined(problems)
    reason = msg.rsplit("\nPlan: ", 1)[0]  # not the plan printed after it
    for line in _KEYED_LINE.finditer(reason):
        problems.setdefault(line.group("key"), []).append(line.group(0))
    return _joined(problems)


def _pydantic_errors(exc: Exception) -> list[dict[str, Any]]:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return []
    try:
        found = errors()
    except Exception:
        return []
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


def _joined(problems: Mapping[str, list[str]]) -> dict[str, str]:
    return {key: "; ".join(texts) for key, texts in problems.items()}


# -- the request, as queue_item_add and queue_item_add_batch answer it ----------------------------


def judge_add(request: Mapping[str, Any], lists_of: Callable[[], GroupLists]) -> dict[str, Any]:
    """What ``queue_item_add`` would answer about ``request["item"]``: success, msg, errors."""
    if "item" not in request:
        return Verdict(False, ADD_FAILED + NO_ITEM).as_dict()
    item = request["item"]
    problem = format_problem(item)
    if problem:
        return Verdict(False, ADD_FAILED + problem).as_dict()
    lists = lists_of()
    if lists.refusal:
        return Verdict(False, ADD_FAILED + lists.refusal).as_dict()
    verdict = judge_prepared(item, lists)
    if not verdict.success:
        verdict = Verdict(False, ADD_FAILED + verdict.msg, verdict.errors)
    return verdict.as_dict()


def judge_add_batch(request: Mapping[str, Any], lists_of: Callable[[], GroupLists]) -> dict[str, Any]:
    """What ``queue_item_add_batch`` would answer about ``request["items"]``: the overall
    success and msg, and one result (success, msg, errors) per item."""
    if "items" not in request:
        return {"success": False, "msg": ADD_FAILED + NO_ITEMS, "results": []}
    items = request["items"]
    lists = lists_of()
    if lists.refusal:
        return {"success": False, "msg": ADD_FAILED + lists.refusal, "results": []}
    results = []
    for item in items:
        problem = NULL_BATCH_ITEM if item is None else format_problem(item)
        verdict = Verdict(False, problem) if problem else judge_prepared(item, lists)
        if not verdict.success:
            verdict = Verdict(False, BATCH_ITEM_FAILED + verdict.msg, verdict.errors)
        results.append(verdict.as_dict())
    failed = sum(not result["success"] for result in results)
    msg = _BATCH.summary.format(failed=failed, total=len(results))
    return {"success": not failed, "msg": msg if failed else "", "results": results}


# -- the lists, once per uid -----------------------------------------------------------------------


class AllowedLists:
    """The allowed plans and devices of each user group, decoded once per pair of list uids.

    RE Manager's ``plans_allowed`` / ``devices_allowed`` replies are cached (as bytes) by the
    client; this keeps them decoded too, so a validation costs a status lookup and no parsing.
    An unknown group is remembered as well (its refusal is not cached by the client).
    """

    def __init__(self, manager: ManagerClient) -> None:
        self._manager = manager
        self._by_group: dict[str, GroupLists] = {}  # an entry is replaced, never changed

    def of_group(self, group: str) -> GroupLists:
        status = self._manager.status()
        uids = (status.get("plans_allowed_uid"), status.get("devices_allowed_uid"))
        known = self._by_group.get(group)
        if known is not None and known.uids == uids and None not in uids:
            return known
        lists = self._fetch(group, uids)
        self._by_group[group] = lists
        return lists

    def _fetch(self, group: str, uids: tuple[Any, Any]) -> GroupLists:
        params = {"user_group": group}  # as /api/plans/allowed asks: one cache entry for both
        lists = []
        for method in ("plans_allowed", "devices_allowed"):  # each reply holds its list under its name
            reply = self._manager.read(method, params)
            if not reply.succeeded:
                return GroupLists(uids, refusal=str(reply.get("msg") or f"Unknown user group: '{group}'"))
            lists.append(reply.get(method) or {})
        return GroupLists(uids, *lists)


class ItemValidator:
    """Validation of queue items for a user group, against the cached lists of that group."""

    def __init__(self, manager: ManagerClient) -> None:
        self.lists = AllowedLists(manager)

    def check(self, request: Mapping[str, Any], user_group: str) -> dict[str, Any]:
        return judge_add(request, lambda: self.lists.of_group(user_group))

    def check_batch(self, request: Mapping[str, Any], user_group: str) -> dict[str, Any]:
        return judge_add_batch(request, lambda: self.lists.of_group(user_group))
