"""Reduced plan descriptions (``reduced: true`` on ``/api/plans/allowed`` and ``/existing``).

bluesky-httpserver reduces RE Manager's plan descriptions with bluesky-queueserver's
``simplify_plan_descriptions``, which lives in a module that loads pandas and numpy. This is the
same transformation on plain Python (the result is identical; the test suite compares them), so
a worker serving a reduced list needs no data-frame library in its memory.

Each plan keeps its ``name``, its ``description`` and, if it has any, its ``parameters``; each
parameter keeps ``name``, ``kind`` and ``description``, and gains, from its annotation, ``type``
(``int``, ``float`` or ``str``), ``enum`` (the device, plan and enum names it admits) and
``is_list``; ``default`` (the default's text read as a Python literal) and ``is_optional``; and
``min``, ``max``, ``step`` as numbers.
"""

from __future__ import annotations

import ast
import logging
import math
import re
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

# The first of these words found in an annotation's type names the parameter's type.
_TYPE_WORDS = (("float", re.compile(r"\bfloat\b")), ("int", re.compile(r"\bint\b")), ("str", re.compile(r"\bstr\b")))
_LIST_TYPE = re.compile(r"^typing.list\[.+]$|^list\[.+]$")
_ENUM_SOURCES = ("devices", "plans", "enums")
_BOUNDS = ("min", "max", "step")


def reduce_plans(plans: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The reduced description of every plan in ``plans`` (name → description)."""
    return {name: _reduce_plan(description) for name, description in plans.items()}


def _reduce_plan(description: Mapping[str, Any]) -> dict[str, Any]:
    plan: dict[str, Any] = {"name": description["name"]}
    if "description" in description:
        plan["description"] = description["description"]
    if description.get("parameters"):
        plan["parameters"] = [_reduce_parameter(parameter) for parameter in description["parameters"]]
    return plan


def _reduce_parameter(parameter: Mapping[str, Any]) -> dict[str, Any]:
    reduced: dict[str, Any] = {"name": parameter["name"], "kind": parameter["kind"]}
    if "description" in parameter:
        reduced["description"] = parameter["description"]
    annotation = parameter.get("annotation")
    if annotation is not None:
        reduced.update(_from_annotation(annotation))
    if "default" in parameter:
        try:
            reduced["default"] = ast.literal_eval(parameter["default"])
        except Exception:
            logger.error("Failed to reconstruct the default value %s from string", parameter["default"])
    reduced["is_optional"] = "default" in reduced
    for bound in _BOUNDS:
        if bound in parameter:
            try:
                reduced[bound] = _number(parameter[bound])
            except ValueError as exc:
                logger.error("Failed to reconstruct %r value from string: %s", bound, exc)
    return reduced


def _from_annotation(annotation: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    type_text = annotation.get("type")
    names: list[Any] = []
    for source in _ENUM_SOURCES:
        for value in (annotation.get(source) or {}).values():
            names.extend(value if isinstance(value, (list, tuple)) else [value])
    if names:
        found["type"], found["enum"] = "str", names  # a choice among names
    elif type_text:
        lowered = type_text.lower()
        for type_name, word in _TYPE_WORDS:
            if word.search(lowered):
                found["type"] = type_name
                break
    if type_text:
        found["is_list"] = bool(_LIST_TYPE.search(type_text.lower()))
    return found


def _number(text: Any) -> int | float:
    """A bound given as text, as an ``int`` where that is exact, else a ``float``."""
    if not isinstance(text, str):
        raise ValueError(f"Value '{text}' is not a string (type: {type(text)})")
    try:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError("not a finite number")
    except ValueError as exc:
        raise ValueError(f"Failed to interpret the value {text!r} as integer or float number: {exc}") from exc
    return int(value) if value.is_integer() else value
