"""Pinned tool definitions: `tools.lock`, and the verdict on each upstream tool.

An upstream can change a tool under an agent's feet (a "rug pull": a new
instruction in a description, a new parameter, a read-only tool turned
destructive). Every upstream tool's definition is pinned by hash in a lock file
the operator reviews in git; a tool whose live definition differs, or that was
never pinned, is quarantined until the operator pins it.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from gateway.outcomes import ConfigError
from gateway.tool_types import ToolDefinition

LOCK_VERSION = 1
PINNED_FIELDS = ("name", "title", "description", "input_schema", "output_schema", "annotations")


class PinStatus(StrEnum):
    PINNED = "pinned"
    CHANGED = "changed"
    NEW = "new"


class Pin(BaseModel):
    model_config = ConfigDict(frozen=True)

    hash: str
    definition: dict[str, Any]
    """The pinned definition itself, so `tools diff` can show what changed."""


class ToolLock(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: int = LOCK_VERSION
    tools: dict[str, Pin] = {}

    @classmethod
    def load(cls, path: Path) -> ToolLock:
        if not path.exists():
            return cls()
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigError([f"{path}: not a valid tools.lock: {exc}"]) from exc

    def save(self, path: Path) -> None:
        text = json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True, ensure_ascii=False)
        path.write_text(text + "\n", encoding="utf-8")

    def status(self, definition: ToolDefinition) -> PinStatus:
        pin = self.tools.get(definition.name)
        if pin is None:
            return PinStatus.NEW
        return PinStatus.PINNED if pin.hash == definition.definition_hash else PinStatus.CHANGED

    def pinned(self, definitions: Iterable[ToolDefinition], *, only: set[str] | None = None) -> ToolLock:
        """A lock with `definitions` pinned (all of them, or those named in `only`), others kept."""
        tools = dict(self.tools)
        for definition in definitions:
            if only is None or definition.name in only:
                tools[definition.name] = Pin(hash=definition.definition_hash, definition=pinned_view(definition))
        return ToolLock(tools=tools)


def pinned_view(definition: ToolDefinition) -> dict[str, Any]:
    return {field: getattr(definition, field) for field in PINNED_FIELDS}


def diff(pin: Pin | None, live: ToolDefinition | None) -> str:
    """A unified diff of the pinned and live definitions, field by field."""
    before = _lines(pin.definition if pin else None)
    after = _lines(pinned_view(live) if live else None)
    return "".join(difflib.unified_diff(before, after, fromfile="pinned", tofile="live"))


def changed_fields(pin: Pin, live: ToolDefinition) -> list[str]:
    view = pinned_view(live)
    return [field for field in PINNED_FIELDS if pin.definition.get(field) != view[field]]


def _lines(definition: dict[str, Any] | None) -> list[str]:
    if definition is None:
        return []
    return [line + "\n" for line in json.dumps(definition, indent=2, sort_keys=True, ensure_ascii=False).splitlines()]
