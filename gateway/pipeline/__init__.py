"""The pipeline every tool call travels, in this order (and no other way to a tool).

admission -> identity -> rate limits -> authorization -> input guardrails ->
plan review (only for `gateway.plan_run`) -> approval -> execution -> output
guardrails, wrapped by the audit log (`runner.Pipeline`). Admission comes
first so oversized arguments cost nothing else; rate limits come before policy
so a flood costs little. An upstream resource read, prompt get or completion
takes the same way (`context.Request`); schema checks, plan review and
approval are for tool calls only.
"""

from __future__ import annotations

from gateway.audit import AuditStore
from gateway.guardrails.flows import FlowTracker
from gateway.guardrails.rate_limits import RateLimiter
from gateway.pipeline.admission import Admission
from gateway.pipeline.approval import Approval
from gateway.pipeline.authorization import Authorization
from gateway.pipeline.context import CallContext, Caller, Continue, Finding, PlanLink, Stage, Stop
from gateway.pipeline.execution import Execution
from gateway.pipeline.identity import Identity
from gateway.pipeline.input_guardrails import InputGuardrails
from gateway.pipeline.output_guardrails import OutputGuardrails
from gateway.pipeline.plan_review import PlanReview
from gateway.pipeline.rate_limits import RateLimits
from gateway.pipeline.runner import Pipeline
from gateway.planner import PLAN_TOOLS, Previewer
from gateway.snapshot import Snapshot
from gateway.sources.base import ToolDefinition


def build_stages(
    snapshot: Snapshot,
    flows: FlowTracker | None = None,
    limiter: RateLimiter | None = None,
    audit: AuditStore | None = None,
) -> list[Stage]:
    """The stages for one snapshot, in travel order; built once, never mutated.

    `flows` and `limiter` hold what outlives a snapshot (a session's reads, the
    rate buckets); the `Gateway` owns them and passes the same ones to every snapshot.
    """
    config = snapshot.config
    flows = flows if flows is not None else FlowTracker()
    limiter = limiter if limiter is not None else RateLimiter()
    guardrails = snapshot.guardrails
    before: list[Stage] = [
        Admission(config.limits),
        Identity(snapshot.policy),
        RateLimits(guardrails.config.rate_limits, limiter),
        Authorization(snapshot.policy, snapshot.catalog),
        InputGuardrails(snapshot.catalog, guardrails, flows),
    ]
    after: list[Stage] = [
        Approval(snapshot.policy.version, config.approvals.expiry_seconds),
        Execution(config, snapshot.catalog, audit),  # audit: relayed elicitation and sampling are recorded
        OutputGuardrails(config.limits, guardrails, flows),
    ]
    # A plan's steps are previewed through these same stages, run dry (nothing executed or recorded).
    previewer = Previewer(snapshot, Pipeline([*before, *after], None, ()))

    def visible(call: CallContext, tool: str) -> ToolDefinition | None:
        if tool in PLAN_TOOLS:
            return None  # no plans inside plans
        return snapshot.visible_tool(call.caller.subject, tool, call.caller.granted_roles)

    return [*before, PlanReview(previewer, visible), *after]


def build_pipeline(
    snapshot: Snapshot, audit: AuditStore | None, flows: FlowTracker | None = None, limiter: RateLimiter | None = None
) -> Pipeline:
    audit_config = snapshot.config.audit
    stages = build_stages(snapshot, flows, limiter, audit)
    return Pipeline(stages, audit, audit_config.secret_keys, audit_config.personal_keys)


__all__ = [
    "Admission",
    "Approval",
    "Authorization",
    "CallContext",
    "Caller",
    "Continue",
    "Execution",
    "Finding",
    "Identity",
    "InputGuardrails",
    "OutputGuardrails",
    "Pipeline",
    "PlanLink",
    "PlanReview",
    "RateLimits",
    "Stage",
    "Stop",
    "build_pipeline",
    "build_stages",
]
