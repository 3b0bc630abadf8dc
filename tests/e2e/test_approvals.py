"""The approval queue: decisions, refusals, exactly-once execution, expiry, restart, quick path."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
from servers import IN_PROCESS, MODES, Servers, connector
from support import cli, make_deployment, portcullis

from gateway import Gateway, OutcomeCode
from gateway.approvals import ApprovalStatus
from gateway.approvals.service import ApprovalError
from gateway.config import load_config
from gateway.pipeline import Caller

pytestmark = pytest.mark.anyio
BOB = Caller(subject="bob", auth="test", transport="test")
REFUND = {"customer_id": "C004", "amount": 500, "reason": "late delivery"}
POLICY = "g, frank, role:manager\ng, gina, role:manager\n"
REAL_STDIO = ("stdio-legacy", "stdio-auto")


def who(subject: str) -> Caller:
    return Caller(subject=subject, auth="test", transport="test")


def deployment(tmp_path: Path, **approvals: Any) -> Path:
    return make_deployment(tmp_path / "d", extra_policy=POLICY, changes={"approvals": approvals} if approvals else None)


def refunds(path: Path, customer: str = "C004") -> int:
    database = path.parent / "data" / "acme.db"
    if not database.exists():
        return 0
    db = sqlite3.connect(database)
    (count,) = db.execute("SELECT COUNT(*) FROM refunds WHERE customer_id = ?", (customer,)).fetchone()
    db.close()
    return int(count)


async def finished(gateway: Gateway, request_id: str) -> Any:
    with anyio.fail_after(10):
        while not (request := await gateway.approvals.get(request_id)).terminal:
            await anyio.sleep(0.05)
    return request


async def request_refund(gateway: Gateway, arguments: dict[str, Any] = REFUND) -> str:
    outcome = await gateway.call_tool(BOB, "payments.refund", arguments)
    assert outcome.code is OutcomeCode.APPROVAL_REQUIRED
    assert outcome.data["status"] == "pending_approval" and outcome.data["expires_at"]
    return str(outcome.data["approval_id"])


async def test_an_approved_call_runs_once_and_its_requester_gets_the_result(tmp_path: Path) -> None:
    path = deployment(tmp_path)
    async with Gateway(load_config(path)) as gateway:
        request_id = await request_refund(gateway)
        decided = await gateway.approvals.approve(request_id, who("carol"), "invoice checked")
        assert decided.status in (ApprovalStatus.APPROVED, ApprovalStatus.EXECUTING, ApprovalStatus.SUCCEEDED)
        done = await finished(gateway, request_id)
        waited = await gateway.call_tool(BOB, "gateway.approval_wait", {"approval_id": request_id, "timeout_s": 1})
    assert done.status is ApprovalStatus.SUCCEEDED
    assert done.result["structured"]["amount"] == 500
    assert waited.structured is not None and waited.structured["status"] == "succeeded"
    assert waited.structured["result"]["structured"]["customer_id"] == "C004"
    assert refunds(path) == 1


@pytest.mark.parametrize(
    ("approver", "reason"),
    [
        ("bob", "self_approval"),
        ("alice", "not_an_approver"),
        ("dave", "not_an_approver"),
        ("nobody", "not_an_approver"),
    ],
)
async def test_decisions_by_the_wrong_people_are_refused(tmp_path: Path, approver: str, reason: str) -> None:
    async with Gateway(load_config(deployment(tmp_path))) as gateway:
        request_id = await request_refund(gateway)
        with pytest.raises(ApprovalError) as raised:
            await gateway.approvals.approve(request_id, who(approver))
        assert raised.value.reason == reason
        assert (await gateway.approvals.get(request_id)).status is ApprovalStatus.PENDING


async def test_the_same_approver_counts_once_toward_a_quorum_of_two(tmp_path: Path) -> None:
    path = deployment(tmp_path)
    rules = path.parent / "policies" / "policy.csv"
    rules.write_text(
        rules.read_text().replace(
            "approve, approver role:manager, when", "approve, approver role:manager, quorum 2, when"
        )
    )
    async with Gateway(load_config(path)) as gateway:
        request_id = await request_refund(gateway)
        await gateway.approvals.approve(request_id, who("carol"))
        with pytest.raises(ApprovalError) as raised:
            await gateway.approvals.approve(request_id, who("carol"))
        assert raised.value.reason == "already_decided"
        assert (await gateway.approvals.get(request_id)).status is ApprovalStatus.PENDING
        await gateway.approvals.approve(request_id, who("frank"))
        assert (await finished(gateway, request_id)).status is ApprovalStatus.SUCCEEDED
    assert refunds(path) == 1


async def test_nothing_moves_a_request_out_of_a_terminal_state(tmp_path: Path) -> None:
    path = deployment(tmp_path)
    async with Gateway(load_config(path)) as gateway:
        request_id = await request_refund(gateway)
        denied = await gateway.approvals.deny(request_id, who("carol"), "duplicate claim")
        assert denied.status is ApprovalStatus.DENIED
        for decide in (gateway.approvals.approve, gateway.approvals.deny):
            with pytest.raises(ApprovalError) as raised:
                await decide(request_id, who("frank"), "late")
            assert raised.value.reason == "not_pending"
        waited = await gateway.call_tool(BOB, "gateway.approval_wait", {"approval_id": request_id, "timeout_s": 0})
    assert waited.structured is not None and waited.structured["status"] == "denied"
    assert refunds(path) == 0


async def test_concurrent_approvals_execute_the_call_exactly_once(tmp_path: Path) -> None:
    path = deployment(tmp_path)
    async with Gateway(load_config(path)) as gateway:
        request_id = await request_refund(gateway)
        results: list[str] = []

        async def approve(subject: str) -> None:
            try:
                await gateway.approvals.approve(request_id, who(subject))
                results.append("ok")
            except ApprovalError as exc:
                results.append(exc.reason)

        async def wait() -> None:
            await gateway.call_tool(BOB, "gateway.approval_wait", {"approval_id": request_id, "timeout_s": 5})

        async with anyio.create_task_group() as tasks:
            for subject in ("carol", "frank", "gina"):
                tasks.start_soon(approve, subject)
            for _ in range(5):
                tasks.start_soon(wait)
        assert (await finished(gateway, request_id)).status is ApprovalStatus.SUCCEEDED
        await anyio.sleep(0.3)  # a few more queue passes: none may run it again
    assert sorted(results) == ["not_pending", "not_pending", "ok"]
    assert refunds(path) == 1


async def test_an_approval_never_covers_other_arguments(tmp_path: Path) -> None:
    path = deployment(tmp_path, poll_seconds=30)  # the queue stays still while the row is swapped
    async with Gateway(load_config(path)) as gateway:
        request_id = await request_refund(gateway)
        db = sqlite3.connect(path.parent / "audit" / "audit.db")
        db.execute(
            "UPDATE approval_requests SET arguments = ? WHERE id = ?",
            (json.dumps({**REFUND, "amount": 9999}), request_id),
        )
        db.commit()
        db.close()
        await gateway.approvals.approve(request_id, who("carol"))
        await gateway.approvals.run_approved()
        done = await gateway.approvals.wait(request_id, 30)  # the gateway's worker may have claimed it first
    assert done.status is ApprovalStatus.FAILED
    assert done.result["code"] == "approval_required"
    assert refunds(path) == 0


async def test_a_changed_tool_definition_cancels_the_approved_request(tmp_path: Path) -> None:
    path = deployment(tmp_path, poll_seconds=30)
    async with Gateway(load_config(path)) as gateway:
        request_id = await request_refund(gateway)
        db = sqlite3.connect(path.parent / "audit" / "audit.db")
        db.execute("UPDATE approval_requests SET definition_hash = 'an-older-definition' WHERE id = ?", (request_id,))
        db.commit()
        db.close()
        await gateway.approvals.approve(request_id, who("carol"))
        await gateway.approvals.run_approved()
        assert (await gateway.approvals.wait(request_id, 30)).status is ApprovalStatus.CANCELLED
    assert refunds(path) == 0


async def test_requests_expire_once_and_late_approvals_are_refused(tmp_path: Path) -> None:
    path = deployment(tmp_path, expiry_seconds=0.2)
    async with Gateway(load_config(path)) as gateway:
        request_id = await request_refund(gateway)
        assert (await finished(gateway, request_id)).status is ApprovalStatus.EXPIRED
        with pytest.raises(ApprovalError) as raised:
            await gateway.approvals.approve(request_id, who("carol"))
        assert raised.value.reason == "not_pending"
    db = sqlite3.connect(path.parent / "audit" / "audit.db")
    (expired,) = db.execute(
        "SELECT COUNT(*) FROM audit_log WHERE event = 'approval.expired' AND body LIKE ?",
        (f"%{request_id}%",),
    ).fetchone()
    db.close()
    assert expired == 1


@pytest.mark.slow
async def test_a_request_approved_while_the_gateway_was_down_runs_after_restart(tmp_path: Path) -> None:
    path = deployment(tmp_path)
    async with Gateway(load_config(path)) as gateway:
        request_id = await request_refund(gateway)
    decided = cli("approvals", "approve", request_id, "--as", "carol", "--config", str(path), "--json")
    assert decided.returncode == 0, decided.stderr
    assert json.loads(decided.stdout)["status"] == "approved"
    refused = cli("approvals", "approve", request_id, "--as", "frank", "--config", str(path))
    assert refused.returncode == 1 and "not_pending" in refused.stderr
    async with Gateway(load_config(path)) as gateway:
        assert (await finished(gateway, request_id)).status is ApprovalStatus.SUCCEEDED
    assert refunds(path) == 1
    shown = cli("approvals", "show", request_id, "--config", str(path), "--json")
    assert [d["approver"] for d in json.loads(shown.stdout)["decisions"]] == ["carol"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
async def test_the_quick_path_answers_with_the_real_result_in_the_same_call(
    mode: str, tmp_path: Path, servers: Servers
) -> None:
    path = deployment(tmp_path, wait_seconds=20)
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async def approve_when_pending() -> None:
        with anyio.fail_after(15):
            while True:
                listed = await anyio.to_thread.run_sync(
                    lambda: portcullis("approvals", "list", "--config", str(path), "--json")
                )
                pending = json.loads(listed.stdout) if listed.returncode == 0 else []
                if pending:
                    break
                await anyio.sleep(0.2)
        decided = await anyio.to_thread.run_sync(
            lambda: portcullis("approvals", "approve", pending[0]["id"], "--as", "carol", "--config", str(path))
        )
        assert decided.returncode == 0, decided.stderr

    async with connector(path, mode, servers)("bob") as client, anyio.create_task_group() as tasks:
        tasks.start_soon(approve_when_pending)
        result = await client.call_tool("payments.refund", REFUND, progress_callback=on_progress)
    assert not result.is_error, result
    assert result.structured_content is not None and result.structured_content["amount"] == 500
    assert any("waiting for approval by role:manager" in message for message in progress)
    assert refunds(path) == 1


async def test_approve_with_edits_runs_the_corrected_call_after_checking_it_again(tmp_path: Path) -> None:
    path = deployment(tmp_path)
    async with Gateway(load_config(path)) as gateway:
        request_id = await request_refund(gateway)
        with pytest.raises(ApprovalError) as raised:  # policy would deny the edit: above 10,000
            await gateway.approvals.approve(request_id, who("carol"), edited_arguments={**REFUND, "amount": 20_000})
        assert raised.value.reason == "edit_refused"
        with pytest.raises(ApprovalError) as raised:  # the schema would refuse it
            await gateway.approvals.approve(request_id, who("carol"), edited_arguments={**REFUND, "amount": -5})
        assert raised.value.reason == "edit_refused"
        await gateway.approvals.approve(request_id, who("carol"), "half is fair", {**REFUND, "amount": 250})
        done = await finished(gateway, request_id)
    assert done.status is ApprovalStatus.SUCCEEDED
    assert done.arguments["amount"] == 250 and done.result["structured"]["amount"] == 250
    assert [r["arguments"]["amount"] for r in done.revisions] == [500]
    assert refunds(path) == 1


async def test_only_the_requester_approvers_and_auditors_see_a_request(tmp_path: Path) -> None:
    async with Gateway(load_config(deployment(tmp_path))) as gateway:
        request_id = await request_refund(gateway)
        seen = {}
        for subject in ("bob", "carol", "dave", "alice"):
            outcome = await gateway.call_tool(who(subject), "gateway.approval_status", {"approval_id": request_id})
            seen[subject] = outcome.code
    assert seen["bob"] is seen["carol"] is seen["dave"] is OutcomeCode.OK
    assert seen["alice"] is OutcomeCode.TOOL_FAILED  # she may follow her own requests, not see bob's


class Receiver:
    """A webhook receiver on 127.0.0.1 that fails its first `failures` deliveries."""

    def __init__(self, failures: int) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.received.append((dict(self.headers), body))
                failing = len(receiver.received) <= receiver.failures
                self.send_response(503 if failing else 204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("failures", "delivered"), [(2, True), (10, False)])
async def test_the_webhook_is_signed_retried_and_its_failure_audited(
    tmp_path: Path, failures: int, delivered: bool
) -> None:
    import hashlib
    import hmac

    receiver = Receiver(failures)
    secret = "webhook-secret-0123456789"
    path = deployment(tmp_path, webhook={"url": receiver.url, "secret": secret, "retries": 3, "backoff_seconds": 0.01})
    try:
        async with Gateway(load_config(path)) as gateway:
            started = anyio.current_time()
            request_id = await request_refund(gateway)
            assert anyio.current_time() - started < 2  # the call does not wait for the webhook
            with anyio.fail_after(10):
                while len(receiver.received) < min(failures + 1, 4):
                    await anyio.sleep(0.02)
            await anyio.sleep(0.2)
    finally:
        receiver.close()
    headers, body = receiver.received[-1]
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["x-portcullis-signature"] == expected
    payload = json.loads(body)
    assert (payload["event"], payload["approval_id"], payload["approver_role"]) == (
        "approval.pending",
        request_id,
        "role:manager",
    )
    db = sqlite3.connect(path.parent / "audit" / "audit.db")
    failed = db.execute("SELECT COUNT(*) FROM audit_log WHERE event = 'approval.webhook_failed'").fetchone()[0]
    db.close()
    assert len(receiver.received) == (failures + 1 if delivered else 4)
    assert failed == (0 if delivered else 1)


async def confirm(context: Any, params: Any) -> Any:
    from mcp import types

    assert "payments.refund" in params.message
    return types.ElicitResult(action="accept", content={"confirm": True})


async def decline(context: Any, params: Any) -> Any:
    from mcp import types

    return types.ElicitResult(action="accept", content={"confirm": False})


ANSWERS = {"confirm": (confirm, True), "decline": (decline, False), "none": (None, False)}
CONSENT_CASES = [
    *[pytest.param(mode, *ANSWERS[name], id=f"{name}-{mode}") for mode in IN_PROCESS for name in ANSWERS],
    # the question and its answer on a real stdio stream, in each era
    *[pytest.param(mode, confirm, True, id=f"confirm-{mode}", marks=pytest.mark.e2e) for mode in REAL_STDIO],
]


@pytest.mark.parametrize(("mode", "answer", "ran"), CONSENT_CASES)
async def test_consent_is_asked_of_the_users_own_client_in_both_eras(
    mode: str, answer: Any, ran: bool, tmp_path: Path, servers: Servers
) -> None:
    path = deployment(tmp_path)
    refund = {**REFUND, "amount": 6000}
    options = {"elicitation_callback": answer} if answer is not None else {}
    async with connector(path, mode, servers, **options)("carol") as client:
        result = await client.call_tool("payments.refund", refund)
    if ran:
        assert not result.is_error and result.structured_content is not None
        assert result.structured_content["amount"] == 6000
    else:
        assert result.is_error and result.meta is not None
        expected = "denied" if answer is decline else "consent_required"
        assert result.meta["portcullis/error"]["code"] == expected
    assert refunds(path) == (1 if ran else 0)
    db = sqlite3.connect(path.parent / "audit" / "audit.db")
    bodies = [json.loads(b) for (b,) in db.execute("SELECT body FROM audit_log WHERE event = 'tool.call'")]
    db.close()
    findings = [f["message"] for body in bodies for f in body["findings"] if f["rule"] == "consent"]
    assert findings == (
        ["the user confirmed the call"] if ran else (["the user declined the call"] if answer is decline else [])
    )
