"""The gateway's own tools (`gateway.*`), served through the same pipeline as every other tool.

`gateway.policy_check` explains a decision (the policy check of the CLI). The
approval tools let a requester follow its request (`approval_status`,
`approval_wait`) and an approver decide from their own agent (`approvals_pending`,
`approve`, `deny`). Who may call each is policy, like every tool; each also checks
that the caller is the requester, or may approve that request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from anyio.abc import TaskGroup

from gateway.approvals.requests import ApprovalStatus
from gateway.planner import PLAN_TOOLS
from gateway.planner.tools import PlannerTools
from gateway.planner.tools import definitions as planner_definitions
from gateway.sources.base import SourceHealth, ToolContext, ToolDefinition, ToolResult, ToolTable, table_definitions

if TYPE_CHECKING:
    from gateway.gateway import Gateway

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
    kind = "builtin"
    name = "builtin"

    def __init__(self, gateway: Gateway) -> None:
        from gateway.gateway import CheckReport

        self._gateway = gateway
        output = CheckReport.model_json_schema()
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
            output_schema=output,
            annotations={
                "readOnlyHint": True,
                "destructiveHint": False,
                "idempotentHint": True,
                "openWorldHint": False,
            },
            source=self.name,
        )

        self._definitions = (
            [self._definition] + table_definitions(APPROVAL_TOOLS, self.name) + planner_definitions(self.name)
        )
        self._planner = PlannerTools(gateway)

    def list_tools(self) -> list[ToolDefinition]:
        return list(self._definitions)

    async def call(self, tool: ToolDefinition, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        if tool.name in PLAN_TOOLS:
            return await self._planner.call(tool.name, arguments, context)
        if tool.name == POLICY_CHECK:
            report = await self._gateway.check(arguments["subject"], arguments["tool"], arguments.get("args", {}))
            structured = report.model_dump(mode="json")
            text = f"{report.decision.value}: {report.rule or 'no rule matched (deny by default)'}"
            return ToolResult(content=[{"type": "text", "text": text}], structured=structured)
        return await self._approvals(tool.name, arguments, context)

    async def _audit_query(self, arguments: dict[str, Any]) -> ToolResult:
        """Auditors' view of the log (who may call it is policy: the demo's auditor)."""
        from gateway.audit import AuditQuery, parse_since

        if arguments.get("since") is not None:
            try:
                parse_since(arguments["since"])
            except ValueError as exc:
                return _error(f"since: {exc}")
        query = AuditQuery(**{**arguments, "limit": arguments.get("limit", 50)}, newest_first=True)
        records = await _read_audit(self._gateway.audit.path, query)
        return _result({"records": records}, f"{len(records)} record(s)")

    async def _approvals(self, name: str, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        from gateway.approvals.service import ApprovalError, request_json
        from gateway.pipeline import Caller

        if name == "gateway.audit_query":
            return await self._audit_query(arguments)
        service = self._gateway.approvals
        caller = Caller(subject=context.subject, granted_roles=context.roles, auth="builtin", transport="builtin")
        if name == "gateway.approvals_pending":
            pending = await service.by_status(ApprovalStatus.PENDING)
            mine = [request_json(r) for r in pending if r.subject != caller.subject and service.may_approve(caller, r)]
            return _result({"pending": mine}, f"{len(mine)} request(s) await your decision")
        request = await service.get(arguments["approval_id"])
        if request is None:
            return _error(f"no approval request {arguments['approval_id']}")
        try:
            if name == "gateway.approve":
                decided = await service.approve(
                    request.id, caller, arguments.get("comment"), arguments.get("edited_arguments")
                )
                return _result(request_json(decided), f"request {request.id} is {decided.status.value}")
            if name == "gateway.deny":
                decided = await service.deny(request.id, caller, arguments["reason"])
                return _result(request_json(decided), f"request {request.id} is {decided.status.value}")
        except ApprovalError as exc:
            return _error(f"{exc.reason}: {exc}")
        if not service.may_see(caller, request):
            return _error(f"no approval request {request.id}")  # only its requester, approvers and auditors see it
        if name == "gateway.approval_wait":
            request = await service.wait(request.id, float(arguments.get("timeout_s", 10)), context.progress) or request
        outcome = service.outcome_of(request)
        body = {
            "approval_id": request.id,
            "status": request.status.value,
            "expires_at": request.expires_at,
            "result": request.result,
        }
        return _result(body, f"request {request.id} is {request.status.value}: {outcome.message}")

    async def start(self, tasks: TaskGroup) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Nothing to release."""

    def health(self) -> SourceHealth:
        return SourceHealth(source=self.name, kind=self.kind, status="ok", tools=len(self._definitions))


async def _read_audit(path: Any, query: Any) -> list[dict[str, Any]]:
    import anyio.to_thread

    from gateway.audit import open_readonly, query_records

    def run() -> list[dict[str, Any]]:
        connection = open_readonly(path)
        try:
            return query_records(connection, query)
        finally:
            connection.close()

    return await anyio.to_thread.run_sync(run)


def _result(structured: dict[str, Any], text: str) -> ToolResult:
    return ToolResult(content=[{"type": "text", "text": text}], structured=structured)


def _error(text: str) -> ToolResult:
    return ToolResult(content=[{"type": "text", "text": text}], is_error=True)
