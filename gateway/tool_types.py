"""What tool sources list and return, shared by every layer: definitions, results, health.

These types sit below the sources, the pipeline, the planner and the MCP layer, so
that naming a tool definition never ties a module to the code that produces one.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

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


class ToolListing(Protocol):
    """Anything that lists tool definitions, listed and quarantined alike (the catalog)."""

    def all_definitions(self) -> list[ToolDefinition]: ...


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
