"""Check a plan before anything else looks at it: shape, step ids, references, the graph, tools, limits.

Every problem names the JSON path where it is, so an agent can fix its plan without guessing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from gateway.planner.plan import Plan, Ref, Step, refs_in
from gateway.tool_types import ToolDefinition


class Problem(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: str
    message: str


def validate(data: Any, visible: Callable[[str], ToolDefinition | None]) -> tuple[Plan | None, list[Problem]]:
    """The plan, or the problems that make it unusable. `visible` gives the caller's view of a tool."""
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        return None, [Problem(path=_path(e["loc"]), message=e["msg"]) for e in exc.errors()]
    problems: list[Problem] = []
    if len(plan.steps) > plan.limits.max_steps:
        problems.append(
            Problem(path="$.steps", message=f"{len(plan.steps)} steps; the limit is {plan.limits.max_steps}")
        )
    index: dict[str, int] = {}
    for i, step in enumerate(plan.steps):
        if step.id in index:
            problems.append(Problem(path=f"$.steps[{i}].id", message=f"step id {step.id!r} is used twice"))
        index.setdefault(step.id, i)
    for i, step in enumerate(plan.steps):
        problems.extend(_check_step(i, step, index, visible))
    if not problems:
        cycle = find_cycle(plan)
        if cycle:
            first = index[cycle[0]]
            problems.append(Problem(path=f"$.steps[{first}]", message="the steps form a cycle: " + " -> ".join(cycle)))
    return (plan if not problems else None), problems


def _check_step(
    i: int, step: Step, index: dict[str, int], visible: Callable[[str], ToolDefinition | None]
) -> list[Problem]:
    problems = []
    where = f"$.steps[{i}]"
    tool = visible(step.tool)
    if tool is None:
        problems.append(Problem(path=f"{where}.tool", message=f"unknown tool {step.tool}"))
    elif step.retries and not tool.annotations.get("idempotentHint"):
        problems.append(
            Problem(path=f"{where}.retries", message=f"{step.tool} is not idempotent, so it may not be retried")
        )
    for j, other in enumerate(step.after):
        if other not in index:
            problems.append(Problem(path=f"{where}.after[{j}]", message=f"unknown step {other!r}"))
        elif other == step.id:
            problems.append(Problem(path=f"{where}.after[{j}]", message="a step cannot come after itself"))
    for path, text in refs_in(step.arguments, f"{where}.arguments"):
        problems.extend(_check_ref(path, text, step.id, index, allow_self=False))
    if step.compensate is not None:
        if visible(step.compensate.tool) is None:
            problems.append(Problem(path=f"{where}.compensate.tool", message=f"unknown tool {step.compensate.tool}"))
        for path, text in refs_in(step.compensate.arguments, f"{where}.compensate.arguments"):
            problems.extend(_check_ref(path, text, step.id, index, allow_self=True))
    return problems


def _check_ref(path: str, text: str, step_id: str, index: dict[str, int], *, allow_self: bool) -> list[Problem]:
    ref = Ref.parse(text)
    if ref is None:
        return [
            Problem(path=f"{path}.$ref", message=f"{text!r} is not a reference (STEP.result.path or STEP.content[i])")
        ]
    if ref.step not in index:
        return [Problem(path=f"{path}.$ref", message=f"unknown step {ref.step!r}")]
    if ref.step == step_id and not allow_self:
        return [Problem(path=f"{path}.$ref", message="a step cannot use its own result")]
    return []


def dependencies(step: Step) -> set[str]:
    """The steps this one waits for: its `after` and every step its arguments reference."""
    needed = set(step.after)
    for _, text in refs_in(step.arguments):
        ref = Ref.parse(text)
        if ref is not None:
            needed.add(ref.step)
    return needed


def find_cycle(plan: Plan) -> list[str]:
    """One cycle as a list of step ids (first repeated at the end), or [] when the graph is acyclic."""
    graph = {step.id: sorted(dependencies(step)) for step in plan.steps}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def _path(loc: tuple[Any, ...]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
