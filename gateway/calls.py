"""What a call carries through the gateway: the caller, the call, what each stage learned, and the results.

This module is data and the protocols over it; it imports nothing of the pipeline, so
the stages, the services (approvals, planner, federation) and the MCP layer can all
name a call without depending on each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from gateway.approvals.requests import ApprovalRequest
from gateway.store.changes import Change, Statement
from gateway.ids import new_id
from gateway.outcomes import Decision, Outcome, OutcomeCode
from gateway.policy import PolicyDecision
from gateway.policy.engine import RuleMatch
from gateway.snapshot import Snapshot
from gateway.tool_api import ProgressReporter, Relay, ToolContext
from gateway.tool_types import ToolDefinition, ToolResult


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
    """`Cover`s of the approved plan (planner/preview.py): a step needing exactly this approval runs under it."""


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
class Governed:
    """A non-tool request for the pipeline: its policy object (the call's `tool_name`), arguments and `Request`."""

    target: str
    arguments: dict[str, Any]
    request: Request


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
    statements: tuple[Change | Statement, ...] = field(default=())
    """Writes that commit atomically with this call's outcome record."""
    progress: ProgressReporter | None = None
    """Progress notifications back to the caller, when it asked for them."""
    relay: Relay | None = None
    """The caller's back channel for upstream elicitation and sampling, when its connection has one."""
    approved: ApprovalRequest | None = None
    """The approved request this call executes (set only when the approval queue runs it)."""
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

    @classmethod
    def new(
        cls,
        snapshot: Snapshot,
        caller: Caller,
        name: str,
        arguments: Any,
        *,
        execute: bool = True,
        progress: ProgressReporter | None = None,
    ) -> CallContext:
        """A call as it enters the pipeline, with a fresh id, decided by `snapshot` throughout."""
        return cls(
            call_id=new_id(),
            caller=caller,
            tool_name=name,
            arguments=arguments,
            snapshot=snapshot,
            execute=execute,
            progress=progress,
        )

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


class DryRun(Protocol):
    """The stages run without executing or recording anything (a preview, `policy check`)."""

    async def evaluate(self, call: CallContext) -> tuple[CallContext, Outcome]: ...


@dataclass(frozen=True)
class ActingFor:
    """Who a gateway tool (`gateway.*`) acts for: the caller, and the approved request it runs under."""

    caller: Caller
    approved: ApprovalRequest | None = None


@runtime_checkable
class ActsForCaller(Protocol):
    """A source of the gateway's own tools: they act for the caller, so they are given who that is.

    Tool authors' sources get a `ToolContext` only; the built-in source also needs the
    caller's tenant, granted roles and the approval a call runs under (`ActingFor`).
    """

    async def call_for(
        self, acting: ActingFor, tool: ToolDefinition, arguments: dict[str, Any], context: ToolContext
    ) -> ToolResult: ...


class CheckReport(BaseModel):
    """What `policy check` reports: the decision and why, without calling anything."""

    model_config = ConfigDict(frozen=True)

    subject: str
    tool: str
    decision: Decision
    rule: str | None
    rule_source: str | None
    approver: str | None
    quorum: int
    roles: tuple[str, ...]
    matches: tuple[RuleMatch, ...]
    """Every rule whose subject, object and action matched, with its condition's value."""
    findings: tuple[Finding, ...]
    outcome: str
    message: str
    policy_version: str

    @classmethod
    def of(cls, call: CallContext, outcome: Outcome) -> CheckReport:
        """The report of a dry run that ended with `outcome` (no decision: deny by default)."""
        decision = call.decision
        return cls(
            subject=call.caller.subject or "",
            tool=call.tool_name,
            decision=decision.decision if decision else Decision.DENY,
            rule=decision.rule if decision else None,
            rule_source=decision.rule_source if decision else None,
            approver=decision.approver if decision else None,
            quorum=decision.quorum if decision else 1,
            roles=call.roles,
            matches=decision.matches if decision else (),
            findings=call.findings,
            outcome=outcome.code.value,
            message=outcome.message,
            policy_version=call.snapshot.policy.version,
        )
