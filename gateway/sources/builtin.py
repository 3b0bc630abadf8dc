"""The gateway's own tools (`gateway.*`), served through the same pipeline as every other tool.

`gateway.policy_check` explains a decision (the policy check of the CLI). The
approval tools let a requester follow its request (`approval_status`,
`approval_wait`) or withdraw it (`approval_cancel`), and an approver decide from
their own agent (`approvals_pending`, `approve`, `deny`). Who may call each is
policy, like every tool; each also checks that the caller is the requester, or may
approve that request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.approvals.requests import ApprovalStatus, describe
from gateway.approvals.service import ApprovalError, ApprovalService, request_json
from gateway.audit import AuditQuery, parse_since
from gateway.calls import ActingFor, Caller, CheckReport
from gateway.planner.plan import PLAN_TOOLS
from gateway.planner.service import PlannerService
from gateway.planner.tools import PlannerTools
from gateway.planner.tools import definitions as planner_definitions
from gateway.ports import AuditReads, Door
from gateway.tool_api import ToolContext
from gateway.tool_types import SourceHealth, ToolDefinition, ToolResult, ToolTable, table_definitions

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

POLICY_CHECK = "gateway.policy_check"
_ID = {"type": "string", "minLength": 1}
_SAFE = {"readOnlyHint": True, "destructiveHint": False, "idempotentHint": True, "openWorldHint": False}
_DECIDE = {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": False, "openWorldHint": False}
APPROVAL_TOOLS: ToolTable = {
    "gateway.approval_status": (
        "The status of one of your approval requests.",
        {"approval_id": _ID},
        ["approval_id"],
        _SAFE,
    ),
    "gateway.approval_wait": (
        "Wait (up to timeout_s, at most 60) for one of your approval requests to be decided and run;"
        " returns the call's real result once it has run, or the denial.",
        {"approval_id": _ID, "timeout_s": {"type": "number", "minimum": 0, "maximum": 60}},
        ["approval_id"],
        _SAFE,
    ),
    "gateway.approval_cancel": (
        "Cancel one of your approval requests (or one you may decide) that has not started running; it will never run.",
        {"approval_id": _ID, "reason": {"type": "string", "maxLength": 2000}},
        ["approval_id"],
        _DECIDE,
    ),
    "gateway.approvals_pending": ("Approval requests waiting for your decision.", {}, [], _SAFE),
    "gateway.audit_query": (
        "Audit records, newest first: filter by subject, tool glob, decision, outcome, event, and a window"
        " (since: 15m, 1h, 7d or an ISO time).",
        {
            "subject": {"type": "string"},
            "tool": {"type": "string"},
            "decision": {"enum": ["allow", "deny", "approval_required"]},
            "outcome": {"type": "string"},
            "event": {"type": "string"},
            "since": {"type": "string"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 500},
        },
        [],
        _SAFE,
    ),
    "gateway.approve": (
        "Approve a pending request (never your own). With edited_arguments, approve a corrected call"
        " instead; it is checked against policy and guardrails again.",
        {"approval_id": _ID, "comment": {"type": "string", "maxLength": 2000}, "edited_arguments": {"type": "object"}},
        ["approval_id"],
        _DECIDE,
    ),
    "gateway.deny": (
        "Deny a pending request, with a reason.",
        {"approval_id": _ID, "reason": {"type": "string", "minLength": 1, "maxLength": 2000}},
        ["approval_id", "reason"],
        _DECIDE,
    ),
}


class BuiltinSource:
    """The `gateway.*` tools. They act for the caller (`ActingFor`), through the ports they are given."""

    kind = "builtin"
    name = "builtin"

    def __init__(self, door: Door, approvals: ApprovalService, planner: PlannerService, audit: AuditReads) -> None:
        self._door = door
        self._approvals = approvals
        self._audit = audit
        self._planner = PlannerTools(planner)
        self._definition = ToolDefinition(
            name=POLICY_CHECK,
            title="Explain a policy decision",
            description=(
                "Show what policy decides for SUBJECT calling TOOL with ARGS, the rules that matched and"
                " their condition values, without calling anything."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "subject": {"type": "string", "minLength": 1},
                    "tool": {"type": "string", "minLength": 1},
                    "args": {"type": "object"},
                },
                "required": ["subject", "tool"],
                "additionalProperties": False,
            },
            output_schema=CheckReport.model_json_schema(),
            annotations={
                "readOnlyHint": True,
                "destructiveHint": False,
                "idempotentHint": True,
                "openWorldHint": False,
            },
            source=self.name,
        )
        self._definitions = [
            self._definition,
            *table_definitions(APPROVAL_TOOLS, self.name),
            *planner_definitions(self.name),
        ]

    def list_tools(self) -> list[ToolDefinition]:
        return list(self._definitions)

    async def call(self, tool: ToolDefinition, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        """Without a caller these tools act for the context's subject alone (the pipeline always gives one)."""
        caller = Caller(subject=context.subject, granted_roles=context.roles, auth="builtin", transport="builtin")
        return await self.call_for(ActingFor(caller), tool, arguments, context)

    async def call_for(
        self, acting: ActingFor, tool: ToolDefinition, arguments: dict[str, Any], context: ToolContext
    ) -> ToolResult:
        if tool.name in PLAN_TOOLS:
            return await self._planner.call(acting, tool.name, arguments, context)
        if tool.name == POLICY_CHECK:
            report = await self._door.check(arguments["subject"], arguments["tool"], arguments.get("args", {}))
            structured = report.model_dump(mode="json")
            text = f"{report.decision.value}: {report.rule or 'no rule matched (deny by default)'}"
            return ToolResult(content=[{"type": "text", "text": text}], structured=structured)
        if tool.name == "gateway.audit_query":
            return await self._audit_query(arguments)
        return await self._approval_tool(tool.name, arguments, acting.caller, context)

    async def _audit_query(self, arguments: dict[str, Any]) -> ToolResult:
        """Auditors' view of the log (who may call it is policy: the demo's auditor)."""
        if arguments.get("since") is not None:
            try:
                parse_since(arguments["since"])
            except ValueError as exc:
                return _error(f"since: {exc}")
        query = AuditQuery(**{**arguments, "limit": arguments.get("limit", 50)}, newest_first=True)
        records = await self._audit.audit_records(query)
        return _result({"records": records}, f"{len(records)} record(s)")

    async def _approval_tool(
        self, name: str, arguments: dict[str, Any], caller: Caller, context: ToolContext
    ) -> ToolResult:
        service = self._approvals
        if name == "gateway.approvals_pending":
            pending = await service.by_status(ApprovalStatus.PENDING)
            mine = [request_json(r) for r in pending if r.subject != caller.subject and service.may_approve(caller, r)]
            return _result({"pending": mine}, f"{len(mine)} request(s) await your decision")
        request = await service.get(arguments["approval_id"])
        if request is None or (name == "gateway.approval_cancel" and not service.may_see(caller, request)):
            return _error(f"no approval request {arguments['approval_id']}")
        try:
            if name == "gateway.approve":
                decided = await service.approve(
                    request.id, caller, arguments.get("comment"), arguments.get("edited_arguments")
                )
                return _result(request_json(decided), describe(decided))
            if name == "gateway.deny":
                decided = await service.deny(request.id, caller, arguments["reason"])
                return _result(request_json(decided), describe(decided))
            if name == "gateway.approval_cancel":
                decided = await service.cancel(request.id, caller, arguments.get("reason"))
                return _result(request_json(decided), describe(decided))
        except ApprovalError as exc:
            return _error(f"{exc.reason}: {exc}")
        if not service.may_see(caller, request):
            return _error(f"no approval request {request.id}")  # only its requester, approvers and auditors see it
        if name == "gateway.approval_wait":
            request = await service.wait(request.id, float(arguments.get("timeout_s", 10)), context.progress) or request
        body = {
            "approval_id": request.id,
            "status": request.status.value,
            "reason": request.status_reason,
            "expires_at": request.expires_at,
            "result": request.result,
        }
        # Still open: what to do next (one sentence, said once); ended: where it stands and why.
        text = describe(request) if request.terminal else service.outcome_of(request).message
        return _result(body, text)

    async def start(self, tasks: TaskGroup) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Nothing to release."""

    def health(self) -> SourceHealth:
        return SourceHealth(source=self.name, kind=self.kind, status="ok", tools=len(self._definitions))


def _result(structured: dict[str, Any], text: str) -> ToolResult:
    return ToolResult(content=[{"type": "text", "text": text}], structured=structured)


def _error(text: str) -> ToolResult:
    return ToolResult(content=[{"type": "text", "text": text}], is_error=True)
