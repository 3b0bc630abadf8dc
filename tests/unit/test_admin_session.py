"""A CLI command is an administrative session: it runs its own calls, never the work a server does for others.

No approval-queue worker (a `plan run` never executes another user's approved request), and no
pass marking other processes' plan runs as interrupted. A serving gateway on the same database
does both, which is what shows the checks below could fail.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
from support import make_deployment, portcullis

from gateway import Gateway, OutcomeCode
from gateway.approvals import ApprovalStatus
from gateway.config import load_config
from gateway.pipeline import Caller

pytestmark = pytest.mark.anyio
BOB = Caller(subject="bob", auth="test", transport="test")
CAROL = Caller(subject="carol", auth="test", transport="test")
ALICE = Caller(subject="alice", auth="test", transport="test")
REFUND = {"customer_id": "C004", "amount": 500, "reason": "late delivery"}

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


def refunds(config: Path) -> list[tuple[str, str]]:
    """The demo payments tool's side effect: one row per refund written to data/acme.db."""
    database = config.parent / "data" / "acme.db"
    if not database.exists():
        return []
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT customer_id, issued_by FROM refunds").fetchall()
    return [(str(customer), str(issuer)) for customer, issuer in rows]


def events(config: Path, event: str) -> list[dict[str, Any]]:
    with sqlite3.connect(config.parent / "audit" / "audit.db") as db:
        rows = db.execute("SELECT body FROM audit_log WHERE event = ? ORDER BY seq", (event,)).fetchall()
    return [json.loads(body) for (body,) in rows]


async def approved_refund(config: Path) -> str:
    """Bob's refund, approved by carol in an administrative session: waiting for a server to run it."""
    async with Gateway(load_config(config), mode="admin") as session:
        held = await session.call_tool(BOB, "payments.refund", REFUND)
        assert held.code is OutcomeCode.APPROVAL_REQUIRED
        decided = await session.approvals.approve(held.data["approval_id"], CAROL, "checked")
    assert decided.status is ApprovalStatus.APPROVED
    return decided.id


async def test_a_cli_plan_run_runs_its_own_plan_and_never_another_users_approved_request(tmp_path: Path) -> None:
    config = make_deployment(tmp_path / "d")
    request_id = await approved_refund(config)
    plan = tmp_path / "plan.json"
    step = {"id": "find", "tool": "crm.find_customer", "arguments": {"query": "Lovelace"}}
    plan.write_text(json.dumps({"version": 1, "goal": "look up a customer", "steps": [step]}))

    ran = await anyio.to_thread.run_sync(
        lambda: portcullis("plan", "run", str(plan), "--as", "alice", "--config", str(config), "--json")
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["structured"]["status"] == "succeeded"  # its own plan ran

    async with Gateway(load_config(config), mode="admin") as session:
        left = await session.approvals.get(request_id)
    assert left is not None and left.status is ApprovalStatus.APPROVED  # bob's request was not touched
    assert events(config, "approval.executing") == []
    assert refunds(config) == []

    async with Gateway(load_config(config)) as server:  # a serving gateway is the one that runs it
        with anyio.fail_after(15):
            while not (request := await server.approvals.get(request_id)) or not request.terminal:
                await anyio.sleep(0.05)
    assert request.status is ApprovalStatus.SUCCEEDED
    assert refunds(config) == [("C004", "bob")]


async def test_an_admin_session_leaves_another_process_plan_run_running(tmp_path: Path) -> None:
    config = make_deployment(tmp_path / "d", extra_policy="p, role:support, held.*, call, allow\n")
    (config.parent / "tools" / "held.py").write_text(HELD_TOOLS)
    plan = {"version": 1, "goal": "wait", "steps": [{"id": "w", "tool": "held.until", "arguments": {"name": "go"}}]}
    async with Gateway(load_config(config)) as server, anyio.create_task_group() as tasks:
        outcomes: list[Any] = []

        async def run_plan() -> None:
            outcomes.append(await server.call_tool(ALICE, "gateway.plan_run", {"plan": plan}))

        tasks.start_soon(run_plan)
        with anyio.fail_after(10):
            while not events(config, "plan.started"):
                await anyio.sleep(0.02)

        async with Gateway(load_config(config), mode="admin"):
            pass  # a CLI command's whole session, while the server's plan runs

        (config.parent / "go").write_text("")
    (outcome,) = outcomes
    assert outcome.code is OutcomeCode.OK
    assert outcome.structured["status"] == "succeeded"
    assert events(config, "plan.interrupted") == []
    assert [e["detail"]["status"] for e in events(config, "plan.finished")] == ["succeeded"]
