"""Portcullis: a policy-governed tool gateway exposed as an MCP server.

What tool authors import: the `tool` decorator and the `ToolContext` a tool may ask for
(`from gateway import tool, ToolContext`), from a module that loads the standard library
only. The gateway itself (`Gateway`, `CheckReport`) and the outcome types stay importable
from here for the code that embeds or tests it, loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.tool_api import ToolContext, tool

if TYPE_CHECKING:
    from gateway.calls import CheckReport as CheckReport
    from gateway.gateway import Gateway as Gateway
    from gateway.outcomes import Decision as Decision
    from gateway.outcomes import Outcome as Outcome
    from gateway.outcomes import OutcomeCode as OutcomeCode

__all__ = ["ToolContext", "tool"]

_LAZY = {
    "CheckReport": "gateway.calls",
    "Decision": "gateway.outcomes",
    "Gateway": "gateway.gateway",
    "Outcome": "gateway.outcomes",
    "OutcomeCode": "gateway.outcomes",
}
"""Names importable from here but not part of the tool author's API, and the module that defines each."""


def __getattr__(name: str) -> Any:
    """Load an embedding name (`from gateway import Gateway`) on first use, not with every tool module."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
