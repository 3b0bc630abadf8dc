"""Outcomes (governed refusals and results, as values) and faults (exceptions).

Governed refusals are values: a denied call is a normal result of the pipeline,
not an error in it. Exceptions are reserved for faults::

    PortcullisError
     +-- ConfigError        a deployment file is invalid (start-up stops)
     +-- PolicyError        a policy file is invalid or a decision cannot be made
     +-- AuditWriteError    the audit record could not be committed (fail closed)
     +-- ToolLoadError      a tool module cannot be imported or described
     +-- UpstreamError      an upstream MCP server or HTTP API failed

Every fault carries the `OutcomeCode` a caller sees when it surfaces in a call.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field


class OutcomeCode(StrEnum):
    """Machine-readable result codes, stable across releases (clients match on them)."""

    OK = "ok"
    """The tool ran and its result passed the output guardrails."""
    DENIED = "denied"
    """Policy or a guardrail refused a tool the caller can otherwise see."""
    UNKNOWN_TOOL = "unknown_tool"
    """No such tool, or a tool the caller may not see (the two are indistinguishable)."""
    UNKNOWN_RESOURCE = "unknown_resource"
    """No such resource, or one the caller may not read."""
    UNKNOWN_PROMPT = "unknown_prompt"
    """No such prompt, or one the caller may not get."""
    GUARDRAIL_BLOCKED = "guardrail_blocked"
    """A guardrail found something it blocks in the arguments or the result (`findings` says what, never the value)."""
    RATE_LIMITED = "rate_limited"
    """The caller's rate limit for this tool is used up; `retry_after` says how many seconds to wait."""
    INVALID_ARGUMENTS = "invalid_arguments"
    """The arguments do not match the tool's input schema."""
    ARGUMENTS_TOO_LARGE = "arguments_too_large"
    """The arguments exceed the configured size or nesting depth."""
    APPROVAL_REQUIRED = "approval_required"
    """Policy requires a person to approve the call; a pending request was recorded (`approval_id`)."""
    CONSENT_REQUIRED = "consent_required"
    """Policy requires the user to confirm the call, and their client cannot be asked (no elicitation)."""
    APPROVAL_DENIED = "approval_denied"
    """A person denied the call's approval request (or it expired, or was cancelled)."""
    APPROVAL_REFUSED = "approval_refused"
    """A decision on an approval request was not accepted (self-approval, no approver role, not pending)."""
    TOOL_FAILED = "tool_failed"
    """The tool raised an error or reported a failure (an HTTP error status, an upstream `isError`)."""
    TOOL_DEFINITION_CHANGED = "tool_definition_changed"
    """The tool's live definition differs from its pin (or it was never pinned): it is quarantined."""
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    """The tool's upstream server cannot be reached, crashed, or answered with something that is not MCP."""
    TIMEOUT = "timeout"
    """The tool did not finish within its timeout."""
    OUTPUT_TOO_LARGE = "output_too_large"
    """The tool's result exceeds the configured size cap and was withheld."""
    AUDIT_UNAVAILABLE = "audit_unavailable"
    """The audit record could not be written, so the call was not run (fail closed)."""
    UNAUTHENTICATED = "unauthenticated"
    """The caller has no identity the gateway accepts."""
    INTERNAL_ERROR = "internal_error"
    """A stage failed unexpectedly; the call was refused and the fault recorded."""


class Decision(StrEnum):
    """The authorization verdict recorded with every call."""

    ALLOW = "allow"
    DENY = "deny"
    APPROVAL_REQUIRED = "approval_required"


class Outcome(BaseModel):
    """What the pipeline returns for one call, whatever happened."""

    model_config = ConfigDict(frozen=True)

    code: OutcomeCode
    message: str
    stage: str | None = None
    audit_id: int | None = None
    content: list[dict[str, Any]] = Field(default_factory=list)
    """MCP content blocks of a successful result (wire form)."""
    structured: dict[str, Any] | None = None
    """`structuredContent` of a successful result."""
    data: dict[str, Any] = Field(default_factory=dict)
    """Machine-readable details (approval id, findings, schema errors)."""
    meta: dict[str, Any] = Field(default_factory=dict)
    """The tool's own non-reserved `_meta`, passed on to the caller."""

    @property
    def ok(self) -> bool:
        return self.code is OutcomeCode.OK

    @classmethod
    def refuse(cls, code: OutcomeCode, message: str, *, stage: str, **data: Any) -> Outcome:
        return cls(code=code, message=message, stage=stage, data=data)


class PortcullisError(Exception):
    """Base of every fault the gateway raises."""

    code: ClassVar[OutcomeCode] = OutcomeCode.INTERNAL_ERROR


class ConfigError(PortcullisError):
    """A deployment file is invalid; `problems` holds one message per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class PolicyError(ConfigError):
    """A policy file is invalid."""

    code = OutcomeCode.DENIED


class ToolLoadError(ConfigError):
    """A tool module cannot be imported or described."""


class AuditWriteError(PortcullisError):
    """The audit store could not commit a record."""

    code = OutcomeCode.AUDIT_UNAVAILABLE


class UpstreamError(PortcullisError):
    """An upstream cannot be reached, crashed, or answered with something that is not MCP."""

    code = OutcomeCode.UPSTREAM_UNAVAILABLE
