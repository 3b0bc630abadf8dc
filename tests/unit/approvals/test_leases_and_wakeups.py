"""Executing an approved request under a lease, and waking its waiters: what a requester and an operator notice.

A decision made in the gateway process wakes its queue worker and waiters at once (not at the next
poll); a request whose executor died is shown `interrupted`, with an audit record, and never run
again; a lease is renewed while a long call runs, so nobody takes it over; a broken store runs nothing.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from support import make_deployment

from gateway import Gateway, OutcomeCode
from gateway.approvals import ApprovalStatus
from gateway.approvals.service import ApprovalService
from gateway.approvals.sqlite_store import SqliteApprovalStore
from gateway.audit import AuditRecord
from gateway.config import load_config
from gateway.pipeline import Caller
from gateway.store.errors import StoreError
from gateway.store.owner import Owner

pytestmark = pytest.mark.anyio
ALICE = Caller(subject="alice", auth="test", transport="test")
CAROL = Caller(subject="carol", auth="test", transport="test")
BOB = Caller(subject="bob", auth="test", transport="test")
REFUND = {"customer_id": "C004", "amount": 500, "reason": "late delivery"}
HELD_TOOLS = '''
"""Test-only: a call that runs until the test lets it finish, and says so in a journal."""

import anyio

from gateway import ToolContext, tool


@tool(destructive=False)
async def until(name: str, *, ctx: ToolContext) -> str:
    """Wait until the file `name` exists in the deployment folder, then record that it ran."""
    with (ctx.root / "started.log").open("a") as started:
        started.write(name + "\\n")
    while not ctx.path(name).exists():
        await anyio.sleep(0.02)
    with (ctx.root / "ran.log").open("a") as ran:
        ran.write(name + "\\n")
    return "released"
'''
HELD_POLICY = "p, role:support, held.*, call, approve, approver role:manager\np, role:manager, held.*, approve, allow\n"


def held_deployment(tmp_path: Path, **approvals: Any) -> Path:
    config = make_deployment(
        tmp_path / "d", extra_policy=HELD_POLICY, changes={"approvals": approvals} if approvals else None
    )
    (config.parent / "tools" / "held.py").write_text(HELD_TOOLS)
    return config


def lines(config: Path, name: str) -> list[str]:
    path = config.parent / name
    return path.read_text().splitlines() if path.exists() else []


def refunds(config: Path) -> int:
    database = config.parent / "data" / "acme.db"
    if not database.exists():
        return 0
    with sqlite3.connect(database) as db:
        return int(db.execute("SELECT COUNT(*) FROM refunds").fetchone()[0])


def events(config: Path, event: str) -> list[dict[str, Any]]:
    with sqlite3.connect(config.parent / "audit" / "audit.db") as db:
        rows = db.execute("SELECT body FROM audit_log WHERE event = ? ORDER BY seq", (event,)).fetchall()
    return [json.loads(body) for (body,) in rows]


async def until_status(gateway: Gateway, request_id: str, *wanted: ApprovalStatus) -> Any:
    with anyio.fail_after(10):
        while (request := await gateway.approvals.get(request_id)) is None or request.status not in wanted:
            await anyio.sleep(0.02)
    return request


async def test_a_decision_in_the_same_process_runs_the_call_and_answers_its_waiter_without_waiting_for_a_poll(
    tmp_path: Path,
) -> None:
    config = make_deployment(tmp_path / "d", changes={"approvals": {"poll_seconds": 5}})
    async with Gateway(load_config(config)) as gateway:
        held = await gateway.call_tool(BOB, "payments.refund", REFUND)
        request_id = held.data["approval_id"]
        answers: list[Any] = []

        async def wait() -> None:
            answers.append(await gateway.approvals.wait(request_id, 20))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait)
            await anyio.sleep(0.1)  # the waiter is waiting (and the worker idle) before the decision
            started = anyio.current_time()
            await gateway.approvals.approve(request_id, CAROL, "checked")
        latency = anyio.current_time() - started
    (answer,) = answers
    assert answer.status is ApprovalStatus.SUCCEEDED
    assert latency < 2.5, f"{latency:.2f} s: the run and the answer waited for a 5 s poll"
    assert refunds(config) == 1


async def test_a_request_whose_executor_died_is_shown_interrupted_audited_and_never_run(tmp_path: Path) -> None:
    config = held_deployment(tmp_path)
    path = config.parent / "audit" / "audit.db"
    async with Gateway(load_config(config), mode="admin") as session:
        held = await session.call_tool(ALICE, "held.until", {"name": "go"})
        request_id = held.data["approval_id"]
        await session.approvals.approve(request_id, CAROL)
        # Another gateway claimed it 100 s ago (30 s lease), on another machine, and was never heard of again.
        long_ago = SqliteApprovalStore(path, clock=lambda: time.time() - 100)
        record = AuditRecord(event="approval.executing", approval_id=request_id, outcome="executing")
        await session.audit.append(record, [long_ago.claim(request_id, "elsewhere:4242:-:deadbeef")])

    (config.parent / "go").write_text("")  # were it ever run again, it would finish at once
    async with Gateway(load_config(config)) as server:
        request = await until_status(server, request_id, ApprovalStatus.INTERRUPTED)
        outcome = server.approvals.outcome_of(request)
        status = await server.call_tool(ALICE, "gateway.approval_status", {"approval_id": request_id})
        await anyio.sleep(0.3)  # several more queue passes
        assert (await server.approvals.get(request_id)).status is ApprovalStatus.INTERRUPTED
    assert lines(config, "started.log") == []  # never run, here or by the server
    (interrupted,) = events(config, "approval.interrupted")
    assert interrupted["approval_id"] == request_id
    assert interrupted["detail"]["owner"] == "elsewhere:4242:-:deadbeef"
    assert outcome.code is OutcomeCode.TOOL_FAILED and outcome.data["status"] == "interrupted"
    assert "interrupted" in outcome.message and "not run again" in outcome.message
    assert status.structured is not None and status.structured["status"] == "interrupted"


async def test_a_dead_executor_on_this_machine_is_seen_at_once_without_waiting_for_its_lease(tmp_path: Path) -> None:
    config = held_deployment(tmp_path)
    path = config.parent / "audit" / "audit.db"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = Owner.new().id.rsplit(":", 3)
    dead_owner = f"{dead[0]}:{finished.stdout.strip()}:{dead[2]}:{dead[3]}"  # this machine, a process that exited
    async with Gateway(load_config(config), mode="admin") as session:
        held = await session.call_tool(ALICE, "held.until", {"name": "go"})
        request_id = held.data["approval_id"]
        await session.approvals.approve(request_id, CAROL)
        record = AuditRecord(event="approval.executing", approval_id=request_id, outcome="executing")
        await session.audit.append(record, [SqliteApprovalStore(path).claim(request_id, dead_owner)])
    async with Gateway(load_config(config)) as server:
        request = await until_status(server, request_id, ApprovalStatus.INTERRUPTED)
    assert request.lease_expires_at > request.finished_at  # its 30 s lease had not run out
    assert events(config, "approval.interrupted")[0]["detail"]["owner_gone"] is True


async def test_a_gateway_that_stops_lets_the_approved_call_it_is_running_finish(tmp_path: Path) -> None:
    config = held_deployment(tmp_path)

    async def release() -> None:
        await anyio.sleep(0.5)
        (config.parent / "go").write_text("")

    async with anyio.create_task_group() as tasks, Gateway(load_config(config)) as server:
        held = await server.call_tool(ALICE, "held.until", {"name": "go"})
        request_id = held.data["approval_id"]
        await server.approvals.approve(request_id, CAROL)
        with anyio.fail_after(10):
            while not lines(config, "started.log"):
                await anyio.sleep(0.02)
        tasks.start_soon(release)
        # leaving this block stops the gateway while the call still runs
    async with Gateway(load_config(config), mode="admin") as session:
        done = await session.approvals.get(request_id)
    assert done is not None and done.status is ApprovalStatus.SUCCEEDED
    assert lines(config, "ran.log") == ["go"]


async def test_a_call_still_running_when_its_gateway_stops_is_interrupted_at_once_and_never_rerun(
    tmp_path: Path,
) -> None:
    config = held_deployment(tmp_path)
    path = config.parent / "audit" / "audit.db"
    async with Gateway(load_config(config), mode="admin") as session:
        held = await session.call_tool(ALICE, "held.until", {"name": "go"})
        request_id = held.data["approval_id"]
        await session.approvals.approve(request_id, CAROL)
        executor = ApprovalService(session, session, session.audit, SqliteApprovalStore(path))
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(executor.run_approved)
            with anyio.fail_after(10):
                while not lines(config, "started.log"):
                    await anyio.sleep(0.02)
            await executor.drain(0.2)  # the call does not finish in time
            tasks.cancel_scope.cancel()  # the gateway stops
        stopped = await session.approvals.get(request_id)
    assert stopped is not None and stopped.status is ApprovalStatus.INTERRUPTED
    assert stopped.status_reason is not None and "not run again" in stopped.status_reason
    assert events(config, "approval.interrupted")[0]["detail"]["owner"] == executor.owner

    (config.parent / "go").write_text("")
    async with Gateway(load_config(config)) as server:
        await anyio.sleep(0.3)  # several queue passes: it must not run again
        assert (await server.approvals.get(request_id)).status is ApprovalStatus.INTERRUPTED
    assert lines(config, "started.log") == ["go"] and lines(config, "ran.log") == []


async def test_the_lease_is_renewed_while_a_long_call_runs_so_no_other_process_takes_it_over(tmp_path: Path) -> None:
    config = held_deployment(tmp_path, poll_seconds=0.05)
    path = config.parent / "audit" / "audit.db"
    async with Gateway(load_config(config), mode="admin") as gateway:
        held = await gateway.call_tool(ALICE, "held.until", {"name": "go"})
        request_id = held.data["approval_id"]
        await gateway.approvals.approve(request_id, CAROL)
        # Two executors with a 0.3 s lease, as two processes would be: one runs the call for 1.5 s
        # while the other sweeps the queue all along.
        running = ApprovalService(gateway, gateway, gateway.audit, SqliteApprovalStore(path, 0.3), "one:1:-:a")
        other = ApprovalService(gateway, gateway, gateway.audit, SqliteApprovalStore(path, 0.3), "two:2:-:b")

        async def sweep_until_done() -> None:
            while not (await other.get(request_id)).terminal:
                await other.sweep()
                await other.run_approved()
                await anyio.sleep(0.05)

        async def release() -> None:
            await anyio.sleep(1.5)
            (config.parent / "go").write_text("")

        with anyio.fail_after(15):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(running.run_approved)
                tasks.start_soon(sweep_until_done)
                tasks.start_soon(release)
        done = await gateway.approvals.get(request_id)
    assert done is not None and done.status is ApprovalStatus.SUCCEEDED
    assert done.lease_owner == "one:1:-:a"
    assert lines(config, "ran.log") == ["go"]
    assert events(config, "approval.interrupted") == []
    assert len(events(config, "approval.executing")) == 1


async def test_with_a_broken_store_nothing_is_claimed_or_run(tmp_path: Path) -> None:
    config = make_deployment(tmp_path / "d")
    async with Gateway(load_config(config), mode="admin") as gateway:
        held = await gateway.call_tool(BOB, "payments.refund", REFUND)
        await gateway.approvals.approve(held.data["approval_id"], CAROL)
        broken = tmp_path / "broken.db"
        broken.write_bytes(b"not a database at all" * 200)
        service = ApprovalService(gateway, gateway, gateway.audit, SqliteApprovalStore(broken))
        with pytest.raises(StoreError):
            await service.run_approved()
        with pytest.raises(StoreError):
            await service.sweep()
    assert refunds(config) == 0
    assert events(config, "approval.executing") == []
