"""The tool author's API: the `@tool` decorator and the `ToolContext` a tool may ask for.

`from gateway import tool, ToolContext` loads this module and nothing heavier: the
standard library only (the MCP types the `Relay` protocol names are read by type
checkers, never imported at run time), so a tool module imports in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mcp import types

TOOL_MARK = "__portcullis_tool__"
"""The attribute `@tool` sets on a function: the Python source lists the functions that carry it."""


@dataclass(frozen=True)
class ToolSpec:
    """What `@tool` says about a function beyond its signature and docstring."""

    name: str | None
    title: str | None
    description: str | None
    read_only: bool
    destructive: bool
    idempotent: bool
    open_world: bool
    timeout_seconds: float | None


def tool(
    name: str | None = None,
    *,
    title: str | None = None,
    description: str | None = None,
    read_only: bool = False,
    destructive: bool = True,
    idempotent: bool = False,
    open_world: bool = True,
    timeout_seconds: float | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a function in `tools/` as a tool. Annotation defaults are the MCP spec's cautious ones."""
    spec = ToolSpec(name, title, description, read_only, destructive, idempotent, open_world, timeout_seconds)

    def mark(function: Callable[..., Any]) -> Callable[..., Any]:
        setattr(function, TOOL_MARK, spec)
        return function

    return mark


class ProgressReporter(Protocol):
    """Tell the caller how far a call has come (`progress` of `total`, with a message)."""

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None: ...


class Relay(Protocol):
    """The calling client's back channel, for tools and upstream servers that ask the user or the model."""

    async def elicit(self, params: types.ElicitRequestParams) -> types.ElicitResult | types.ErrorData: ...

    async def sample(
        self, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData: ...


@dataclass(frozen=True)
class ToolContext:
    """Handed to a Python tool that declares a parameter of this type (not part of its schema)."""

    subject: str
    """Who the call is for (authenticated by the transport)."""
    roles: tuple[str, ...]
    """The caller's roles under the policy in force for this call."""
    settings: dict[str, Any]
    """The tool folder's `settings` from the deployment's config."""
    root: Path
    """The deployment folder; tools resolve their relative paths against it."""
    call_id: str = ""
    """The call's id, as its audit records carry it."""
    progress: ProgressReporter | None = None
    """Report progress to the caller (None when the caller asked for none)."""
    relay: Relay | None = None
    """Ask the calling client (elicitation, sampling), when its connection allows it."""

    def path(self, relative: str | Path) -> Path:
        path = Path(relative)
        return path if path.is_absolute() else self.root / path
