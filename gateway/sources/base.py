"""The one interface every tool source implements.

The execution stage calls `ToolSource.call` without knowing whether the tool is
Python code, an HTTP endpoint or an upstream MCP server. The types a source lists
and returns live below every layer (`gateway.tool_types`, `gateway.tool_api`);
they are re-exported here for code that imported them from this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from gateway.outcomes import UpstreamError
from gateway.tool_api import ProgressReporter, Relay, ToolContext
from gateway.tool_types import SourceHealth, ToolDefinition, ToolResult, ToolTable, table_definitions

if TYPE_CHECKING:
    from anyio.abc import TaskGroup


class ToolSource(Protocol):
    """Lists tool definitions and executes calls; started once, closed once."""

    name: str
    kind: str

    def list_tools(self) -> list[ToolDefinition]: ...

    async def call(self, tool: ToolDefinition, arguments: dict[str, Any], context: ToolContext) -> ToolResult: ...

    async def start(self, tasks: TaskGroup) -> None:
        """Connect or prepare; `tasks` outlives the source, for background work it must own."""
        ...

    async def close(self) -> None: ...

    def health(self) -> SourceHealth: ...


__all__ = [
    "ProgressReporter",
    "Relay",
    "SourceHealth",
    "ToolContext",
    "ToolDefinition",
    "ToolResult",
    "ToolSource",
    "ToolTable",
    "UpstreamError",
    "table_definitions",
]
