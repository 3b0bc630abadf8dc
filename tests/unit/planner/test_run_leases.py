"""A plan run is held under its process's lease: taken over only once the lease ran out, and a run that
stops early or is taken over says so in the log instead of failing without an end."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from support import make_deployment

from gateway import Gateway
from gateway.audit import AuditRecord
from gateway.calls import Caller
from gateway.config import load_config
from gateway.planner import Plan, RunReport
from gateway.planner.service import PlannerService
from gateway.store.owner import Owner
from gateway.store.sqlite.plan_runs import SQLitePlanRuns

pytestmark = pytest.mark.anyio
ALICE = Caller(subject="alice", auth="test", transport="test")
HELD_TOOLS = '''
"""Test-only: a step that runs until the test lets it finish."""

import anyio

from gateway import ToolContext, tool


@tool(read_only=True)
async def until(name: str, *, ctx: ToolContext) -> str:
    """Wait until the file `name` exists in the deployment folder."""
    while not ctx.path(name).exists():
        await anyio.sleep(0.02)
    return "released"
'''
PLAN = Plan.model_validate(
    {"version": 1, "goal": "wait", "steps": [{"id": "w", "tool": "held.until", "arguments": {"name": "go"}}]}
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    config = make_deployment(tmp_path / "d", extra_policy="p, role:support, held.*, call, allow\n")
    (config.parent / "tools" / "held.py").write_text(HELD_TOOLS)
    async with Gateway(load_config(config), mode="admin") as running:
        yield running


def records(gateway: Gateway, event: str) -> list[dict[str, Any]]:
    with sqlite3.connect(gateway.audit.path) as db:
        rows = db.execute("SELECT body FROM audit_log WHERE event = ? ORDER BY seq", (event,)).fetchall()
    return [json.loads(body) for (body,) in rows]


async def until_started(gateway: Gateway) -> str:
    with anyio.fail_after(10):
        while not (started := records(gateway, "plan.started")):
            await anyio.sleep(0.02)
    return str(started[0]["plan_run_id"])


def planner(gateway: Gateway, runs: SQLitePlanRuns, owner: Owner) -> PlannerService:
    return PlannerService(gateway, gateway, gateway.audit, runs, owner)


async def test_a_run_taken_over_after_its_lease_ran_out_records_its_end_and_leaves_the_state_alone(
    gateway: Gateway,
) -> None:
    clock = Clock()
    runs = SQLitePlanRuns(gateway.audit.path, lease_seconds=30, clock=clock)
    mine, other = planner(gateway, runs, Owner.new()), planner(gateway, runs, Owner("elsewhere:1:-:0"))
    reports: list[RunReport] = []
    async with anyio.create_task_group() as tasks:

        async def run() -> None:
            reports.append(await mine.run(PLAN, ALICE))

        tasks.start_soon(run)
        run_id = await until_started(gateway)
        assert await other.interrupt_expired() == []  # alive: never taken
        clock.now += 31  # this process stalled past its lease (its renewal is real time away)
        assert await other.interrupt_expired() == [run_id]
        (gateway.config.root / "go").write_text("")
    (report,) = reports
    assert report.status == "interrupted"
    record = await mine.record(run_id)
    assert record is not None and record.status == "interrupted"
    (finished,) = records(gateway, "plan.finished")
    assert finished["detail"]["status"] == "interrupted" and "unchanged" in finished["detail"]["state"]
    assert len(records(gateway, "plan.interrupted")) == 1


async def test_a_run_stopped_before_it_finished_is_interrupted_at_once(gateway: Gateway) -> None:
    runs = SQLitePlanRuns(gateway.audit.path)
    mine = planner(gateway, runs, Owner.new())
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(mine.run, PLAN, ALICE)
        run_id = await until_started(gateway)
        tasks.cancel_scope.cancel()  # the gateway stops, or the caller goes away
    record = await mine.record(run_id)
    assert record is not None and record.status == "interrupted"
    assert [s.status for s in record.steps] == ["interrupted"]
    (interrupted,) = records(gateway, "plan.interrupted")
    assert interrupted["plan_run_id"] == run_id and interrupted["detail"]["runs"] == [run_id]


async def test_a_serving_gateway_s_pass_marks_a_run_nobody_renews_without_a_restart(gateway: Gateway) -> None:
    clock = Clock()
    runs = SQLitePlanRuns(gateway.audit.path, lease_seconds=0.3, clock=clock)
    watcher = planner(gateway, runs, Owner.new())
    start = runs.start(
        "orphan",
        owner="elsewhere:1:-:0",
        subject="alice",
        tenant=None,
        session=None,
        plan=PLAN.model_dump(mode="json"),
        plan_hash=PLAN.hash,
        approval_id=None,
    )
    await gateway.audit.append(AuditRecord(event="plan.started", plan_run_id="orphan"), [start])
    clock.now += 1  # its owner, on another machine, went quiet
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watcher.watch_leases)
        with anyio.fail_after(5):
            while (run := await runs.get("orphan")) is not None and run.status == "running":
                await anyio.sleep(0.02)
        tasks.cancel_scope.cancel()
    assert run is not None and run.status == "interrupted"
    (interrupted,) = records(gateway, "plan.interrupted")
    assert interrupted["detail"]["runs"] == ["orphan"]
