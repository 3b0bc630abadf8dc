"""Check what a tool returned before the caller sees it: a size cap for now."""

from __future__ import annotations

from typing import ClassVar

from gateway.canonical import canonical_json
from gateway.config import LimitsConfig
from gateway.outcomes import Outcome, OutcomeCode
from gateway.pipeline.context import CallContext, Continue, Finding, Stop
from gateway.sources.base import ToolResult


class OutputGuardrails:
    name: ClassVar[str] = "output_guardrails"
    executes: ClassVar[bool] = False

    def __init__(self, limits: LimitsConfig) -> None:
        self._max_bytes = limits.max_result_bytes

    async def __call__(self, call: CallContext) -> Continue | Stop:
        if call.result is None:
            return Continue(call)
        size = result_size(call.result)
        if size <= self._max_bytes:
            return Continue(call)
        message = f"the result is {size} bytes; the limit is {self._max_bytes}, so it was withheld"
        finding = Finding(rule="limits.max_result_bytes", message=message, stage=self.name)
        return Stop(
            call.evolve(findings=(*call.findings, finding)),
            Outcome.refuse(OutcomeCode.OUTPUT_TOO_LARGE, message, stage=self.name),
        )


def result_size(result: ToolResult) -> int:
    return len(canonical_json({"content": result.content, "structured": result.structured}).encode())
