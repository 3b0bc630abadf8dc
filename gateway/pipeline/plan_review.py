"""Review a plan before `gateway.plan_run` runs it: validate, preview every step as the caller,
refuse the whole plan if a step is denied, and ask for one approval for the plan when steps need it.

The approval request's arguments are the plan itself plus what the approval covers (each step
that needs approval, its tool, rule and approver), so the approver sees every step and the
approval binds exactly this plan: a changed step changes the digest and needs a new approval.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from gateway.calls import CallContext, Continue, Finding, Stop
from gateway.canonical import canonical_json, sha256_hex
from gateway.outcomes import Decision, Outcome, OutcomeCode
from gateway.planner.plan import PLAN_TOOLS
from gateway.planner.preview import Previewer
from gateway.planner.validate import validate
from gateway.tool_types import ToolDefinition

PLAN_RUN = "gateway.plan_run"
Visible = Callable[[CallContext, str], ToolDefinition | None]
"""The caller's view of a tool a step names (None: not theirs, or a planner tool)."""
COVERS = "approval_covers"


class PlanReview:
    name: ClassVar[str] = "plan_review"
    executes: ClassVar[bool] = False

    def __init__(self, previewer: Previewer, visible: Visible) -> None:
        self._previewer = previewer
        self._visible = visible

    async def __call__(self, call: CallContext) -> Continue | Stop:
        if call.tool_name != PLAN_RUN or call.request is not None:
            return Continue(call)
        arguments = call.arguments
        if COVERS in arguments and call.approved is None:
            message = f"{COVERS} is set by the gateway when it asks for the plan's approval, never by a caller"
            return Stop(call, Outcome.refuse(OutcomeCode.INVALID_ARGUMENTS, message, stage=self.name))
        plan, problems = validate(arguments.get("plan"), lambda tool: self._visible(call, tool))
        if plan is None:
            errors = [p.model_dump() for p in problems]
            message = "the plan is not valid: " + "; ".join(f"{p.path}: {p.message}" for p in problems[:10])
            return Stop(call, Outcome.refuse(OutcomeCode.INVALID_ARGUMENTS, message, stage=self.name, errors=errors))
        preview = await self._previewer.preview(plan, call.caller)
        shown = preview.model_dump(mode="json")
        if preview.refused:
            steps = "; ".join(f"{s.id} ({s.tool}): {s.message}" for s in preview.refused)
            message = f"the plan was refused before any step ran: {steps}"
            return Stop(call, Outcome.refuse(OutcomeCode.DENIED, message, stage=self.name, preview=shown))
        needs = preview.needs_approval
        decision = call.decision
        if not needs or decision is None or decision.decision is not Decision.ALLOW:
            return Continue(call)
        findings = tuple(
            Finding(
                rule="plan.step_needs_approval",
                message=f"step {s.id}: {s.tool} {canonical_json(dict(plan.step(s.id).arguments))[:300]}"
                f" needs approval by {s.approver or 'an approver'} ({s.rule})",
                stage=self.name,
                path=f"$.plan.steps[{[x.id for x in plan.steps].index(s.id)}]",
                action="require_approval",
            )
            for s in needs
        )
        first = needs[0]
        escalated = decision.model_copy(
            update={
                "decision": Decision.APPROVAL_REQUIRED,
                "approver": first.approver,
                "quorum": max(s.quorum for s in needs if s.approver == first.approver),
                "rule": f"plan {plan.hash[:12]}: {len(needs)} step(s) need approval",
            }
        )
        call = call.evolve(decision=escalated, findings=(*call.findings, *findings))
        if call.approved is None:
            covered = {**arguments, COVERS: [c.model_dump() for c in preview.covers() if c.approver == first.approver]}
            call = call.evolve(arguments=covered, arguments_digest=sha256_hex(canonical_json(covered)))
        return Continue(call)


__all__ = ["COVERS", "PLAN_RUN", "PLAN_TOOLS", "PlanReview"]
