"""The small protocols services depend on, instead of the object that wires everything.

The approval service, the planner, the built-in `gateway.*` tools and the MCP layer each
receive the ports they need: the door (run a call through the pipeline), the current
snapshot, an audit sink, and the reads of the store. The `Gateway` implements them; a
test or another deployment shape may implement them otherwise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from types import TracebackType

    from mcp import types

    from gateway.approvals.requests import ApprovalRequest, ApprovalStatus
    from gateway.audit import AuditQuery, AuditRecord
    from gateway.calls import Caller, CheckReport, Governed, PlanLink
    from gateway.outcomes import Outcome
    from gateway.store.changes import Change, Statement
    from gateway.planner.plan import Plan
    from gateway.planner.preview import PlanPreview
    from gateway.planner.runs import RunRecord
    from gateway.snapshot import Snapshot
    from gateway.tool_api import ProgressReporter, Relay
    from gateway.tool_types import ToolDefinition

Spawn = Callable[..., Any]
"""Start `function(*args)` in the background (a task group's `start_soon`), never on a call's path."""
Listener = Callable[[], Awaitable[None]]
"""Told after the tool catalog changed."""


class CurrentSnapshot(Protocol):
    """The snapshot in force now; a caller takes it once and keeps it for the whole call."""

    @property
    def snapshot(self) -> Snapshot: ...


class Door(Protocol):
    """The one way into the pipeline for services acting on a caller's behalf (principle 1)."""

    async def call_tool(
        self,
        caller: Caller,
        name: str,
        arguments: Any,
        progress: ProgressReporter | None = None,
        relay: Relay | None = None,
        consent: bool | None = None,
    ) -> Outcome:
        """One tool call through the audited pipeline."""
        ...

    async def run_approved(self, request: ApprovalRequest) -> Outcome:
        """An approved request, as its requester, through the whole pipeline (policy and guardrails again)."""
        ...

    async def run_step(
        self, caller: Caller, call_id: str, tool: str, arguments: Any, link: PlanLink, timeout: float | None
    ) -> Outcome:
        """One step of a plan run, linked to the run in its audit record."""
        ...

    async def request(self, caller: Caller, governed: Governed) -> tuple[Outcome, Any]:
        """An upstream resource read, prompt get or completion; the answer only when the outcome is ok."""
        ...

    async def check(self, subject: str, name: str, arguments: Any, granted: tuple[str, ...] = ()) -> CheckReport:
        """The pipeline run dry: what would be decided, with nothing executed, recorded or queued."""
        ...

    async def preview_plan(self, plan: Plan, caller: Caller) -> PlanPreview:
        """What a plan would do as `caller`: every step through the dry-run pipeline."""
        ...


class AuditSink(Protocol):
    """Where audit records go, with the state changes that commit with them; `salt` masks values."""

    @property
    def salt(self) -> str: ...

    async def append(
        self, record: AuditRecord, changes: Sequence[Change | Statement] = (), *, durable: bool = True
    ) -> int:
        """Commit `record` (and `changes`, atomically); its sequence number. Raises on failure."""
        ...


class ApprovalReads(Protocol):
    """Approval requests as the store holds them now."""

    async def approval(self, request_id: str) -> ApprovalRequest | None: ...

    async def approvals(self, status: ApprovalStatus | None) -> list[ApprovalRequest]: ...


class PlanRunReads(Protocol):
    """Plan runs as the store holds them now."""

    async def plan_run(self, run_id: str) -> RunRecord | None: ...

    async def running_plan_runs(self) -> list[str]: ...


class AuditReads(Protocol):
    """Audit records, for the auditors' tool."""

    async def audit_records(self, query: AuditQuery) -> list[dict[str, Any]]: ...


class Resources(Protocol):
    """Upstream resources, prompts and completions as a caller may see and ask for them."""

    def visible_resources(self, caller: Caller) -> list[types.Resource]: ...

    def visible_resource_templates(self, caller: Caller) -> list[types.ResourceTemplate]: ...

    def visible_prompts(self, caller: Caller) -> list[types.Prompt]: ...

    async def read_resource(self, caller: Caller, uri: str) -> tuple[Outcome, types.ReadResourceResult | None]: ...

    async def get_prompt(
        self, caller: Caller, name: str, arguments: dict[str, str] | None
    ) -> tuple[Outcome, types.GetPromptResult | None]: ...

    async def complete(
        self,
        caller: Caller,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: dict[str, str],
        context: dict[str, str] | None,
    ) -> tuple[Outcome, types.CompleteResult | None]: ...


class Front(CurrentSnapshot, Protocol):
    """What the MCP layer asks of the gateway: listings as a caller sees them, and calls through the door."""

    @property
    def resources(self) -> Resources: ...

    def visible_tools(self, subject: str | None, granted: tuple[str, ...] = ()) -> list[ToolDefinition]: ...

    def visible_tool(self, subject: str | None, name: str, granted: tuple[str, ...] = ()) -> ToolDefinition | None: ...

    def tool_input_schema(self, name: str) -> dict[str, Any] | None: ...

    def capability_needs(self) -> dict[str, frozenset[str]]:
        """Upstream tools listed only because the gateway declared elicitation or sampling, and which."""
        ...

    async def call_tool(
        self,
        caller: Caller,
        name: str,
        arguments: Any,
        progress: ProgressReporter | None = None,
        relay: Relay | None = None,
        consent: bool | None = None,
    ) -> Outcome: ...

    def on_tools_changed(self, listener: Listener) -> None: ...


class Served(Front, Protocol):
    """A gateway a transport serves: started and stopped around the server, told of refused credentials."""

    def record_auth_failure(self, method: str, reason: str) -> None: ...

    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
