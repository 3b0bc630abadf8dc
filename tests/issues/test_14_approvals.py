"""Issue 14, the approvals a new operator tripped over.

Item 3: the requester sees why a request was denied (from the CLI or through MCP), in
`gateway.approval_status`, `gateway.approval_wait` and the refusal itself. Item 12: the demo's
second admin approves erin's deletion, and a request can be cancelled (by its requester or one who
may decide it; audited; it never runs). Item 8: approval wording ("ran and succeeded", the pending
message once) and `approvals show` (one value column, a plan's arguments pretty-printed).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
from support import REPO, make_deployment, portcullis

from gateway import Gateway, OutcomeCode
from gateway.approvals import ApprovalStatus
from gateway.config import load_config
from gateway.mcp_server import to_call_result
from gateway.pipeline import Caller

pytestmark = pytest.mark.anyio
REFUND = {"customer_id": "C004", "amount": 500, "reason": "late delivery"}


def who(subject: str) -> Caller:
    return Caller(subject=subject, auth="test", transport="test")


async def cli(*args: str) -> tuple[int, str, str]:
    done = await anyio.to_thread.run_sync(lambda: portcullis(*args))
    return done.returncode, done.stdout, done.stderr


async def requested(config: Path, subject: str, tool: str, arguments: dict[str, Any]) -> str:
    async with Gateway(load_config(config), mode="admin") as session:
        held = await session.call_tool(who(subject), tool, arguments)
    assert held.code is OutcomeCode.APPROVAL_REQUIRED, held
    return str(held.data["approval_id"])


def text(outcome: Any) -> str:
    return " ".join(block.get("text", "") for block in outcome.content)


def events(config: Path, event: str) -> list[dict[str, Any]]:
    with sqlite3.connect(config.parent / "audit" / "audit.db") as db:
        rows = db.execute("SELECT body FROM audit_log WHERE event = ? ORDER BY seq", (event,)).fetchall()
    return [json.loads(body) for (body,) in rows]


def refunds(config: Path) -> int:
    database = config.parent / "data" / "acme.db"
    if not database.exists():
        return 0
    with sqlite3.connect(database) as db:
        return int(db.execute("SELECT COUNT(*) FROM refunds").fetchone()[0])


async def run_the_queue(config: Path, request_id: str) -> Any:
    """A serving gateway's queue passes over the request; where it ends up."""
    async with Gateway(load_config(config)) as server:
        await server.approvals.run_approved()
        # the gateway's own worker may have claimed it first: wait for whichever runs it to finish
        return await server.approvals.wait(request_id, 30)


# --- item 3: the denial's reason reaches the requester -----------------------------------


async def test_a_denial_from_the_cli_shows_its_reason_in_approval_status_and_approval_wait(tmp_path: Path) -> None:
    config = make_deployment(tmp_path / "d")
    request_id = await requested(config, "bob", "payments.refund", REFUND)
    code, _, err = await cli(
        "approvals", "deny", request_id, "--as", "carol", "--reason", "duplicate claim", "--config", str(config)
    )
    assert code == 0, err
    async with Gateway(load_config(config), mode="admin") as session:
        status = await session.call_tool(who("bob"), "gateway.approval_status", {"approval_id": request_id})
        waited = await session.call_tool(
            who("bob"), "gateway.approval_wait", {"approval_id": request_id, "timeout_s": 0}
        )
    for outcome in (status, waited):
        assert outcome.code is OutcomeCode.OK
        assert outcome.structured is not None
        assert (outcome.structured["status"], outcome.structured["reason"]) == ("denied", "duplicate claim")
        assert "denied" in text(outcome) and "duplicate claim" in text(outcome)


async def test_a_denial_through_mcp_reaches_the_waiting_call_as_a_refusal_with_its_reason(tmp_path: Path) -> None:
    config = make_deployment(tmp_path / "d", changes={"approvals": {"wait_seconds": 20}})
    answers: list[Any] = []
    async with Gateway(load_config(config)) as gateway, anyio.create_task_group() as tasks:

        async def request() -> None:
            answers.append(await gateway.call_tool(who("bob"), "payments.refund", REFUND))

        tasks.start_soon(request)
        with anyio.fail_after(10):
            while not (pending := await gateway.approvals.by_status(ApprovalStatus.PENDING)):
                await anyio.sleep(0.02)
        denied = await gateway.call_tool(
            who("carol"), "gateway.deny", {"approval_id": pending[0].id, "reason": "over the monthly limit"}
        )
        assert denied.code is OutcomeCode.OK and "was denied: over the monthly limit" in text(denied)
    (answer,) = answers
    assert answer.code is OutcomeCode.APPROVAL_DENIED
    assert "over the monthly limit" in answer.message
    result = to_call_result(answer)
    assert result.is_error
    assert "over the monthly limit" in result.content[0].text  # type: ignore[union-attr]
    assert result.meta is not None and result.meta["portcullis/error"]["reason"] == "over the monthly limit"
    assert refunds(config) == 0


# --- item 12: a second admin, and cancelling ---------------------------------------------------


async def test_the_demo_has_a_second_admin_who_approves_erins_deletion(tmp_path: Path) -> None:
    config = make_deployment(tmp_path / "d")
    request_id = await requested(config, "erin", "crm.delete_customer", {"customer_id": "C002"})
    code, out, err = await cli("approvals", "approve", request_id, "--as", "heidi", "--config", str(config))
    assert code == 0, err
    assert "approved" in out
    done = await run_the_queue(config, request_id)
    assert done.status is ApprovalStatus.SUCCEEDED
    assert done.result["structured"] == {"deleted": True, "customer_id": "C002"}  # the tool's own answer
    keys = (REPO / "portcullis.yaml").read_text()
    assert "subject: heidi" in keys and "demo-heidi" in keys  # heidi can connect over HTTP like the others
    assert "| heidi | admin |" in (REPO / "README.md").read_text()


