"""The one interface every tool source implements, and the definitions it lists.

The execution stage calls `ToolSource.call` without knowing whether the tool is
Python code, an HTTP endpoint or an upstream MCP server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import mcp.types as types
from anyio.abc import TaskGroup
from pydantic import BaseModel, ConfigDict, computed_field

from gateway.canonical import digest
from gateway.outcomes import OutcomeCode, PortcullisError


class ToolDefinition(BaseModel):
    """A tool as the gateway lists it; `definition_hash` pins exactly this definition."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    title: str | None = None
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    annotations: dict[str, Any] = {}
    source: str
    timeout_seconds: float | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def definition_hash(self) -> str:
        return digest(
            {
                "name": self.name,
                "description": self.description,
                "title": self.title,
                "input_schema": self.input_schema,
                "output_schema": self.output_schema,
                "annotations": self.annotations,
            }
        )


ToolTable = dict[str, tuple[str, dict[str, Any], list[str], dict[str, Any]]]
"""The gateway's own tools, compactly: name -> (description, properties, required, annotations)."""


def table_definitions(table: ToolTable, source: str, timeouts: dict[str, float] | None = None) -> list[ToolDefinition]:
    """ToolDefinitions for a table of the gateway's own tools (closed object schemas)."""
    return [
        ToolDefinition(
            name=name,
            description=description,
            input_schema={"type": "object", "properties": props, "required": required, "additionalProperties": False},
            annotations=annotations,
            source=source,
            timeout_seconds=(timeouts or {}).get(name),
        )
        for name, (description, props, required, annotations) in table.items()
    ]


class ToolResult(BaseModel):
    """What a source returns: MCP content blocks (wire form) and structured content."""

    model_config = ConfigDict(frozen=True)

    content: list[dict[str, Any]] = []
    structured: dict[str, Any] | None = None
    is_error: bool = False
    """The tool itself reported a failure (an upstream's `isError`, an HTTP error status)."""
    meta: dict[str, Any] = {}
    """The source's non-reserved `_meta`, passed on to the caller."""


class SourceHealth(BaseModel):
    model_config = ConfigDict(frozen=True)

    source: str
    kind: str
    status: Literal["ok", "down", "starting"]
    detail: str = ""
    tools: int = 0


class UpstreamError(PortcullisError):
    """An upstream cannot be reached, crashed, or answered with something that is not MCP."""

    code = OutcomeCode.UPSTREAM_UNAVAILABLE


@dataclass(frozen=True)
class ToolContext:
    """Handed to a Python tool that declares a parameter of this type (not part of its schema)."""

    subject: str
    roles: tuple[str, ...]
    settings: dict[str, Any]
    root: Path
    """The deployment folder; tools resolve their relative paths against it."""
    call_id: str = ""
    progress: ProgressReporter | None = None
    """Report progress to the caller (a no-op when the caller asked for none)."""
    relay: Relay | None = None
    """Ask the calling client (elicitation, sampling), when its connection allows it."""
    extra: dict[str, Any] = field(default_factory=dict)

    def path(self, relative: str | Path) -> Path:
        path = Path(relative)
        return path if path.is_absolute() else self.root / path


class ProgressReporter(Protocol):
    async def __call__(self, progress: float, total: float | None, message: str | None) -> None: ...


class Relay(Protocol):
    """The calling client's back channel, for upstream servers that ask the user or the model."""

    async def elicit(self, params: types.ElicitRequestParams) -> types.ElicitResult | types.ErrorData: ...

    async def sample(
        self, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData: ...


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
