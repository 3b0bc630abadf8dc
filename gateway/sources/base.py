"""The one interface every tool source implements, and the definitions it lists.

The execution stage calls `ToolSource.call` without knowing whether the tool is
Python code, an HTTP endpoint or an upstream MCP server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, computed_field

from gateway.canonical import digest


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


class ToolResult(BaseModel):
    """What a source returns: MCP content blocks (wire form) and structured content."""

    model_config = ConfigDict(frozen=True)

    content: list[dict[str, Any]] = []
    structured: dict[str, Any] | None = None


@dataclass(frozen=True)
class ToolContext:
    """Handed to a Python tool that declares a parameter of this type (not part of its schema)."""

    subject: str
    roles: tuple[str, ...]
    settings: dict[str, Any]
    root: Path
    """The deployment folder; tools resolve their relative paths against it."""
    call_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def path(self, relative: str | Path) -> Path:
        path = Path(relative)
        return path if path.is_absolute() else self.root / path


class ToolSource(Protocol):
    name: str

    def list_tools(self) -> list[ToolDefinition]: ...

    async def call(self, tool: ToolDefinition, arguments: dict[str, Any], context: ToolContext) -> ToolResult: ...
