"""Each stage called directly with a built CallContext, no transport."""

from __future__ import annotations

import pytest
from support import make_call as call

from gateway.config import LimitsConfig
from gateway.guardrails.flows import FlowTracker
from gateway.outcomes import Decision, OutcomeCode
from gateway.pipeline import (
    Admission,
    Approval,
    Authorization,
    Continue,
    Execution,
    Identity,
    InputGuardrails,
    OutputGuardrails,
    Stop,
)
from gateway.snapshot import Snapshot
from gateway.sources.base import ToolResult

pytestmark = pytest.mark.anyio


def nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


async def test_admission_refuses_oversized_arguments(snapshot: Snapshot) -> None:
    stage = Admission(LimitsConfig(max_argument_bytes=100))
    step = await stage(call(snapshot, "alice", "faulty.echo", {"text": "x" * 200}))
    assert isinstance(step, Stop)
    assert step.outcome.code is OutcomeCode.ARGUMENTS_TOO_LARGE
    assert step.call.arguments_bytes == len('{"text":""}') + 200
    assert step.call.findings[0].rule == "limits.max_bytes"


async def test_admission_refuses_deep_nesting_without_recursing(snapshot: Snapshot) -> None:
    stage = Admission(LimitsConfig(max_argument_depth=32))
    assert isinstance(await stage(call(snapshot, "alice", "faulty.echo", nested(32))), Continue)
    step = await stage(call(snapshot, "alice", "faulty.echo", nested(33)))
    assert isinstance(step, Stop) and step.outcome.code is OutcomeCode.ARGUMENTS_TOO_LARGE
    # far deeper than Python's recursion limit: refused, not crashed
    step = await stage(call(snapshot, "alice", "faulty.echo", nested(100_000)))
    assert isinstance(step, Stop) and step.outcome.code is OutcomeCode.ARGUMENTS_TOO_LARGE


async def test_admission_records_the_digest_of_admitted_arguments(snapshot: Snapshot) -> None:
    step = await Admission(LimitsConfig())(call(snapshot, "alice", "faulty.echo", {"text": "hi"}))
    assert isinstance(step, Continue)
    assert step.call.arguments_digest is not None and len(step.call.arguments_digest) == 64


async def test_identity_refuses_a_caller_without_subject_and_resolves_roles(snapshot: Snapshot) -> None:
    stage = Identity(snapshot.policy)
    step = await stage(call(snapshot, None, "crm.find_customer"))
    assert isinstance(step, Stop) and step.outcome.code is OutcomeCode.UNAUTHENTICATED
    step = await stage(call(snapshot, "carol", "crm.find_customer"))
    assert isinstance(step, Continue)
    assert set(step.call.roles) == {"role:manager", "role:support", "role:crm-reader"}


async def test_authorization_hides_tools_the_caller_may_not_call(snapshot: Snapshot) -> None:
    stage = Authorization(snapshot.policy, snapshot.catalog)
    hidden = await stage(call(snapshot, "alice", "crm.delete_customer"))
    missing = await stage(call(snapshot, "alice", "no.such_tool"))
    assert isinstance(hidden, Stop) and isinstance(missing, Stop)
    assert hidden.outcome.code is missing.outcome.code is OutcomeCode.UNKNOWN_TOOL
    assert hidden.outcome.message == "Unknown tool: crm.delete_customer"
    assert hidden.call.decision is not None and hidden.call.decision.decision is Decision.DENY


async def test_authorization_passes_allowed_and_approval_calls_with_their_decision(snapshot: Snapshot) -> None:
    stage = Authorization(snapshot.policy, snapshot.catalog)
    allowed = await stage(call(snapshot, "alice", "crm.find_customer"))
    held = await stage(call(snapshot, "bob", "payments.refund", {"amount": 500}))
    assert isinstance(allowed, Continue) and isinstance(held, Continue)
    assert allowed.call.decision is not None and allowed.call.decision.decision is Decision.ALLOW
    assert held.call.decision is not None and held.call.decision.decision is Decision.APPROVAL_REQUIRED
    assert held.call.tool is not None and held.call.tool.name == "payments.refund"


async def test_authorization_denies_a_visible_tool_on_its_arguments(snapshot: Snapshot) -> None:
    stage = Authorization(snapshot.policy, snapshot.catalog)
    step = await stage(call(snapshot, "bob", "payments.refund", {"amount": 20_000}))
    assert isinstance(step, Stop) and step.outcome.code is OutcomeCode.DENIED
    assert step.call.decision is not None and step.call.decision.rule is not None
    assert "args.amount > 10000" in step.call.decision.rule


