"""The audit log's contract: one chain, whoever appends, and changes that commit with their record or not at all."""

from __future__ import annotations

import anyio
import pytest
from contract_support import Backend, Clock, Verified

from gateway.audit import AuditRecord
from gateway.store.changes import Change, Statement
from gateway.store.protocols import AuditLog

pytestmark = pytest.mark.anyio


async def test_records_get_consecutive_numbers_and_each_links_to_the_one_before(
    backend: Backend, verified: Verified
) -> None:
    async with backend.open_log() as log:
        assert await log.head() == (0, "0" * 64)
        seqs = [await log.append(AuditRecord(event="tool.call", subject=f"user{i}")) for i in range(5)]
        assert seqs == [1, 2, 3, 4, 5]
        bodies = await verified(log)
    assert [body["subject"] for body in bodies] == [f"user{i}" for i in range(5)]


async def test_the_chain_is_read_in_pages_after_a_sequence_number(backend: Backend) -> None:
    async with backend.open_log() as log:
        for i in range(6):
            await log.append(AuditRecord(event=f"e{i}"))
        page = await log.chain(after=2, limit=2)
    assert [entry.seq for entry in page] == [3, 4]
    assert page[1].prev_hash == page[0].hash


async def test_writers_in_several_processes_extend_one_chain_and_each_record_lands_once(
    backend: Backend, verified: Verified
) -> None:
    seqs: list[int] = []
    async with backend.open_log() as first, backend.open_log() as second, backend.open_log() as third:

        async def write(log: AuditLog, name: str, count: int) -> None:
            for i in range(count):
                seqs.append(await log.append(AuditRecord(event="tool.call", subject=f"{name}-{i}")))

        async with anyio.create_task_group() as tasks:
            for name, log in (("a", first), ("b", second), ("c", third)):
                for task in range(10):
                    tasks.start_soon(write, log, f"{name}{task}", 10)
        bodies = await verified(first)
    assert sorted(seqs) == list(range(1, 301))
    assert len({body["subject"] for body in bodies}) == 300


async def test_state_without_history_commits_and_leaves_the_chain_alone(
    backend: Backend, clock: Clock, verified: Verified
) -> None:
    runs = backend.plan_runs(clock)
    plan = {"goal": "g", "steps": [{"id": "s", "tool": "t"}]}
    async with backend.open_log() as log:
        start = runs.start(
            "r1", owner="o1", subject="alice", tenant=None, session=None, plan=plan, plan_hash="h", approval_id=None
        )
        await log.append(AuditRecord(event="plan.started"), [start])
        before = (await runs.get("r1"), await log.head())
        clock.advance(20)
        await log.write([runs.renew("o1", "r1")])
        after = (await runs.get("r1"), await log.head())
        assert len(await verified(log)) == 1
    assert before[1] == after[1]
    assert before[0] is not None and after[0] is not None
    assert (after[0].lease_expires_at or "") > (before[0].lease_expires_at or "")


async def test_a_change_built_for_another_backend_is_refused_before_anything_is_written(backend: Backend) -> None:
    foreign = Change.of("elsewhere", "a write for another database", Statement("DELETE FROM everything"))
    async with backend.open_log() as log:
        with pytest.raises(TypeError):
            await log.append(AuditRecord(event="x"), [foreign])
        assert await log.head() == (0, "0" * 64)
