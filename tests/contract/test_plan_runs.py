"""The plan-run store's contract: compare-and-swap transitions, leases that only run out, exactly once.

Every transition commits with its audit record through the audit log of the same backend; a
stale one writes neither. The store's clock is the test's, so a lease runs out when the test
moves time on, never after a sleep.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from contract_support import Backend, Clock, Verified

from gateway.audit import AuditRecord
from gateway.store.errors import StaleState
from gateway.store.plan_runs import StepRecord
from gateway.store.protocols import AuditLog, PlanRunStore

pytestmark = pytest.mark.anyio
PLAN = {"goal": "two steps", "steps": [{"id": "a", "tool": "t.a"}, {"id": "b", "tool": "t.b"}]}
LEASE = 30.0


async def started(log: AuditLog, runs: PlanRunStore, run_id: str, owner: str) -> None:
    change = runs.start(
        run_id, owner=owner, subject="alice", tenant="acme", session="s1", plan=PLAN, plan_hash="h", approval_id=None
    )
    await log.append(AuditRecord(event="plan.started", plan_run_id=run_id), [change])


def events(bodies: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [body for body in bodies if body["event"] == event]


async def test_a_started_run_reads_back_running_under_its_owner_with_its_steps_pending(
    backend: Backend, clock: Clock
) -> None:
    runs = backend.plan_runs(clock, LEASE)
    async with backend.open_log() as log:
        await started(log, runs, "r1", "owner-a")
        run = await runs.get("r1")
        leases = await runs.running()
    assert run is not None
    assert (run.status, run.subject, run.tenant, run.session, run.goal) == (
        "running",
        "alice",
        "acme",
        "s1",
        "two steps",
    )
    assert [(s.step_id, s.status) for s in run.steps] == [("a", "pending"), ("b", "pending")]
    assert run.lease_owner == "owner-a"
    assert [(lease.run_id, lease.owner) for lease in leases] == [("r1", "owner-a")]
    assert await runs.get("nope") is None


async def test_steps_and_finish_move_the_run_and_commit_with_their_records(
    backend: Backend, clock: Clock, verified: Verified
) -> None:
    runs = backend.plan_runs(clock, LEASE)
    async with backend.open_log() as log:
        await started(log, runs, "r1", "owner-a")
        step = StepRecord(step_id="a", tool="t.a", status="succeeded", attempts=1, outcome="ok", audit_id=7)
        await log.append(AuditRecord(event="plan.step"), [runs.step("r1", step, "owner-a")])
        await log.append(AuditRecord(event="plan.finished"), [runs.finish("r1", "failed", {"why": "b"}, "owner-a")])
        run = await runs.get("r1")
        bodies = await verified(log)
    assert run is not None and run.status == "failed" and run.result == {"why": "b"}
    assert [(s.step_id, s.status, s.audit_id) for s in run.steps] == [("a", "succeeded", 7), ("b", "pending", None)]
    assert [body["event"] for body in bodies] == ["plan.started", "plan.step", "plan.finished"]
    assert await runs.running() == []


async def test_a_stale_transition_writes_neither_its_change_nor_its_record(
    backend: Backend, clock: Clock, verified: Verified
) -> None:
    runs = backend.plan_runs(clock, LEASE)
    async with backend.open_log() as log:
        await started(log, runs, "r1", "owner-a")
        head = await log.head()
        step = StepRecord(step_id="a", tool="t.a", status="succeeded")
        for stale in (
            runs.step("r1", step, "owner-b"),  # not its owner
            runs.finish("r1", "succeeded", {}, "owner-b"),
            runs.renew("owner-b", "r1"),
            runs.finish("no-such-run", "succeeded", {}, "owner-a"),
        ):
            with pytest.raises(StaleState):
                await log.append(AuditRecord(event="plan.step"), [stale])
        await log.append(AuditRecord(event="plan.finished"), [runs.finish("r1", "succeeded", {}, "owner-a")])
        with pytest.raises(StaleState):  # finished already: a second finish is stale too
            await log.append(AuditRecord(event="plan.finished"), [runs.finish("r1", "failed", {}, "owner-a")])
        with pytest.raises(StaleState):
            await log.append(AuditRecord(event="plan.step"), [runs.step("r1", step, "owner-a")])
        run = await runs.get("r1")
        bodies = await verified(log)
    assert head[0] == 1
    assert [body["event"] for body in bodies] == ["plan.started", "plan.finished"]
    assert run is not None and run.status == "succeeded"
    assert [s.status for s in run.steps] == ["pending", "pending"]


async def test_of_many_processes_finishing_one_run_at_once_exactly_one_does(
    backend: Backend, clock: Clock, verified: Verified
) -> None:
    runs = backend.plan_runs(clock, LEASE)
    won: list[str] = []
    lost: list[str] = []
    async with backend.open_log() as first, backend.open_log() as second:
        await started(first, runs, "r1", "owner-a")

        async def finish(log: AuditLog, name: str) -> None:
            record = AuditRecord(event="plan.finished", detail={"by": name})
            try:
                await log.append(record, [runs.finish("r1", "succeeded", {"by": name}, "owner-a")])
            except StaleState:
                lost.append(name)
            else:
                won.append(name)

        async with anyio.create_task_group() as tasks:
            for i in range(24):
                tasks.start_soon(finish, (first, second)[i % 2], f"f{i}")
        run = await runs.get("r1")
        bodies = await verified(first)
    assert len(won) == 1 and len(lost) == 23
    assert [body["detail"]["by"] for body in events(bodies, "plan.finished")] == won
    assert run is not None and run.result == {"by": won[0]}


async def test_a_live_lease_is_never_taken_over(backend: Backend, clock: Clock, verified: Verified) -> None:
    runs = backend.plan_runs(clock, LEASE)
    async with backend.open_log() as log:
        await started(log, runs, "r1", "owner-a")
        clock.advance(LEASE * 0.9)
        assert await runs.expired() == []
        with pytest.raises(StaleState):  # even when asked by id: the store checks the lease itself
            await log.append(AuditRecord(event="plan.interrupted"), [runs.interrupt(["r1"])])
        await log.write([runs.renew("owner-a", "r1")])  # its owner renews it...
        clock.advance(LEASE * 0.9)  # ...so it is alive past its first expiry
        assert await runs.expired() == []
        run = await runs.get("r1")
        bodies = await verified(log)
    assert run is not None and run.status == "running"
    assert events(bodies, "plan.interrupted") == []


async def test_a_run_whose_lease_ran_out_is_interrupted_once_with_its_unfinished_steps(
    backend: Backend, clock: Clock, verified: Verified
) -> None:
    runs = backend.plan_runs(clock, LEASE)
    async with backend.open_log() as first, backend.open_log() as second:
        await started(first, runs, "r1", "owner-a")
        await started(first, runs, "r2", "owner-b")
        done = StepRecord(step_id="a", tool="t.a", status="succeeded")
        await first.append(AuditRecord(event="plan.step"), [runs.step("r1", done, "owner-a")])
        running = StepRecord(step_id="b", tool="t.b", status="running")
        await first.append(AuditRecord(event="plan.step"), [runs.step("r1", running, "owner-a")])
        clock.advance(LEASE / 2)
        await first.write([runs.renew("owner-b")])  # owner-b is alive; owner-a went quiet
        clock.advance(LEASE / 2 + 1)
        expired = await runs.expired()
        assert expired == ["r1"]
        outcomes: list[str] = []

        async def sweep(log: AuditLog) -> None:
            try:
                await log.append(
                    AuditRecord(event="plan.interrupted", detail={"runs": expired}), [runs.interrupt(expired)]
                )
                outcomes.append("marked")
            except StaleState:
                outcomes.append("stale")

        async with anyio.create_task_group() as tasks:  # two gateways sweep at once
            for log in (first, second, first, second):
                tasks.start_soon(sweep, log)
        r1, r2 = await runs.get("r1"), await runs.get("r2")
        bodies = await verified(first)
        with pytest.raises(StaleState):  # its owner comes back: the run is no longer its to finish
            await first.append(AuditRecord(event="plan.finished"), [runs.finish("r1", "succeeded", {}, "owner-a")])
    assert sorted(outcomes) == ["marked", "stale", "stale", "stale"]
    assert len(events(bodies, "plan.interrupted")) == 1
    assert r1 is not None and r1.status == "interrupted"
    assert [(s.step_id, s.status) for s in r1.steps] == [("a", "succeeded"), ("b", "interrupted")]
    assert r2 is not None and r2.status == "running"


async def test_a_run_whose_owner_is_known_to_be_gone_is_taken_before_its_lease_runs_out(
    backend: Backend, clock: Clock
) -> None:
    runs = backend.plan_runs(clock, LEASE)
    async with backend.open_log() as log:
        await started(log, runs, "r1", "dead-owner")
        await started(log, runs, "r2", "live-owner")
        assert await runs.expired() == []
        assert await runs.expired(gone=["dead-owner"]) == ["r1"]
        await log.append(AuditRecord(event="plan.interrupted"), [runs.interrupt(["r1"], gone=["dead-owner"])])
        with pytest.raises(StaleState):  # a live owner named as gone by nobody: its run stays
            await log.append(AuditRecord(event="plan.interrupted"), [runs.interrupt(["r2"], gone=["dead-owner"])])
        statuses = [(await runs.get(run_id)) for run_id in ("r1", "r2")]
    assert [run.status if run else None for run in statuses] == ["interrupted", "running"]


async def test_an_owner_gives_up_its_own_run_at_once_and_its_unfinished_steps_with_it(
    backend: Backend, clock: Clock
) -> None:
    runs = backend.plan_runs(clock, LEASE)
    async with backend.open_log() as log:
        await started(log, runs, "r1", "owner-a")
        change = runs.finish("r1", "interrupted", {"reason": "stopped"}, "owner-a")
        await log.append(AuditRecord(event="plan.interrupted"), [change])
        run = await runs.get("r1")
    assert run is not None and run.status == "interrupted"
    assert [s.status for s in run.steps] == ["interrupted", "interrupted"]
