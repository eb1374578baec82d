"""A JSON Schema (draft 2020-12) of the queue item of each allowed plan, from RE Manager's plan
descriptions (``/api/plans/allowed/json_schema``; pure functions, no I/O).

A plan's schema describes the whole item: ``item_type`` ``plan``, its ``name``, ``args`` (the
positional parameters in order, with ``prefixItems``) and ``kwargs`` (every parameter that may be
given by keyword). A parameter without a default must be given once, positionally or by keyword,
and not both: that is stated with ``allOf`` clauses. Each value's schema comes from the
parameter's annotation as RE Manager reads it (``int``, ``float``, ``str``, ``bool``, ``None``,
unions, lists, tuples, dicts, ``typing.Any``), its ``devices``/``plans``/``enums`` sections
(``enum`` of the names), and ``min``/``max`` (on every number inside). Built-in device and plan
types (``__READABLE__``, ``__MOVABLE__``, ...) are names, i.e. strings, as RE Manager validates
them. What an annotation says that JSON Schema cannot (e.g. ``Hashable``) leaves the value open.
See docs/agents.md for where the schema and RE Manager may still disagree.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from typing import Any

DIALECT = "https://json-schema.org/draft/2020-12/schema"

_SIMPLE = {
    "int": {"type": "integer"},
    # RE Manager takes a boolean where a float is annotated (as a number: False is 0.0), not
    # where an int is: the schema says the same
    "float": {"type": ["number", "boolean"]},
    "str": {"type": "string"},
    "bool": {"type": "boolean"},
    "None": {"type": "null"},
    "NoneType": {"type": "null"},
    "dict": {"type": "object"},
    "list": {"type": "array"},
    "tuple": {"type": "array"},
    # JSON's hashable values once read into Python: all but lists and dicts
    "Hashable": {"type": ["null", "boolean", "integer", "number", "string"]},
}
_ANY = ("Any",)
_SEQUENCES = ("list", "List", "Sequence", "Iterable", "Collection", "MutableSequence", "Set", "set", "frozenset")
_MAPPINGS = ("dict", "Dict", "Mapping", "MutableMapping")
_BUILT_IN_NAMES = ("__PLAN__", "__DEVICE__", "__PLAN_OR_DEVICE__", "__READABLE__", "__MOVABLE__", "__FLYABLE__")
_CALLABLE = "__CALLABLE__"
_POSITIONAL = ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")
_BY_KEYWORD = ("POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY")


def plan_schemas(plans: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The schema of every plan in ``plans`` (an RE Manager ``plans_allowed`` list)."""
    return {name: plan_schema(description) for name, description in plans.items()}


