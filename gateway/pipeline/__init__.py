"""The pipeline every tool call travels, in this order (and no other way to a tool).

admission -> identity -> rate limits -> authorization -> input guardrails ->
plan review (only for `gateway.plan_run`) -> approval -> execution -> output
guardrails, wrapped by the audit log (`runner.Pipeline`). Admission comes
first so oversized arguments cost nothing else; rate limits come before policy
so a flood costs little. An upstream resource read, prompt get or completion
takes the same way (`calls.Request`); schema checks, plan review and
approval are for tool calls only.

The stages are assembled in that order for each snapshot by `pipeline/assembly.py`,
which only the wiring (`gateway.gateway`) imports.
"""

from __future__ import annotations

from gateway.calls import CallContext, Caller, Continue, Finding, PlanLink, Stage, Stop
from gateway.pipeline.admission import Admission
from gateway.pipeline.approval import Approval
from gateway.pipeline.authorization import Authorization
from gateway.pipeline.execution import Execution
from gateway.pipeline.identity import Identity
from gateway.pipeline.input_guardrails import InputGuardrails
from gateway.pipeline.output_guardrails import OutputGuardrails
from gateway.pipeline.plan_review import PlanReview
from gateway.pipeline.rate_limits import RateLimits
from gateway.pipeline.runner import Pipeline

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
]