async def test_input_guardrails_report_every_schema_violation_with_its_path(snapshot: Snapshot) -> None:
    stage = InputGuardrails(snapshot.catalog, snapshot.guardrails, FlowTracker())
    step = await stage(call(snapshot, "alice", "email.send", {"to": "not-an-address", "subject": 5}))
    assert isinstance(step, Stop)
    assert step.outcome.code is OutcomeCode.INVALID_ARGUMENTS
    paths = {error["path"] for error in step.outcome.data["errors"]}
    assert paths == {"$", "$.to", "$.subject"}
    assert {f.rule for f in step.call.findings} == {"schema"}
    ok = await stage(call(snapshot, "alice", "email.send", {"to": "a@acme.example", "subject": "s", "body": "b"}))
    assert isinstance(ok, Continue)


async def test_approval_records_a_pending_request_bound_to_the_call(snapshot: Snapshot) -> None:
    authorized = await Authorization(snapshot.policy, snapshot.catalog)(
        call(snapshot, "bob", "payments.refund", {"amount": 500})
    )
    assert isinstance(authorized, Continue)
    step = await Approval(snapshot.policy.version, 3600)(authorized.call)
    assert isinstance(step, Stop)
    assert step.outcome.code is OutcomeCode.APPROVAL_REQUIRED
    assert step.outcome.data["approver_role"] == "role:manager"
    assert step.call.approval_id == step.outcome.data["approval_id"]
    assert len(step.call.statements) == 1 and "approval_requests" in step.call.statements[0].sql


async def test_approval_lets_allowed_calls_through_untouched(snapshot: Snapshot) -> None:
    authorized = await Authorization(snapshot.policy, snapshot.catalog)(
        call(snapshot, "carol", "payments.refund", {"amount": 50})
    )
    assert isinstance(authorized, Continue)
    step = await Approval(snapshot.policy.version, 3600)(authorized.call)
    assert isinstance(step, Continue) and step.call.statements == ()


async def test_execution_turns_exceptions_and_timeouts_into_outcomes(snapshot: Snapshot) -> None:
    stage = Execution(snapshot.config, snapshot.catalog)
    failed = await stage(call(snapshot, "alice", "faulty.boom", {}))
    assert isinstance(failed, Stop) and failed.outcome.code is OutcomeCode.TOOL_FAILED
    assert "the tool exploded" in failed.outcome.message
    timed_out = await stage(call(snapshot, "alice", "faulty.slow", {"seconds": 3}))
    assert isinstance(timed_out, Stop) and timed_out.outcome.code is OutcomeCode.TIMEOUT
    assert timed_out.outcome.data["timeout_seconds"] == 0.5


async def test_execution_runs_the_tool_with_the_callers_identity(snapshot: Snapshot) -> None:
    stage = Execution(snapshot.config, snapshot.catalog)
    args = {"customer_id": "C002", "subject": "Printer", "body": "It is on fire"}
    step = await stage(call(snapshot, "alice", "tickets.create", args))
    assert isinstance(step, Continue) and step.call.result is not None
    assert step.call.result.structured is not None
    assert step.call.result.structured["created_by"] == "alice"


async def test_execution_does_nothing_in_a_dry_run(snapshot: Snapshot) -> None:
    step = await Execution(snapshot.config, snapshot.catalog)(call(snapshot, "alice", "faulty.boom", execute=False))
    assert isinstance(step, Continue) and step.call.result is None


async def test_output_guardrails_withhold_results_over_the_cap(snapshot: Snapshot) -> None:
    stage = OutputGuardrails(LimitsConfig(max_result_bytes=1000), snapshot.guardrails, FlowTracker())
    small = call(snapshot, "alice", "faulty.echo", result=ToolResult(content=[{"type": "text", "text": "hi"}]))
    big = call(snapshot, "alice", "faulty.echo", result=ToolResult(content=[{"type": "text", "text": "x" * 2000}]))
    assert isinstance(await stage(small), Continue)
    step = await stage(big)
    assert isinstance(step, Stop) and step.outcome.code is OutcomeCode.OUTPUT_TOO_LARGE
    assert step.call.findings[0].rule == "limits.max_result_bytes"