def plan_schema(description: Mapping[str, Any]) -> dict[str, Any]:
    parameters = [p for p in description.get("parameters") or () if isinstance(p, Mapping)]
    positional = [p for p in parameters if _kind(p) in _POSITIONAL]
    by_keyword = [p for p in parameters if _kind(p) in _BY_KEYWORD]
    var_positional = next((p for p in parameters if _kind(p) == "VAR_POSITIONAL"), None)
    var_keyword = next((p for p in parameters if _kind(p) == "VAR_KEYWORD"), None)

    args: dict[str, Any] = {"type": "array"}
    if positional:
        args["prefixItems"] = [value_schema(p) for p in positional]
    args["items"] = value_schema(var_positional) if var_positional is not None else False
    kwargs: dict[str, Any] = {
        "type": "object",
        "properties": {p["name"]: value_schema(p) for p in by_keyword},
        "additionalProperties": value_schema(var_keyword) if var_keyword is not None else False,
    }
    once = []
    for index, parameter in enumerate(positional):
        given_positionally = {"required": ["args"], "properties": {"args": {"minItems": index + 1}}}
        if _kind(parameter) == "POSITIONAL_ONLY":
            if "default" not in parameter:
                once.append(given_positionally)
            continue
        given_by_keyword = {"required": ["kwargs"], "properties": {"kwargs": {"required": [parameter["name"]]}}}
        once.append({"not": {"allOf": [given_positionally, given_by_keyword]}})
        if "default" not in parameter:
            once.append({"anyOf": [given_positionally, given_by_keyword]})
    for parameter in by_keyword:
        if _kind(parameter) == "KEYWORD_ONLY" and "default" not in parameter:
            once.append({"required": ["kwargs"], "properties": {"kwargs": {"required": [parameter["name"]]}}})

    schema: dict[str, Any] = {
        "$schema": DIALECT,
        "title": str(description.get("name", "")),
        "type": "object",
        "properties": {
            "item_type": {"const": "plan"},
            "name": {"const": description.get("name")},
            "args": args,
            "kwargs": kwargs,
            "meta": {"anyOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]},
        },
        "required": ["item_type", "name"],
    }
    if description.get("description"):
        schema["description"] = str(description["description"])
    if once:
        schema["allOf"] = once
    return schema


def _kind(parameter: Mapping[str, Any]) -> str:
    kind = parameter.get("kind")
    return str(kind.get("name", "")) if isinstance(kind, Mapping) else ""


def value_schema(parameter: Mapping[str, Any]) -> dict[str, Any]:
    """The schema of one parameter's value: its annotation, bounds, default and description."""
    annotation = parameter.get("annotation")
    schema = annotation_schema(annotation) if isinstance(annotation, Mapping) else {}
    bounds = {}
    for name, keyword in (("min", "minimum"), ("max", "maximum")):
        number = _number(parameter.get(name))
        if number is not None:
            bounds[keyword] = number
    if bounds:
        schema = _bounded(schema, bounds)
    if parameter.get("description"):
        schema = {**schema, "description": str(parameter["description"])}
    if "default" in parameter:
        try:
            default = _json_value(ast.literal_eval(str(parameter["default"])))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass  # not a literal (an object of the profile) or not JSON (a set, bytes): not shown
        else:
            schema = {**schema, "default": default}
    return schema


def _json_value(value: Any) -> Any:
    """``value`` as the JSON value a client reads (a tuple is an array); ``ValueError`` when JSON
    has none (a set, bytes, a complex or non-finite number, a key that is not a string)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not a JSON number")
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(element) for element in value]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: _json_value(element) for key, element in value.items()}
    raise ValueError(f"no JSON value for a {type(value).__name__}")


def annotation_schema(annotation: Mapping[str, Any]) -> dict[str, Any]:
    """The schema of an annotation ``{"type": ..., "devices"/"plans"/"enums": {name: [...]}}``."""
    names: dict[str, list[Any]] = {}
    for section in ("devices", "plans", "enums"):
        for type_name, values in (annotation.get(section) or {}).items():
            names[str(type_name)] = list(values) if isinstance(values, (list, tuple)) else [values]
    text = annotation.get("type")
    if not isinstance(text, str) or not text.strip():
        return {}
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError):
        return {}
    return _schema_of(tree, names)


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr  # typing.List, collections.abc.Sequence: the last part names it
    if isinstance(node, ast.Constant) and node.value is None:
        return "None"
    return None


def _union(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    if any(not schema for schema in schemas):
        return {}  # one of them admits anything
    return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}


def _schema_of(node: ast.AST, names: Mapping[str, list[Any]]) -> dict[str, Any]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union([_schema_of(node.left, names), _schema_of(node.right, names)])
    if isinstance(node, ast.Subscript):
        return _generic(_dotted(node.value), node.slice, names)
    name = _dotted(node)
    if name is None:
        return {}
    if name in names:
        return {"enum": names[name]}
    if name in _BUILT_IN_NAMES or name == _CALLABLE:
        return {"type": "string"}
    if name in _SIMPLE:
        return dict(_SIMPLE[name])
    if name in _SEQUENCES:
        return {"type": "array"}
    if name in _MAPPINGS:
        return {"type": "object"}
    return {}  # Any, Hashable, a class of the profile: nothing JSON Schema can say


def _generic(name: str | None, argument: ast.AST, names: Mapping[str, list[Any]]) -> dict[str, Any]:
    parts = list(argument.elts) if isinstance(argument, ast.Tuple) else [argument]
    if name == "Optional":
        return _union([_schema_of(parts[0], names), {"type": "null"}])
    if name == "Union":
        return _union([_schema_of(part, names) for part in parts])
    if name == "Literal":
        values = [part.value for part in parts if isinstance(part, ast.Constant)]
        return {"enum": values}
    if name in ("tuple", "Tuple"):
        if len(parts) == 2 and isinstance(parts[1], ast.Constant) and parts[1].value is Ellipsis:
            return {"type": "array", "items": _schema_of(parts[0], names)}
        items = [_schema_of(part, names) for part in parts]
        return {"type": "array", "prefixItems": items, "minItems": len(items), "maxItems": len(items)}
    if name in _SEQUENCES:
        return {"type": "array", "items": _schema_of(parts[0], names)}
    if name in _MAPPINGS:
        value = _schema_of(parts[-1], names) if len(parts) == 2 else {}
        return {"type": "object", "additionalProperties": value} if value else {"type": "object"}
    return {}


def _bounded(schema: dict[str, Any], bounds: Mapping[str, float]) -> dict[str, Any]:
    """``schema`` with ``bounds`` on every number it admits (RE Manager checks each element)."""
    if not schema:
        return {**bounds}  # applies to numbers only, whatever else it admits
    bounded = dict(schema)
    kinds = schema.get("type")
    if kinds in ("integer", "number") or (isinstance(kinds, list) and "number" in kinds):
        bounded.update(bounds)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            bounded[key] = _bounded(schema[key], bounds)
    for key in ("anyOf", "prefixItems"):
        if isinstance(schema.get(key), list):
            bounded[key] = [_bounded(part, bounds) for part in schema[key]]
    return bounded


def _number(text: Any) -> int | float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() else value
