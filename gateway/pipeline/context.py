"""What travels through the pipeline: the caller, the call, and what each stage learned."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from gateway.audit.store import Statement
from gateway.outcomes import Outcome, OutcomeCode
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
    """`stdio:os_user|--as|env`, `api_key`, `jwt`; from the CLI `cli:<how>:<OS user>` (`cli:os_user:alice`)."""
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


Fetch = Callable[[Any], Awaitable[BaseModel]]
"""Ask the upstream, given the call's arguments as the input guardrails left them."""
_EVENTS = {"resource": "resource.read", "prompt": "prompt.get", "completion": "completion.complete"}


@dataclass(frozen=True)
class Request:
    """A call for an upstream's resource, prompt or completion rather than a tool: the same stages govern it.

    The call's `tool_name` is the policy object (`namespace.URI` for a resource or a
    template, `namespace.prompt` for a prompt): policy rules, guardrail rules and rate
    limits match it by glob, so `kb.*` covers the namespace's tools, resources and prompts.
    """

    kind: Literal["resource", "prompt", "completion"]
    action: Literal["read", "get"]
    """The policy action: `read` a resource (or complete a template's argument), `get` a prompt."""
    shown: str
    """What a refusal names: the URI or the prompt's name."""
    fetch: Fetch | None = None
    """None: no upstream serves it (refused like one the caller may not see)."""
    timeout_seconds: float | None = None

    @property
    def event(self) -> str:
        """The outcome record's event (the intent record's is `<kind>.intent`)."""
        return _EVENTS[self.kind]

    @property
    def unknown(self) -> OutcomeCode:
        """The refusal for what does not exist for the caller: a denied one looks the same."""
        return OutcomeCode.UNKNOWN_PROMPT if self.action == "get" else OutcomeCode.UNKNOWN_RESOURCE


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
    request: Request | None = None
    """Set for an upstream resource read, prompt get or completion; None for a tool call."""
    answer: BaseModel | None = None
    """What the upstream answered a `request` (after the output guardrails: as the caller gets it)."""

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
