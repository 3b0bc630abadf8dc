"""The pipeline every tool call travels, in this order (and no other way to a tool).

admission -> identity -> authorization -> input guardrails -> approval ->
execution -> output guardrails, wrapped by the audit log (`runner.Pipeline`).
Admission comes first so oversized arguments cost nothing else.
"""

from __future__ import annotations

from gateway.audit import AuditStore
from gateway.pipeline.admission import Admission
from gateway.pipeline.approval import Approval
from gateway.pipeline.authorization import Authorization
from gateway.pipeline.context import CallContext, Caller, Continue, Finding, Stage, Stop
from gateway.pipeline.execution import Execution
from gateway.pipeline.identity import Identity
from gateway.pipeline.input_guardrails import InputGuardrails
from gateway.pipeline.output_guardrails import OutputGuardrails
from gateway.pipeline.runner import Pipeline
from gateway.snapshot import Snapshot


def build_stages(snapshot: Snapshot) -> list[Stage]:
    """The stages for one snapshot, in travel order; built once, never mutated."""
    config = snapshot.config
    return [
        Admission(config.limits),
        Identity(snapshot.policy),
        Authorization(snapshot.policy, snapshot.catalog),
        InputGuardrails(snapshot.catalog),
        Approval(snapshot.policy.version, config.approvals.expiry_seconds),
        Execution(config, snapshot.catalog),
        OutputGuardrails(config.limits),
    ]


def build_pipeline(snapshot: Snapshot, audit: AuditStore | None) -> Pipeline:
    audit_config = snapshot.config.audit
    return Pipeline(build_stages(snapshot), audit, audit_config.secret_keys, audit_config.personal_keys)


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
    "Stage",
    "Stop",
    "build_pipeline",
    "build_stages",
]
