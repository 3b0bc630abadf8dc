"""Plan documents: every kind of validation error with its JSON path, and references into results."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.planner import validate
from gateway.planner.plan import Plan, UnresolvedRef, resolve
from gateway.sources.base import ToolDefinition

TOOLS = {
    "crm.find_customer": {"readOnlyHint": True, "idempotentHint": True},
    "tickets.create": {"idempotentHint": False},
    "email.send": {},
}


def visible(name: str) -> ToolDefinition | None:
    if name not in TOOLS:
        return None
    return ToolDefinition(name=name, input_schema={"type": "object"}, annotations=TOOLS[name], source="test")


def problems(plan: Any) -> list[tuple[str, str]]:
    checked, found = validate(plan, visible)
    assert checked is None
    return [(p.path, p.message) for p in found]


def step(step_id: str, tool: str = "crm.find_customer", **fields: Any) -> dict[str, Any]:
    return {"id": step_id, "tool": tool, "arguments": {}, **fields}


def test_a_good_plan_is_valid_and_hashed() -> None:
    plan = {"goal": "g", "steps": [step("a"), step("b", "tickets.create", arguments={"x": {"$ref": "a.result.id"}})]}
    checked, found = validate(plan, visible)
    assert found == [] and checked is not None
    assert checked.hash == Plan.model_validate(plan).hash and len(checked.hash) == 64


@pytest.mark.parametrize(
    ("plan", "expected"),
    [
        ({"steps": []}, ("$.steps", "at least 1")),
        ({"steps": [{"id": "a"}]}, ("$.steps[0].tool", "Field required")),
        ({"steps": [step("1bad")]}, ("$.steps[0].id", "should match pattern")),
        ({"steps": [step("a", unknown_field=1)]}, ("$.steps[0].unknown_field", "Extra inputs are not permitted")),
        ({"steps": [step("a"), step("a")]}, ("$.steps[1].id", "step id 'a' is used twice")),
        ({"steps": [step("a", "no.such")]}, ("$.steps[0].tool", "unknown tool no.such")),
        ({"steps": [step("a", after=["ghost"])]}, ("$.steps[0].after[0]", "unknown step 'ghost'")),
        (
            {"steps": [step("a", arguments={"q": {"$ref": "ghost.result.x"}})]},
            ("$.steps[0].arguments.q.$ref", "unknown step 'ghost'"),
        ),
        (
            {"steps": [step("a", arguments={"q": [{"$ref": "not a reference"}]})]},
            ("$.steps[0].arguments.q[0].$ref", "is not a reference"),
        ),
        (
            {"steps": [step("a", arguments={"q": {"$ref": "a.result"}})]},
            ("$.steps[0].arguments.q.$ref", "its own result"),
        ),
        (
            {"steps": [step("a", after=["b"]), step("b", arguments={"q": {"$ref": "a.result.id"}})]},
            ("$.steps[0]", "the steps form a cycle: a -> b -> a"),
        ),
        ({"steps": [step("a", "tickets.create", retries=2)]}, ("$.steps[0].retries", "is not idempotent")),
        (
            {"limits": {"max_steps": 2}, "steps": [step("a"), step("b"), step("c")]},
            ("$.steps", "3 steps; the limit is 2"),
        ),
        (
            {"steps": [step(f"s{i}") for i in range(51)], "limits": {"max_steps": 51}},
            ("$.limits.max_steps", "less than or equal to 50"),
        ),
        (
            {"steps": [step("a", compensate={"tool": "no.such"})]},
            ("$.steps[0].compensate.tool", "unknown tool no.such"),
        ),
    ],
)
def test_each_validation_error_names_its_json_path(plan: dict[str, Any], expected: tuple[str, str]) -> None:
    found = problems(plan)
    assert any(path == expected[0] and expected[1] in message for path, message in found), found


def test_references_reach_into_nested_results_and_arrays_and_replace_whole_values() -> None:
    outputs = {"find": {"result": {"customers": [{"id": "C001", "tags": ["gold"]}], "n": 1}, "content": []}}
    arguments = {
        "id": {"$ref": "find.result.customers[0].id"},
        "tag": {"$ref": "find.result.customers[0].tags[0]"},
        "all": {"$ref": "find.result"},
        "text": "customer {$ref: find.result.n}",  # a string is never substituted into
        "nested": [{"$ref": "find.result.n"}],
    }
    assert resolve(arguments, outputs) == {
        "id": "C001",
        "tag": "gold",
        "all": {"customers": [{"id": "C001", "tags": ["gold"]}], "n": 1},
        "text": "customer {$ref: find.result.n}",
        "nested": [1],
    }
    with pytest.raises(UnresolvedRef, match="the result has no 3 there"):
        resolve({"x": {"$ref": "find.result.customers[3].id"}}, outputs)
    with pytest.raises(UnresolvedRef, match="step failed has no result"):
        resolve({"x": {"$ref": "failed.result.id"}}, outputs)
