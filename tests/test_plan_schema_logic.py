"""Plan schemas from hand-made descriptions: the annotation forms and parameter kinds the
simulated profile does not have (its own plans are checked against RE Manager in
test_plan_schema.py)."""

from __future__ import annotations

import jsonschema
import pytest

from qs_gateway.manager.plan_schema import annotation_schema, plan_schema


def parameter(name: str, kind: str, type_text: str | None = None, **extra) -> dict:  # noqa: ANN003
    described = {"name": name, "kind": {"name": kind, "value": 0}, **extra}
    if type_text is not None:
        described["annotation"] = {"type": type_text}
    return described


@pytest.mark.parametrize(
    "type_text, valid, invalid",
    [
        ("typing.Optional[int]", [1, None], [1.5, "1"]),
        ("typing.Union[int, str]", [1, "a"], [None, [1]]),
        ("typing.Literal['fast', 'slow']", ["fast"], ["medium", 1]),
        ("tuple[int, str]", [[1, "a"]], [[1], [1, "a", 2], ["a", 1]]),
        ("tuple[float, ...]", [[], [1.5, 2]], [["a"]]),
        ("typing.Dict[str, float]", [{"a": 1.5}], [{"a": "x"}, [1]]),
        ("list[list[int]]", [[[1], []]], [[1]]),
        ("collections.abc.Hashable", [1, "a", None], [[1], {"a": 1}]),
        ("SomeClassOfTheProfile", [1, "a", [1], {"a": 1}], []),
        ("not a type (", [1, "a"], []),
    ],
)
def test_annotation_forms(type_text, valid, invalid):
    validator = jsonschema.Draft202012Validator(annotation_schema({"type": type_text}))
    assert all(validator.is_valid(value) for value in valid), type_text
    assert not any(validator.is_valid(value) for value in invalid), type_text


def test_enums_of_devices_and_plans():
    schema = annotation_schema(
        {"type": "typing.List[Motors] | Plans", "devices": {"Motors": ["m1", "m2"]}, "plans": {"Plans": ["count"]}}
    )
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(["m1"]) and validator.is_valid("count")
    assert not validator.is_valid(["m3"]) and not validator.is_valid("scan")


def item(args=None, kwargs=None) -> dict:  # noqa: ANN001
    found = {"item_type": "plan", "name": "p"}
    if args is not None:
        found["args"] = args
    if kwargs is not None:
        found["kwargs"] = kwargs
    return found


def test_parameter_kinds_positional_only_keyword_only_var_and_once():
    description = {
        "name": "p",
        "parameters": [
            parameter("a", "POSITIONAL_ONLY", "int"),
            parameter("b", "POSITIONAL_OR_KEYWORD", "float", max="10"),
            parameter("c", "KEYWORD_ONLY", "str"),
            parameter("d", "KEYWORD_ONLY", "str", default="'x'"),
        ],
    }
    validator = jsonschema.Draft202012Validator(plan_schema(description))
    assert validator.is_valid(item([1, 2.0], {"c": "s"}))
    assert validator.is_valid(item([1], {"b": 2, "c": "s", "d": "y"}))
    assert not validator.is_valid(item([1, 2.0], {"b": 2, "c": "s"}))  # b twice
    assert not validator.is_valid(item([1], {"c": "s"}))  # b missing
    assert not validator.is_valid(item([], {"b": 1, "c": "s"}))  # a is positional only
    assert not validator.is_valid(item([1, 11], {"c": "s"}))  # b over its max
    assert not validator.is_valid(item([1, 2, 3], {"c": "s"}))  # no *args
    assert not validator.is_valid(item([1, 2], {}))  # c missing
    assert not validator.is_valid(item([1, 2], {"c": "s", "e": 1}))  # no **kwargs


def test_var_positional_and_var_keyword_take_their_annotation():
    description = {
        "name": "p",
        "parameters": [parameter("args", "VAR_POSITIONAL", "int"), parameter("kwargs", "VAR_KEYWORD", "str")],
    }
    validator = jsonschema.Draft202012Validator(plan_schema(description))
    assert validator.is_valid(item([1, 2, 3], {"x": "y"}))
    assert not validator.is_valid(item(["a"]))
    assert not validator.is_valid(item([], {"x": 1}))


@pytest.mark.parametrize(
    "default_text, shown",
    [
        ("1", 1),
        ("'x'", "x"),
        ("None", None),
        ("()", []),  # bluesky's fly(watch=()): a client reads the array []
        ("(1, (2.5, 'a'))", [1, [2.5, "a"]]),
        ("{'a': (1,)}", {"a": [1]}),
    ],
)
def test_a_literal_default_is_shown_as_the_json_value_a_client_reads(default_text, shown):
    schema = plan_schema({"name": "p", "parameters": [parameter("v", "KEYWORD_ONLY", default=default_text)]})
    default = schema["properties"]["kwargs"]["properties"]["v"]["default"]
    assert default == shown and type(default) is type(shown)


@pytest.mark.parametrize("default_text", ["{1, 2}", "b'x'", "1j", "1e999", "{1: 'a'}", "some_device", "[frozenset()]"])
def test_a_default_json_cannot_hold_is_left_out(default_text):
    schema = plan_schema({"name": "p", "parameters": [parameter("v", "KEYWORD_ONLY", default=default_text)]})
    assert "default" not in schema["properties"]["kwargs"]["properties"]["v"]
