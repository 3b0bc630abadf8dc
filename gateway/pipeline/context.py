"""What travels through the pipeline: the caller, the call, and what each stage learned."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from gateway.audit.store import Statement
from gateway.outcomes import Outcome
from gateway.policy import PolicyDecision
from gateway.snapshot import Snapshot
from gateway.sources.base import ProgressReporter, Relay, ToolDefinition, ToolResult


class Caller(BaseModel):
    """Who is calling and how. The subject comes only from the transport's authentication."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: str | None
    tenant: str | None = None
    granted_roles: tuple[str, ...] = ()
    """Roles the credentials grant (a JWT's roles claim), beside those the policy gives the subject."""
    auth: str
    """`stdio` (the --as subject), `api_key`, `cli`."""
    transport: str
    client_name: str | None = None
    client_version: str | None = None
    protocol_version: str | None = None
    session: str | None = None
    """The client connection (MCP session); flow rules follow what one session has read."""

    def audit_fields(self) -> dict[str, Any]:
        """Who called and how, as every audit record carries it."""
        return self.model_dump(
            include={
                "subject",
                "tenant",
                "auth",
                "transport",
                "client_name",
                "client_version",
                "protocol_version",
                "session",
            }
        )


class Finding(BaseModel):
    """Something a guardrail noticed, recorded in the audit log with its rule id."""

    model_config = ConfigDict(frozen=True)

    rule: str
    message: str
    stage: str
    path: str | None = None
    action: str | None = None
    """What the finding did: block, redact, require_approval, annotate, flag (None: a refusal of its stage)."""
    links: tuple[str, ...] = ()
    """Call ids of earlier audit records this finding rests on (a flow rule's reads)."""


@dataclass(frozen=True)
class PlanLink:
    """The plan run a call is a step of: linked from its audit record, and what the plan's approval covers."""

    run_id: str
    step: str
    approval_id: str | None = None
    covers: tuple[Any, ...] = ()
    """`Cover`s of the approved plan: a step needing exactly this approval runs under the plan's."""


@dataclass(frozen=True)
class CallContext:
    call_id: str
    caller: Caller
    tool_name: str
    arguments: Any
    snapshot: Snapshot
    execute: bool = True
    """False for a dry run (`policy check`): nothing is recorded, queued or executed."""
    roles: tuple[str, ...] = ()
    tool: ToolDefinition | None = None
    decision: PolicyDecision | None = None
    findings: tuple[Finding, ...] = ()
    arguments_bytes: int | None = None
    arguments_digest: str | None = None
    result: ToolResult | None = None
    approval_id: str | None = None
    statements: tuple[Statement, ...] = field(default=())
    """Writes that commit atomically with this call's outcome record."""
    progress: ProgressReporter | None = None
    """Progress notifications back to the caller, when it asked for them."""
    relay: Relay | None = None
    """The caller's back channel for upstream elicitation and sampling, when its connection has one."""
    approved: Any = None
    """The approved `ApprovalRequest` this call executes (set only by the approval queue's executor)."""
    consent: bool | None = None
    """The user's answer to a consent question asked before this call (2026-07-28 clients answer on retry)."""
    plan: PlanLink | None = None
    deferred: frozenset[str] = frozenset()
    """Arguments not known yet (a plan preview: filled from earlier steps at run time); not checked."""
    timeout_seconds: float | None = None
    """A shorter timeout for this call than the tool's own (a plan step's)."""

    def evolve(self, **changes: Any) -> CallContext:
        return replace(self, **changes)


@dataclass(frozen=True)
class Continue:
    call: CallContext


@dataclass(frozen=True)
class Stop:
    call: CallContext
    outcome: Outcome


class Stage(Protocol):
    name: ClassVar[str]
    executes: ClassVar[bool]
    """True for the stage that runs the tool: the intent is recorded just before it."""

    async def __call__(self, call: CallContext) -> Continue | Stop: ...
