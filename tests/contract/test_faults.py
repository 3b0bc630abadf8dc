"""A store that cannot answer fails closed: a typed error, the call refused, and nothing half-written."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest
from contract_support import Backend, Clock, Verified

from gateway.audit import AuditRecord, AuditStore
from gateway.calls import CallContext, Caller
from gateway.guardrails.flows import FlowTracker
from gateway.guardrails.rate_limits import RateLimiter
from gateway.outcomes import AuditWriteError, Outcome, OutcomeCode
from gateway.pipeline.assembly import build_pipeline
from gateway.snapshot import Snapshot
from gateway.store.errors import StoreBusy, StoreCorrupt, StoreError, StoreUnavailable
from gateway.store.protocols import Bucket

pytestmark = pytest.mark.anyio
PLAN = {"goal": "g", "steps": [{"id": "a", "tool": "t.a"}]}


async def test_a_database_replaced_by_garbage_is_reported_corrupt_by_every_part(backend: Backend, clock: Clock) -> None:
    backend.corrupt()
    with pytest.raises(StoreCorrupt) as opened:
        async with backend.open_log():
            pass
    assert isinstance(opened.value, AuditWriteError)  # every caller that refuses on a failed record refuses here
    runs = backend.plan_runs(clock)
    for read in (runs.get("r1"), runs.running(), runs.expired()):
        with pytest.raises(StoreCorrupt):
            await read


async def test_a_locked_store_refuses_the_write_within_its_timeout_and_writes_none_of_it(
    backend: Backend, clock: Clock, verified: Verified
) -> None:
    runs = backend.plan_runs(clock)
    async with backend.open_log() as log:
        start = runs.start(
            "r1", owner="o", subject="s", tenant=None, session=None, plan=PLAN, plan_hash="h", approval_id=None
        )
        await log.append(AuditRecord(event="plan.started"), [start])
        finish = runs.finish("r1", "succeeded", {}, "o")
        async with backend.hold_write_lock():
            with anyio.fail_after(10):  # refused after the write timeout, never a hang
                with pytest.raises(StoreBusy):
                    await log.append(AuditRecord(event="plan.finished"), [finish])
                with pytest.raises(StoreBusy):
                    await log.write([runs.renew("o", "r1")])
            during = await runs.get("r1")  # readers are not blocked by a writer
        assert during is not None and during.status == "running"
        assert [body["event"] for body in await verified(log)] == ["plan.started"]
        await log.append(AuditRecord(event="plan.finished"), [finish])  # the lock gone, the same change commits
        after = await runs.get("r1")
        assert [body["event"] for body in await verified(log)] == ["plan.started", "plan.finished"]
    assert after is not None and after.status == "succeeded"


# --- the stages refuse a call whose store cannot answer ----------------------------------------


class Unavailable:
    """Rate buckets and flow labels on a store that cannot be reached."""

    async def take(self, buckets: Sequence[Bucket], consume: bool = True) -> tuple[int, float] | None:
        raise StoreUnavailable("the rate-limit store is down")

    async def record(self, session: str, labels: frozenset[str], call_id: str) -> None:
        raise StoreUnavailable("the flow-label store is down")

    async def reads(self, session: str, labels: tuple[str, ...]) -> list[str] | None:
        raise StoreUnavailable("the flow-label store is down")


def caller(subject: str) -> Caller:
    return Caller(subject=subject, auth="test", transport="test", session=f"{subject}-session")


async def refused(
    snapshot: Snapshot, tmp_path: Path, subject: str, tool: str, arguments: dict[str, object]
) -> tuple[Outcome, tuple[str, str]]:
    """Run one call through the audited pipeline with the broken stores; its outcome and its record."""
    audit = AuditStore(tmp_path / "faults.db")
    audit.open("salt")
    broken = Unavailable()
    flows = broken if tool != "payments.refund" else FlowTracker()
    try:
        pipeline = build_pipeline(snapshot, audit, flows, RateLimiter(broken))
        outcome = await pipeline.run(CallContext.new(snapshot, caller(subject), tool, arguments))
    finally:
        await audit.close()
    with sqlite3.connect(tmp_path / "faults.db") as db:
        (record,) = db.execute("SELECT outcome, body FROM audit_log WHERE event = 'tool.call'").fetchall()
    return outcome, record


async def test_a_rate_limit_store_that_cannot_answer_refuses_the_call_before_it_runs(
    snapshot: Snapshot, tmp_path: Path
) -> None:
    refund = {"customer_id": "C004", "amount": 50, "reason": "late"}
    outcome, record = await refused(snapshot, tmp_path, "bob", "payments.refund", refund)
    assert outcome.code is OutcomeCode.AUDIT_UNAVAILABLE and outcome.stage == "rate_limits"
    assert outcome.data["store_error"] == StoreUnavailable.kind
    assert record[0] == OutcomeCode.AUDIT_UNAVAILABLE.value
    assert not (snapshot.config.root / "data" / "acme.db").exists()  # the refund tool never ran


async def test_flow_labels_that_cannot_be_read_refuse_a_call_to_an_external_sink(
    snapshot: Snapshot, tmp_path: Path
) -> None:
    email = {"to": "ada@acme.example", "subject": "hello", "body": "hi"}
    outcome, record = await refused(snapshot, tmp_path, "alice", "email.send", email)
    assert outcome.code is OutcomeCode.AUDIT_UNAVAILABLE and outcome.stage == "input_guardrails"
    assert record[0] == OutcomeCode.AUDIT_UNAVAILABLE.value


async def test_a_read_whose_flow_label_cannot_be_recorded_is_withheld(snapshot: Snapshot, tmp_path: Path) -> None:
    outcome, record = await refused(snapshot, tmp_path, "alice", "crm.get_customer", {"customer_id": "C001"})
    assert outcome.code is OutcomeCode.AUDIT_UNAVAILABLE and outcome.stage == "output_guardrails"
    assert outcome.content == [] and outcome.structured is None
    assert "Lovelace" not in record[1]


def test_every_store_fault_is_an_audit_write_error_with_a_kind() -> None:
    kinds = {cls.kind for cls in (StoreUnavailable, StoreBusy, StoreCorrupt, StoreError)}
    assert kinds == {"unavailable", "busy", "corrupt", "error"}
    assert all(issubclass(cls, AuditWriteError) for cls in (StoreUnavailable, StoreBusy, StoreCorrupt))


async def test_a_corrupt_store_says_in_its_own_words_what_is_wrong(backend: Backend) -> None:
    backend.corrupt()
    with pytest.raises(StoreCorrupt) as opened:
        async with backend.open_log():
            pass
    assert opened.value.reason and opened.value.reason in str(opened.value)  # the CLI shows the reason alone
