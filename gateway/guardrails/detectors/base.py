"""What a detector is: a function of one string that returns where it found something.

Detectors never put the matched value in a message: messages reach the audit
log and the caller, and a blocked secret must not be stored anywhere in clear.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Direction = Literal["arguments", "outputs"]


@dataclass(frozen=True)
class Hit:
    rule: str
    """`detector.kind`, for example `secrets.aws_access_key`: the audit log's rule id."""
    message: str
    start: int = 0
    end: int | None = None
    """None: the whole value."""
    placeholder: str = "<REDACTED>"
    """What redaction puts in place of the match; it keeps the type (`<CARD>`)."""


@dataclass(frozen=True)
class Where:
    """Where a string was found, and the settings that apply to it."""

    direction: Direction
    path: str
    kind: str | None = None
    """The argument kind (`url`, `path`, `command`, `email`) when the tool's config or schema names one."""
    root: str | None = None
    """A path-kind argument's root folder."""
    settings: Any = None
    """The deployment's `GuardrailsConfig` (detector settings)."""
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Detector(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def kinds(self) -> frozenset[str] | None:
        """None: every string; otherwise only arguments of these kinds."""
        ...

    def scan(self, text: str, where: Where) -> Sequence[Hit] | Awaitable[Sequence[Hit]]: ...