async def test_the_requester_cancels_from_the_cli_with_a_reason_and_it_never_runs(tmp_path: Path) -> None:
    config = make_deployment(tmp_path / "d")
    request_id = await requested(config, "erin", "crm.delete_customer", {"customer_id": "C002"})
    refused = await cli("approvals", "cancel", request_id, "--as", "alice", "--config", str(config))
    assert refused[0] == 1 and "not_allowed" in refused[2]
    code, out, err = await cli(
        "approvals", "cancel", request_id, "--as", "erin", "--reason", "wrong customer", "--config", str(config)
    )
    assert code == 0, err
    assert "was cancelled" in out and "wrong customer" in out
    code, _, err = await cli("approvals", "approve", request_id, "--as", "heidi", "--config", str(config))
    assert code == 1 and "not_pending" in err
    done = await run_the_queue(config, request_id)
    assert done.status is ApprovalStatus.CANCELLED and done.result is None
    assert events(config, "approval.executing") == []  # never claimed, never run
    (record,) = events(config, "approval.cancelled")
    assert (record["subject"], record["approval_id"], record["message"]) == ("erin", request_id, "wrong customer")
    async with Gateway(load_config(config), mode="admin") as session:
        status = await session.call_tool(who("erin"), "gateway.approval_status", {"approval_id": request_id})
    assert status.structured is not None and status.structured["status"] == "cancelled"
    assert "wrong customer" in status.structured["reason"]


async def test_an_approved_request_is_cancelled_through_mcp_before_it_runs(tmp_path: Path) -> None:
    config = make_deployment(tmp_path / "d")
    request_id = await requested(config, "bob", "payments.refund", REFUND)
    async with Gateway(load_config(config), mode="admin") as session:
        await session.approvals.approve(request_id, who("carol"))
        hidden = await session.call_tool(who("heidi"), "gateway.approval_cancel", {"approval_id": request_id})
        cancelled = await session.call_tool(
            who("bob"), "gateway.approval_cancel", {"approval_id": request_id, "reason": "paid by card instead"}
        )
    assert hidden.code is OutcomeCode.TOOL_FAILED and "no approval request" in text(hidden)
    assert cancelled.code is OutcomeCode.OK
    assert cancelled.structured is not None and cancelled.structured["status"] == "cancelled"
    done = await run_the_queue(config, request_id)
    assert done.status is ApprovalStatus.CANCELLED
    assert refunds(config) == 0


async def test_a_request_that_ran_cannot_be_cancelled(tmp_path: Path) -> None:
    config = make_deployment(tmp_path / "d")
    request_id = await requested(config, "bob", "payments.refund", REFUND)
    async with Gateway(load_config(config)) as server:
        await server.approvals.approve(request_id, who("carol"))
        done = await server.approvals.wait(request_id, 10)
    assert done is not None and done.status is ApprovalStatus.SUCCEEDED
    code, _, err = await cli("approvals", "cancel", request_id, "--as", "bob", "--config", str(config))
    assert code == 1 and "not_pending" in err and "can no longer be cancelled" in err
    assert refunds(config) == 1


# --- item 8: wording and `approvals show` --------------------------------------------------------


async def test_approval_status_says_ran_and_succeeded_and_says_pending_once(tmp_path: Path) -> None:
    config = make_deployment(tmp_path / "d")
    request_id = await requested(config, "bob", "payments.refund", REFUND)
    async with Gateway(load_config(config)) as server:
        pending = await server.call_tool(who("bob"), "gateway.approval_status", {"approval_id": request_id})
        await server.approvals.approve(request_id, who("carol"))
        await server.approvals.wait(request_id, 10)
        succeeded = await server.call_tool(who("bob"), "gateway.approval_status", {"approval_id": request_id})
    said = text(pending)
    assert said.count(request_id) == 1 and said.count("pending") == 1, said
    assert "gateway.approval_wait" in said
    assert "is succeeded" not in text(succeeded) and f"request {request_id} ran and succeeded" in text(succeeded)


def test_approvals_show_prints_one_value_column_and_a_plans_steps_on_their_own_lines(tmp_path: Path) -> None:
    config = make_deployment(tmp_path / "d")
    plan = json.loads((REPO / "examples" / "plans" / "refund-and-notify.json").read_text())
    request_id = anyio.run(requested, config, "alice", "gateway.plan_run", {"plan": plan})
    shown = portcullis("approvals", "show", request_id, "--config", str(config))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    labelled = [line for line in lines if line[:1] != " "]
    columns = {len(line) - len(line.split(":", 1)[1].lstrip()) for line in labelled}
    assert len(columns) == 1, lines  # every value, `id`'s included, starts in the same column
    (column,) = columns
    assert lines[0] == f"{'id:':<{column}}{request_id}"
    arguments = lines.index(next(line for line in labelled if line.startswith("arguments:")))
    following = lines[arguments + 1 : arguments + 40]
    assert any(line.strip().startswith('"steps": [') for line in following)  # not one line of JSON
    assert any(line.strip().rstrip(",") == '"tool": "payments.refund"' for line in following)
    assert all(line.startswith(" " * column) for line in following if line[:1] == " ")
