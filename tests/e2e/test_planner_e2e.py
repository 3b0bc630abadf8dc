"""The demo plan through real MCP clients: a support agent previews and submits it, a manager approves
it from her own client, the agent collects the result; progress per step; a run killed mid-way is shown
as interrupted after a restart."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import types
from servers import IN_PROCESS, MODES, Servers, connector, real
from support import REPO, Connect, cli, make_plan_deployment

from gateway import Gateway
from gateway.config import load_config
from gateway.mcp_server import ERROR_META_KEY

pytestmark = pytest.mark.anyio
DEMO_PLAN = json.loads((REPO / "examples" / "plans" / "refund-and-notify.json").read_text())


def structured(result: types.CallToolResult) -> dict[str, Any]:
    assert result.structured_content is not None, result
    return result.structured_content


@pytest.mark.parametrize("mode", [*IN_PROCESS, *real("http-legacy", "http-auto")])
async def test_preview_approve_and_run_the_demo_plan(connect: Connect) -> None:
    async with connect("alice") as alice:
        preview = structured(await alice.call_tool("gateway.plan_preview", {"plan": DEMO_PLAN}))
        assert {s["id"]: s["decision"] for s in preview["steps"]} == {
            "find": "allow",
            "ticket": "allow",
            "refund": "approval_required",
            "notify": "allow",
        }
        assert preview["batches"] == [["find"], ["ticket", "refund"], ["notify"]]
        held = await alice.call_tool("gateway.plan_run", {"plan": DEMO_PLAN})
        assert held.meta is not None, held  # pending is not an error: the details say what happens next
        details = held.meta[ERROR_META_KEY]
        assert details["code"] == "approval_required" and details["approver_role"] == "role:manager"
        approval_id = details["approval_id"]
    async with connect("carol") as carol:
        pending = structured(await carol.call_tool("gateway.approvals_pending", {}))
        assert approval_id in [p["id"] for p in pending["pending"]]
        approved = await carol.call_tool("gateway.approve", {"approval_id": approval_id, "comment": "ok"})
        assert not approved.is_error, approved
    async with connect("alice") as alice:
        waited = structured(
            await alice.call_tool("gateway.approval_wait", {"approval_id": approval_id, "timeout_s": 20})
        )
        assert waited["status"] == "succeeded", waited
        report = waited["result"]["structured"]  # the executed call's result: the plan's report
        assert report["status"] == "succeeded" and report["approval_id"] == approval_id
        assert [s["status"] for s in report["steps"]] == ["succeeded"] * 4
        status = structured(await alice.call_tool("gateway.plan_status", {"run_id": report["run_id"]}))
        assert status["status"] == "succeeded" and len(status["steps"]) == 4


@pytest.mark.parametrize("mode", MODES)  # progress notifications on every real stream
async def test_a_plan_reports_progress_per_step(connect: Connect) -> None:
    document = {
        "goal": "look up a customer and open a ticket",
        "steps": [
            {"id": "find", "tool": "crm.find_customer", "arguments": {"query": "Hopper"}},
            {
                "id": "ticket",
                "tool": "tickets.create",
                "arguments": {
                    "customer_id": {"$ref": "find.result.customers[0].id"},
                    "subject": "Callback",
                    "body": "Please call the customer back.",
                },
            },
        ],
    }
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with connect("alice") as alice:
        result = await alice.call_tool("gateway.plan_run", {"plan": document}, progress_callback=on_progress)
    report = structured(result)
    assert report["status"] == "succeeded"
    assert report["steps"][1]["result"]["customer_id"] == "C002"  # the reference carried the id
    assert messages == ["step find: succeeded", "step ticket: succeeded"]


@pytest.mark.e2e
@pytest.mark.slow
def test_a_run_killed_mid_way_is_interrupted_after_a_restart(tmp_path: Path) -> None:
    config = make_plan_deployment(tmp_path / "d")
    plan_file = tmp_path / "slow.json"
    plan_file.write_text(
        json.dumps(
            {
                "goal": "a long step",
                "steps": [
                    {"id": "quick", "tool": "plab.act", "arguments": {"label": "q", "value": "small"}},
                    {
                        "id": "slow",
                        "tool": "plab.sleep",
                        "arguments": {"label": "s", "seconds": 60},
                        "after": ["quick"],
                    },
                ],
            }
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "plan", "run", str(plan_file), "--as", "alice", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    database = config.parent / "audit" / "audit.db"
    deadline = time.monotonic() + 30
    run_id = None
    while time.monotonic() < deadline and run_id is None:
        if database.exists():
            with sqlite3.connect(database) as db:
                row = (
                    db.execute("SELECT run_id FROM plan_steps WHERE step_id = 'slow' AND status = 'running'").fetchone()
                    if _has_table(db)
                    else None
                )
            run_id = row[0] if row else None
        time.sleep(0.1)
    assert run_id is not None, "the plan did not reach its slow step"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)

    async def restart() -> None:
        async with Gateway(load_config(config)):
            pass

    anyio.run(restart)
    shown = cli("plan", "status", run_id, "--config", str(config), "--json")
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["status"] == "interrupted"
    assert {s["step_id"]: s["status"] for s in record["steps"]} == {"quick": "succeeded", "slow": "interrupted"}
    verified = cli("audit", "verify", "--config", str(config))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _has_table(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE name = 'plan_steps'").fetchone() is not None


DRAFT = {
    "goal": "find Ada and open a ticket",
    "steps": [
        {"id": "find", "tool": "crm.find_customer", "arguments": {"query": "Lovelace"}},
        {
            "id": "ticket",
            "tool": "tickets.create",
            "arguments": {"customer_id": {"$ref": "find.result.customers[0].id"}, "subject": "Hi", "body": "Hello"},
        },
    ],
}


@pytest.mark.parametrize("mode", ["memory-legacy", *real("stdio-legacy", "http-legacy")])  # sampling: handshake era
async def test_a_draft_is_written_by_the_callers_model_validated_and_previewed_but_never_run(
    mode: str, e2e_config: Path, servers: Servers
) -> None:
    asked: list[str] = []

    async def model(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        prompt = params.messages[0].content
        assert isinstance(prompt, types.TextContent)
        asked.append(prompt.text)
        answer = "Here is the plan:\n" + json.dumps(DRAFT)
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=answer), model="m"
        )

    async with connector(e2e_config, mode, servers, sampling_callback=model)("alice") as alice:
        result = await alice.call_tool("gateway.plan_draft", {"request": "open a ticket for Ada"})
    body = structured(result)
    assert body["valid"] is True and body["draft"] == DRAFT
    assert [s["decision"] for s in body["preview"]["steps"]] == ["allow", "allow"]
    # the model was shown only the caller's tools, and never the planner's own
    assert "tickets.create" in asked[0] and "crm.delete_customer" not in asked[0] and "gateway.plan_run" not in asked[0]
    with sqlite3.connect(e2e_config.parent / "audit" / "audit.db") as db:
        ran = db.execute(
            "SELECT COUNT(*) FROM audit_log WHERE event = 'plan.started' AND json_extract(body, '$.detail.goal') = ?",
            (DRAFT["goal"],),
        ).fetchone()[0]
    assert ran == 0
