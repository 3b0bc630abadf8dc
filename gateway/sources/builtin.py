"""The gateway's own tools (`gateway.*`), served through the same pipeline as every other tool.

`gateway.policy_check` explains a decision (the policy check of the CLI) to callers
that policy lets call it: administrators in the demo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from anyio.abc import TaskGroup

from gateway.sources.base import SourceHealth, ToolContext, ToolDefinition, ToolResult

if TYPE_CHECKING:
    from gateway.gateway import Gateway

POLICY_CHECK = "gateway.policy_check"


class BuiltinSource:
    kind = "builtin"
    name = "builtin"

    def __init__(self, gateway: Gateway) -> None:
        from gateway.gateway import CheckReport

        self._gateway = gateway
        output = CheckReport.model_json_schema()
        self._definition = ToolDefinition(
            name=POLICY_CHECK,
            title="Explain a policy decision",
            description=(
                "Show what policy decides for SUBJECT calling TOOL with ARGS, the rules that matched and"
                " their condition values, without calling anything."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "subject": {"type": "string", "minLength": 1},
                    "tool": {"type": "string", "minLength": 1},
                    "args": {"type": "object"},
                },
                "required": ["subject", "tool"],
                "additionalProperties": False,
            },
            output_schema=output,
            annotations={
                "readOnlyHint": True,
                "destructiveHint": False,
                "idempotentHint": True,
                "openWorldHint": False,
            },
            source=self.name,
        )

    def list_tools(self) -> list[ToolDefinition]:
        return [self._definition]

    async def call(self, tool: ToolDefinition, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        report = await self._gateway.check(arguments["subject"], arguments["tool"], arguments.get("args", {}))
        structured = report.model_dump(mode="json")
        text = f"{report.decision.value}: {report.rule or 'no rule matched (deny by default)'}"
        return ToolResult(content=[{"type": "text", "text": text}], structured=structured)

    async def start(self, tasks: TaskGroup) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Nothing to release."""

    def health(self) -> SourceHealth:
        return SourceHealth(source=self.name, kind=self.kind, status="ok", tools=1)
