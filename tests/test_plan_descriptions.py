"""The gateway's own reduction of plan descriptions gives what bluesky-queueserver's gives."""

from __future__ import annotations

import copy

import pytest
from bluesky_queueserver.manager.conversions import simplify_plan_descriptions

from qs_gateway.manager.plan_descriptions import reduce_plans


@pytest.fixture(scope="module")
def plans(zmq_rm):
    existing = zmq_rm.request("plans_existing")["plans_existing"]
    assert len(existing) > 10
    return existing


def test_every_plan_of_the_simulated_profile_reduces_as_the_reference_does(plans):
    assert reduce_plans(plans) == simplify_plan_descriptions(copy.deepcopy(plans))


ANNOTATED = {
    "p": {
        "name": "p",
        "module": "m",
        "properties": {"is_generator": True},
        "parameters": [
            {"name": "dets", "kind": {"name": "VAR_POSITIONAL", "value": 2},
             "annotation": {"type": "typing.List[str]", "devices": {"Dets": ["det1", "det2"], "One": "det3"}}},
            {"name": "n", "kind": {"name": "KEYWORD_ONLY", "value": 3}, "annotation": {"type": "int"},
             "default": "3", "min": "1", "max": "1e3", "step": "0.5"},
            {"name": "x", "kind": {"name": "KEYWORD_ONLY", "value": 3}, "annotation": {"type": "list[float]"},
             "default": "not a literal", "min": "inf", "max": "abc"},
            {"name": "d", "kind": {"name": "KEYWORD_ONLY", "value": 3},
             "annotation": {"type": "dict[str, typing.Any] | None"}, "default": "None"},
            {"name": "e", "kind": {"name": "KEYWORD_ONLY", "value": 3}, "annotation": {"type": "typingXlist[int]"},
             "description": "odd", "default": "{'a': (1, 2)}"},
            {"name": "s", "kind": {"name": "KEYWORD_ONLY", "value": 3}},
        ],
    },
    "q": {"name": "q", "description": "no parameters", "parameters": []},
}  # fmt: skip


def test_annotations_defaults_and_bounds_reduce_as_the_reference_does():
    assert reduce_plans(ANNOTATED) == simplify_plan_descriptions(copy.deepcopy(ANNOTATED))
    reduced = reduce_plans(ANNOTATED)["p"]["parameters"]
    assert reduced[0]["enum"] == ["det1", "det2", "det3"] and reduced[0]["is_list"] is True
    assert reduced[1]["min"] == 1 and reduced[1]["max"] == 1000 and reduced[1]["step"] == 0.5
    assert "default" not in reduced[2] and reduced[2]["is_optional"] is False and "min" not in reduced[2]
