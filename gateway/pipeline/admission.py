"""Refuse oversized or too deeply nested arguments before any other work."""

from __future__ import annotations

from typing import Any, ClassVar

from gateway.calls import CallContext, Continue, Finding, Stop
from gateway.canonical import canonical_json, sha256_hex
from gateway.config import LimitsConfig
from gateway.outcomes import Outcome, OutcomeCode


class Admission:
    name: ClassVar[str] = "admission"
    executes: ClassVar[bool] = False

    def __init__(self, limits: LimitsConfig) -> None:
        self._max_bytes = limits.max_argument_bytes
        self._max_depth = limits.max_argument_depth

    async def __call__(self, call: CallContext) -> Continue | Stop:
        arguments = call.arguments
        if not isinstance(arguments, dict):
            return self._stop(call, OutcomeCode.INVALID_ARGUMENTS, "arguments must be a JSON object", "not_object")
        depth = nesting_depth(arguments, self._max_depth)
        if depth > self._max_depth:
            return self._stop(
                call,
                OutcomeCode.ARGUMENTS_TOO_LARGE,
                f"arguments are nested more than {self._max_depth} levels deep",
                "max_depth",
            )
        text = canonical_json(arguments)
        size = len(text.encode())
        if size > self._max_bytes:
            return self._stop(
                call.evolve(arguments_bytes=size),
                OutcomeCode.ARGUMENTS_TOO_LARGE,
                f"arguments are {size} bytes; the limit is {self._max_bytes}",
                "max_bytes",
            )
        return Continue(call.evolve(arguments_bytes=size, arguments_digest=sha256_hex(text)))

    def _stop(self, call: CallContext, code: OutcomeCode, message: str, rule: str) -> Stop:
        finding = Finding(rule=f"limits.{rule}", message=message, stage=self.name)
        return Stop(
            call.evolve(findings=(*call.findings, finding)),
            Outcome.refuse(code, message, stage=self.name),
        )


def nesting_depth(value: Any, stop_after: int) -> int:
    """Depth of nested objects and arrays, iteratively (no recursion limit to trip); stops early past the limit."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        deepest = max(deepest, depth)
        if deepest > stop_after:
            return deepest
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)
    return deepest
