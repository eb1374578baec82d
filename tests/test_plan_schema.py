"""/api/plans/allowed/json_schema agrees with RE Manager: for every allowed plan of the simulated
profile, generated items (values drawn from each parameter's schema, and arbitrary JSON values
beside them) are accepted by RE Manager's own ``queue_item_add`` exactly when the plan's schema
says they are valid (none disagree; what a schema leaves open is listed in docs/agents.md).

Values are drawn from the schemas by :func:`from_schema` here: hypothesis-jsonschema 0.23.1
(its latest release) fails on object schemas with the Hypothesis of today (it uses Hypothesis
internals that are gone)."""

from __future__ import annotations

import json

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qs_gateway.manager.plan_schema import plan_schema

from .support import API_KEY

EXAMPLES = 30  # per plan


@pytest.fixture(scope="module")
def schemas(re_manager):  # noqa: ANN001
    from .support import make_app

    app = make_app(re_manager)
    client = app.test_client()
    answer = client.get("/api/plans/allowed/json_schema", headers={"Authorization": f"ApiKey {API_KEY}"})
    assert answer.status_code == 200
    from qs_gateway.extensions import EXTENSION_KEY

    app.extensions[EXTENSION_KEY].close()
    return answer.get_json()


def test_the_answer_holds_one_valid_schema_per_allowed_plan(schemas, zmq_rm):
    allowed = zmq_rm.request("plans_allowed", {"user_group": "primary"})["plans_allowed"]
    assert schemas["success"] is True and set(schemas["schemas"]) == set(allowed)
    for name, schema in schemas["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema == plan_schema(allowed[name])
    count = schemas["schemas"]["count"]
    assert count["properties"]["kwargs"]["properties"]["num"]["default"] == 1
    motors = schemas["schemas"]["move_then_count"]["properties"]["kwargs"]["properties"]
    assert motors["motors"]["items"] == {"enum": ["motor1", "motor2"]}
    assert motors["positions"]["items"]["maximum"] == 10


def _names(zmq_rm) -> list[str]:  # noqa: ANN001
    devices = zmq_rm.request("devices_allowed", {"user_group": "primary"})["devices_allowed"]
    return sorted(devices)[:12] + ["count", "no_such_device"]


def _json_values(names: list[str]) -> st.SearchStrategy:
    leaves = st.none() | st.booleans() | st.integers(-20, 20) | st.floats(-20, 20) | st.sampled_from(names)
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=3), max_leaves=4)


def from_schema(schema: dict, names: list[str]) -> st.SearchStrategy:
    """Values a schema of :mod:`qs_gateway.manager.plan_schema` admits (its constructs only)."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([from_schema({**part, **_bounds(schema)}, names) for part in schema["anyOf"]])
    low, high = schema.get("minimum", -20), schema.get("maximum", 20)
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**schema, "type": each}, names) for each in kind])
    if kind == "integer":
        return st.integers(int(low), int(high))
    if kind == "number":
        return st.floats(low, high) | st.integers(int(low), int(high))
    if kind == "string":
        return st.sampled_from(names)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        if "prefixItems" in schema:
            return st.tuples(*(from_schema(part, names) for part in schema["prefixItems"])).map(list)
        return st.lists(from_schema(schema.get("items", {}), names), max_size=3)
    if kind == "object":
        values = from_schema(schema.get("additionalProperties") or {}, names)
        return st.dictionaries(st.sampled_from(["a", "b", "sample"]), values, max_size=2)
    return _json_values(names)


def _bounds(schema: dict) -> dict:
    return {key: schema[key] for key in ("minimum", "maximum") if key in schema}


def _items(name: str, schema: dict, names: list[str]) -> st.SearchStrategy:
    properties = schema["properties"]["kwargs"].get("properties", {})
    values = {
        # mostly values the schema admits: without them, items with several parameters are rarely valid
        key: st.one_of(*[from_schema(sub, names)] * 4, _json_values(names))
        for key, sub in properties.items()
    }
    needed = {key: value for key, value in values.items() if "default" not in properties[key]}
    rest = {key: value for key, value in values.items() if key not in needed}
    # mostly with the parameters that have no default, sometimes without
    kwargs = st.one_of(*[st.fixed_dictionaries(needed, optional=rest)] * 3, st.fixed_dictionaries({}, optional=values))
    args = st.lists(_json_values(names), max_size=2)
    return st.builds(
        lambda kwargs, args, positional: {
            "item_type": "plan",
            "name": name,
            "kwargs": kwargs,
            **({"args": args} if positional else {}),
        },
        kwargs,
        args,
        st.sampled_from([False, False, False, True]),
    )


def test_generated_items_are_accepted_exactly_when_the_schema_says_so(schemas, zmq_rm, manager_idle):
    names = _names(zmq_rm)
    disagreements: dict[str, list] = {}
    verdicts = {True: 0, False: 0}

    def check(name: str, schema: dict) -> None:
        validator = jsonschema.Draft202012Validator(schema)

        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(_items(name, schema, names))
        def agree(item: dict) -> None:
            expected = validator.is_valid(item)
            verdicts[expected] += 1
            reply = zmq_rm.request("queue_item_add", {"item": item, "user": "schema", "user_group": "primary"})
            if reply["success"] != expected:
                disagreements.setdefault(name, []).append((item, expected, reply.get("msg", "")[:300]))

        agree()

    for name, schema in sorted(schemas["schemas"].items()):
        check(name, schema)
        zmq_rm.queue_clear()
    # in full (pytest would cut the items short): which value of which item the two judged apart
    assert not disagreements, json.dumps({name: found[:3] for name, found in disagreements.items()}, indent=1)
    # both verdicts were put to the test, many times
    assert min(verdicts.values()) > 5 * len(schemas["schemas"]), verdicts
