"""The tool catalog: every source's tools under one name space, collisions refused."""

from __future__ import annotations

from collections.abc import Iterable

from gateway.config import GatewayConfig
from gateway.outcomes import ConfigError
from gateway.sources.base import ToolDefinition, ToolSource
from gateway.sources.python import PythonToolSource


class Catalog:
    def __init__(self, sources: Iterable[ToolSource]) -> None:
        self.sources: tuple[ToolSource, ...] = tuple(sources)
        self._tools: dict[str, tuple[ToolDefinition, ToolSource]] = {}
        problems = []
        for source in self.sources:
            for definition in source.list_tools():
                if definition.name in self._tools:
                    other = self._tools[definition.name][1].name
                    problems.append(f"tool {definition.name} is defined by both {other} and {source.name}")
                    continue
                self._tools[definition.name] = (definition, source)
        if problems:
            raise ConfigError(problems)

    @classmethod
    def from_config(cls, config: GatewayConfig) -> Catalog:
        return cls(
            PythonToolSource(config.resolve(entry.path), dict(entry.settings), config.root)
            for entry in config.tools.python
        )

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def get(self, name: str) -> tuple[ToolDefinition, ToolSource] | None:
        return self._tools.get(name)

    def definitions(self) -> list[ToolDefinition]:
        return [definition for definition, _ in self._tools.values()]
