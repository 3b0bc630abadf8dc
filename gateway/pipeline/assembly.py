"""Assemble the pipeline for one snapshot: the stages in travel order, audited and dry-run.

Only the wiring (`gateway.gateway`) imports this module: a service that needs a call
run goes through the door it was given, never through a pipeline of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.calls import CallContext, Stage
from gateway.guardrails.flows import FlowTracker
from gateway.store.protocols import FlowLabels
from gateway.guardrails.rate_limits import RateLimiter
from gateway.pipeline.admission import Admission
from gateway.pipeline.approval import Approval, PendingRequests
from gateway.pipeline.authorization import Authorization
from gateway.pipeline.execution import Execution
from gateway.pipeline.identity import Identity
from gateway.pipeline.input_guardrails import InputGuardrails
from gateway.pipeline.output_guardrails import OutputGuardrails
from gateway.pipeline.plan_review import PlanReview
from gateway.pipeline.rate_limits import RateLimits
from gateway.pipeline.runner import Pipeline
from gateway.planner.plan import PLAN_TOOLS
from gateway.planner.preview import Previewer
from gateway.ports import AuditSink
from gateway.snapshot import Snapshot
from gateway.tool_types import ToolDefinition


def build_stages(
    snapshot: Snapshot,
    flows: FlowLabels | None = None,
    limiter: RateLimiter | None = None,
    audit: AuditSink | None = None,
    approvals: PendingRequests | None = None,
) -> list[Stage]:
    """The stages for one snapshot, in travel order; built once, never mutated.

    `flows` and `limiter` hold what outlives a snapshot (a session's reads, the
    rate buckets); the wiring owns them and passes the same ones to every snapshot.
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
        Approval(snapshot.policy.version, config.approvals.expiry_seconds, approvals),
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
    snapshot: Snapshot,
    audit: AuditSink | None,
    flows: FlowLabels | None = None,
    limiter: RateLimiter | None = None,
    approvals: PendingRequests | None = None,
) -> Pipeline:
    audit_config = snapshot.config.audit
    stages = build_stages(snapshot, flows, limiter, audit, approvals)
    return Pipeline(stages, audit, audit_config.secret_keys, audit_config.personal_keys)


@dataclass(frozen=True)
class Assembled:
    """One snapshot and the pipelines built for it, held by one reference: a call takes all three at once."""

    snapshot: Snapshot
    pipeline: Pipeline
    """Audited: every call is recorded, and executed unless a stage stops it."""
    dry_run: Pipeline
    """Nothing executed, recorded or queued (`policy check`, plan previews)."""


def assemble(
    snapshot: Snapshot, audit: AuditSink, flows: FlowLabels, limiter: RateLimiter, approvals: PendingRequests
) -> Assembled:
    return Assembled(
        snapshot,
        build_pipeline(snapshot, audit, flows, limiter, approvals),
        build_pipeline(snapshot, None, flows, limiter, approvals),
    )
