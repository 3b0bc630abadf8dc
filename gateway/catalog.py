"""The tool catalog: every source's tools under one name space, with pins applied.

Collisions between sources are refused. Upstream tools (the ones a third party
can change) are checked against `tools.lock`: a tool whose definition changed,
or that was never pinned while `new_tools: quarantine`, is quarantined. It is
not listed, and a call to it is refused with `tool_definition_changed`.
An upstream tool whose definition the guardrails flag (hidden characters,
instructions to the model, references to other tools or sensitive files) is
quarantined the same way, with status `flagged`, whatever its pin says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict

from gateway.outcomes import ConfigError
from gateway.sources.base import ToolSource
from gateway.sources.pins import PinStatus, ToolLock
from gateway.tool_types import ToolDefinition

PINNED_KINDS = frozenset({"mcp"})


class Quarantine(BaseModel):
    model_config = ConfigDict(frozen=True)

    tool: str
    status: PinStatus | str
    """A pin status (`changed`, `new`), or `flagged` when the guardrails found something in the definition."""
    pinned_hash: str | None
    live_hash: str
    findings: tuple[dict[str, str], ...] = ()


DefinitionCheck = Callable[[ToolDefinition, list[str]], list[dict[str, str]]]
"""(definition, names of the other sources' tools) -> findings; an empty list passes."""


class Catalog:
    def __init__(
        self,
        sources: Iterable[ToolSource],
        lock: ToolLock | None = None,
        new_tools: str = "quarantine",
        check: DefinitionCheck | None = None,
    ) -> None:
        self.sources: tuple[ToolSource, ...] = tuple(sources)
        self.lock = lock or ToolLock()
        self._tools: dict[str, tuple[ToolDefinition, ToolSource]] = {}
        self.quarantined: dict[str, tuple[Quarantine, ToolDefinition, ToolSource]] = {}
        problems = []
        found: dict[str, tuple[ToolDefinition, ToolSource]] = {}
        for source in self.sources:
            for definition in self._definitions_of(source):
                if definition.name in found:
                    other = found[definition.name][1]
                    problems.append(f"tool {definition.name} is defined by both {other.name} and {source.name}")
                    continue
                found[definition.name] = (definition, source)
        if problems:
            raise ConfigError(problems)
        for name, (definition, source) in found.items():
            verdict = self._verdict(source, definition, new_tools)
            if verdict is None and check is not None and source.kind in PINNED_KINDS:
                others = [n for n, (_, s) in found.items() if s is not source]
                verdict = _flagged(definition, check(definition, others))
            if verdict is None:
                self._tools[name] = (definition, source)
            else:
                self.quarantined[name] = (verdict, definition, source)

    def _definitions_of(self, source: ToolSource) -> list[ToolDefinition]:
        definitions = source.list_tools()
        if definitions or source.kind not in PINNED_KINDS or source.health().status == "ok":
            return definitions
        # An upstream that is down still shows its pinned tools, so calls reach it (and restart it).
        prefix = f"{source.name.split(':', 1)[-1]}."
        return [
            ToolDefinition.model_validate(
                {**pin.definition, "source": source.name, "timeout_seconds": getattr(source, "timeout_seconds", None)}
            )
            for name, pin in self.lock.tools.items()
            if name.startswith(prefix)
        ]

    def _verdict(self, source: ToolSource, definition: ToolDefinition, new_tools: str) -> Quarantine | None:
        if source.kind not in PINNED_KINDS:
            return None
        status = self.lock.status(definition)
        if status is PinStatus.PINNED or (status is PinStatus.NEW and new_tools == "allow"):
            return None
        pin = self.lock.tools.get(definition.name)
        return Quarantine(
            tool=definition.name,
            status=status,
            pinned_hash=pin.hash if pin else None,
            live_hash=definition.definition_hash,
        )

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def get(self, name: str) -> tuple[ToolDefinition, ToolSource] | None:
        return self._tools.get(name)

    def definitions(self) -> list[ToolDefinition]:
        return [definition for definition, _ in self._tools.values()]

    def all_definitions(self) -> list[ToolDefinition]:
        """Listed and quarantined tools alike (what `tools pin` records)."""
        return [*self.definitions(), *(definition for _, definition, _ in self.quarantined.values())]


def _flagged(definition: ToolDefinition, findings: list[dict[str, Any]]) -> Quarantine | None:
    if not findings:
        return None
    return Quarantine(
        tool=definition.name,
        status="flagged",
        pinned_hash=None,
        live_hash=definition.definition_hash,
        findings=tuple(findings),
    )
