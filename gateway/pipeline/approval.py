"""Hold calls that need a person's approval: record a pending request and answer at once.

Approval exists for tool calls only: an upstream resource read, prompt get or
completion that policy (or a guardrail) would send for approval is refused.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from mcp import types

from gateway.approvals.requests import ApprovalRequest, later, pending_request
from gateway.calls import CallContext, Continue, Finding, Stop
from gateway.canonical import canonical_json
from gateway.outcomes import Decision, Outcome, OutcomeCode
from gateway.store.changes import Change, Statement

CONSENT = "consent"
"""The approver 'role' meaning: the user making the call confirms it themselves."""
CONSENT_SCHEMA = {
    "type": "object",
    "properties": {"confirm": {"type": "boolean", "title": "Go ahead?"}},
    "required": ["confirm"],
}


def _covered(call: CallContext) -> bool:
    plan, decision = call.plan, call.decision
    if plan is None or decision is None or plan.approval_id is None:
        return False
    return any(
        cover.step == plan.step
        and cover.tool == call.tool_name
        and cover.rule == decision.rule
        and cover.approver == decision.approver
        for cover in plan.covers
    )


def consent_question(call: CallContext) -> str:
    return f"Portcullis: confirm the call to {call.tool_name} with {canonical_json(call.arguments)[:500]}?"


class PendingRequests(Protocol):
    """Where a held call's request is kept: the approval store's change, committed with the call's record."""

    def create(self, request: ApprovalRequest) -> Change: ...


class Approval:
    name: ClassVar[str] = "approval"
    executes: ClassVar[bool] = False

    def __init__(self, policy_version: str, expiry_seconds: float, requests: PendingRequests | None = None) -> None:
        self._policy_version = policy_version
        self._expiry_seconds = expiry_seconds
        self._requests = requests
        """The deployment's approval store (SQLite or PostgreSQL); None: the embedded SQLite database's insert."""

    def _create(self, request: ApprovalRequest) -> Change | Statement:
        return request.insert() if self._requests is None else self._requests.create(request)

    async def __call__(self, call: CallContext) -> Continue | Stop:
        decision, tool = call.decision, call.tool
        if decision is None or decision.decision is not Decision.APPROVAL_REQUIRED:
            return Continue(call)
        if call.request is not None:
            message = (
                f"{call.request.action} of {call.tool_name} needs approval, which is only available for tool calls"
            )
            return Stop(call, Outcome.refuse(OutcomeCode.DENIED, message, stage=self.name))
        if tool is None:
            return Continue(call)
        approver = decision.approver or "an approver"
        if decision.approver == CONSENT:
            return await self._consent(call)
        if call.plan is not None and _covered(call):
            # A step of an approved plan, needing exactly what the approver saw for it.
            return Continue(call.evolve(approval_id=call.plan.approval_id))
        if call.approved is not None:
            # The queue executes an approved request: it covers exactly these arguments and this definition.
            if (
                call.approved.arguments_digest == call.arguments_digest
                and call.approved.definition_hash == tool.definition_hash
            ):
                return Continue(call.evolve(approval_id=call.approved.id))
            message = f"approval request {call.approved.id} does not cover these arguments or this tool definition"
            return Stop(call, Outcome.refuse(OutcomeCode.APPROVAL_REQUIRED, message, stage=self.name))
        if not call.execute:
            message = f"approval by {approver} is required"
            return Stop(call, Outcome.refuse(OutcomeCode.APPROVAL_REQUIRED, message, stage=self.name))
        request = pending_request(
            subject=call.caller.subject or "",
            tool=call.tool_name,
            arguments=call.arguments,
            definition_hash=tool.definition_hash,
            policy_version=self._policy_version,
            approver_role=decision.approver,
            approvals_required=decision.quorum,
            reasons=[decision.cited, *(f.message for f in call.findings)],
            call_id=call.call_id,
            expires_at=later(self._expiry_seconds),
            tenant=call.caller.tenant,
            roles=list(call.caller.granted_roles),
        )
        message = f"approval by {approver} is required; request {request.id} is pending"
        return Stop(
            call.evolve(approval_id=request.id, statements=(*call.statements, self._create(request))),
            Outcome.refuse(
                OutcomeCode.APPROVAL_REQUIRED,
                message,
                stage=self.name,
                approval_id=request.id,
                approver_role=decision.approver,
                approvals_required=decision.quorum,
                status=request.status.value,
            ),
        )

    async def _consent(self, call: CallContext) -> Continue | Stop:
        """Ask the caller's user to confirm (elicitation); record the answer as consent, not approval."""
        answer = call.consent
        if answer is None and call.relay is not None and call.execute:
            params = types.ElicitRequestFormParams(message=consent_question(call), requested_schema=CONSENT_SCHEMA)
            reply = await call.relay.elicit(params)
            if isinstance(reply, types.ElicitResult):
                answer = reply.action == "accept" and bool((reply.content or {}).get("confirm"))
        if answer is None:
            message = "the user must confirm this call, and their client cannot be asked (no elicitation)"
            return Stop(
                call,
                Outcome.refuse(
                    OutcomeCode.CONSENT_REQUIRED,
                    message,
                    stage=self.name,
                    question=consent_question(call),
                    schema=CONSENT_SCHEMA,
                ),
            )
        finding = Finding(
            rule="consent",
            message="the user confirmed the call" if answer else "the user declined the call",
            stage=self.name,
        )
        call = call.evolve(findings=(*call.findings, finding))
        if not answer:
            return Stop(call, Outcome.refuse(OutcomeCode.DENIED, "the user declined the call", stage=self.name))
        return Continue(call)
