"""The plan document: a versioned JSON object whose steps are tool calls, ordered by references and `after`.

A reference is an argument value of the form `{"$ref": "find.result.customers[0].id"}`: it
replaces the whole value with a piece of an earlier step's result. It is never spliced into a
string, so a tool's output can become data for a later step but never rewrite its instructions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.canonical import digest

PLAN_TOOLS = frozenset(
    {"gateway.plan_validate", "gateway.plan_preview", "gateway.plan_run", "gateway.plan_status", "gateway.plan_draft"}
)
"""The planner's own tools: a plan may not contain them (no plans inside plans)."""
MAX_STEPS = 50
STEP_ID = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
_REF = re.compile(
    r"^(?P<step>[A-Za-z][A-Za-z0-9_-]{0,63})\.(?P<root>result|content)(?P<path>(?:\.[A-Za-z0-9_-]+|\[\d+\])*)$"
)
_PART = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Model):
    max_parallel: int = Field(default=4, ge=1, le=16)
    """Steps running at once."""
    timeout_seconds: float = Field(default=300, gt=0, le=3600)
    """The whole plan's deadline; unfinished steps are cancelled at it."""
    max_steps: int = Field(default=MAX_STEPS, ge=1, le=MAX_STEPS)


class Compensation(_Model):
    """The call that undoes a completed step (its arguments may reference that step's result)."""

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Step(_Model):
    id: str = Field(pattern=STEP_ID)
    tool: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)
    after: tuple[str, ...] = ()
    """Steps that must finish first, without passing data."""
    timeout_seconds: float | None = Field(default=None, gt=0, le=3600)
    retries: int = Field(default=0, ge=0, le=5)
    """Extra attempts after a failure; only for tools annotated idempotent."""
    on_error: Literal["abort", "continue", "compensate"] = "abort"
    """abort: stop starting steps; continue: only the steps that need this one are skipped;
    compensate: stop, then undo completed steps (their `compensate` calls) in reverse order."""
    compensate: Compensation | None = None


class Plan(_Model):
    """A multi-step request, checked and previewed as a whole before any step runs."""

    version: Literal[1] = 1
    goal: str = Field(default="", max_length=2000)
    limits: Limits = Limits()
    steps: tuple[Step, ...] = Field(min_length=1)

    @property
    def hash(self) -> str:
        return digest(self.model_dump(mode="json"))

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)


class Ref(_Model):
    """A parsed reference: which step, `result` or `content`, and the path into it."""

    step: str
    root: Literal["result", "content"]
    path: tuple[str | int, ...]

    @classmethod
    def parse(cls, text: str) -> Ref | None:
        match = _REF.match(text)
        if match is None:
            return None
        path = tuple(name if name else int(index) for name, index in _PART.findall(match.group("path")))
        return cls(step=match.group("step"), root=match.group("root"), path=path)  # type: ignore[arg-type]

    def __str__(self) -> str:
        rest = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.path)
        return f"{self.step}.{self.root}{rest}"


def is_ref(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"$ref"} and isinstance(value["$ref"], str)


def refs_in(value: Any, path: str = "$") -> Iterator[tuple[str, Any]]:
    """(JSON path, the `$ref` text) for every reference in an argument value."""
    if is_ref(value):
        yield path, value["$ref"]
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from refs_in(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from refs_in(item, f"{path}[{index}]")


def without_refs(value: Any) -> Any:
    """The literal part of an argument value (references dropped), for preview and guardrails."""
    if is_ref(value):
        return None
    if isinstance(value, dict):
        return {k: without_refs(v) for k, v in value.items() if not is_ref(v)}
    if isinstance(value, list):
        return [without_refs(v) for v in value if not is_ref(v)]
    return value


class UnresolvedRef(LookupError):
    """A reference whose step did not succeed, or whose path is not in the result."""


def resolve(value: Any, outputs: dict[str, dict[str, Any]]) -> Any:
    """The value with every reference replaced by the piece of the step output it names."""
    if is_ref(value):
        ref = Ref.parse(value["$ref"])
        if ref is None or ref.step not in outputs:
            raise UnresolvedRef(f"{value['$ref']}: step {ref.step if ref else '?'} has no result")
        current: Any = outputs[ref.step][ref.root]
        for part in ref.path:
            try:
                current = current[part]
            except (KeyError, IndexError, TypeError) as exc:
                raise UnresolvedRef(f"{ref}: the result has no {part!r} there") from exc
        return current
    if isinstance(value, dict):
        return {k: resolve(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, outputs) for v in value]
    return value
