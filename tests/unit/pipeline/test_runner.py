"""The audited pipeline: every call recorded, intent before execution, fail closed."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
from support import make_call as call

from gateway import Gateway
from gateway.audit import AuditQuery, open_readonly, query_records
from gateway.outcomes import AuditWriteError, OutcomeCode
from gateway.pipeline import CallContext, Caller, Continue, Pipeline, Stop
from gateway.pipeline.assembly import build_stages
from gateway.snapshot import Snapshot

pytestmark = pytest.mark.anyio
ALICE = Caller(subject="alice", auth="test", transport="test")


def records(gateway: Gateway, **filters: object) -> list[dict[str, object]]:
    connection = open_readonly(gateway.audit.path)
    try:
        return query_records(connection, AuditQuery(**filters))  # type: ignore[arg-type]
    finally:
        connection.close()


def stored_bytes(gateway: Gateway) -> str:
    """Everything on disk for the log: the database file and its write-ahead log."""
    path = Path(gateway.audit.path)
    files = [path, path.with_name(path.name + "-wal")]
    return "".join(f.read_bytes().decode(errors="replace") for f in files if f.exists())


async def test_an_executed_call_records_intent_then_outcome(gateway: Gateway) -> None:
    outcome = await gateway.call_tool(ALICE, "faulty.echo", {"text": "hello"})
    assert outcome.code is OutcomeCode.OK
    assert outcome.content == [{"type": "text", "text": "hello"}]
    rows = [r for r in records(gateway) if r["tool"] == "faulty.echo"]
    assert [r["event"] for r in rows] == ["tool.intent", "tool.call"]
    assert rows[0]["outcome"] == "started"
    assert rows[1]["outcome"] == "ok" and rows[1]["seq"] == outcome.audit_id
    assert rows[1]["result_digest"] is not None and rows[1]["call_id"] == rows[0]["call_id"]


async def test_a_refused_call_is_recorded_once_without_intent(gateway: Gateway) -> None:
    outcome = await gateway.call_tool(ALICE, "crm.delete_customer", {})
    rows = [r for r in records(gateway) if r["tool"] == "crm.delete_customer"]
    assert [(r["event"], r["decision"], r["outcome"]) for r in rows] == [("tool.call", "deny", "unknown_tool")]
    assert outcome.audit_id == rows[0]["seq"]


async def test_secret_arguments_are_stored_as_salted_hashes(gateway: Gateway) -> None:
    await gateway.call_tool(ALICE, "faulty.echo", {"text": "hi", "api_token": "sk-live-123"})
    row = records(gateway, tool="faulty.echo")[-1]
    assert row["arguments"]["text"] == "hi"
    assert row["arguments"]["api_token"].startswith("hmac-sha256:")
    assert "sk-live-123" not in stored_bytes(gateway)


async def test_oversized_arguments_are_not_stored(gateway: Gateway) -> None:
    outcome = await gateway.call_tool(ALICE, "faulty.echo", {"text": "x" * 2_000_000})
    assert outcome.code is OutcomeCode.ARGUMENTS_TOO_LARGE
    row = records(gateway, tool="faulty.echo")[-1]
    assert row["arguments"]["omitted"] and row["arguments"]["bytes"] > 2_000_000


class Exploding:
    name: ClassVar[str] = "authorization"
    executes: ClassVar[bool] = False

    async def __call__(self, call: CallContext) -> Continue | Stop:
        raise KeyError("policy backend vanished")


async def test_a_stage_that_raises_refuses_the_call_and_records_it(gateway: Gateway, snapshot: Snapshot) -> None:
    stages = build_stages(snapshot)
    stages[2] = Exploding()
    pipeline = Pipeline(stages, gateway.audit, snapshot.config.audit.secret_keys)
    outcome = await pipeline.run(call(snapshot, "alice", "faulty.echo", {"text": "x"}))
    assert outcome.code is OutcomeCode.INTERNAL_ERROR
    assert outcome.stage == "authorization"
    row = records(gateway, tool="faulty.echo")[-1]
    assert (row["outcome"], row["decision"]) == ("internal_error", "deny")


class BrokenAudit:
    """An audit store whose disk is gone (this cannot be staged with a real file portably)."""

    path = Path("/nonexistent")
    salt = "x"

    def __init__(self) -> None:
        self.events: list[str] = []

    async def append(self, record: object, statements: object = (), *, durable: bool = True) -> int:
        self.events.append(getattr(record, "event", "?"))
        raise AuditWriteError("disk I/O error")


async def test_the_tool_does_not_run_when_its_intent_cannot_be_recorded(snapshot: Snapshot) -> None:
    audit = BrokenAudit()
    pipeline = Pipeline(build_stages(snapshot), audit, ())  # type: ignore[arg-type]
    args = {"customer_id": "C001", "subject": "must not be filed", "body": "b"}
    outcome = await pipeline.run(call(snapshot, "alice", "tickets.create", args))
    assert outcome.code is OutcomeCode.AUDIT_UNAVAILABLE
    assert audit.events == ["tool.intent", "tool.call"]
    # the demo database is created by the first tool that runs: it does not exist
    assert not (snapshot.config.root / "data" / "acme.db").exists()


async def test_a_closed_audit_store_refuses_calls(snapshot: Snapshot) -> None:
    gateway = Gateway(snapshot.config)
    outcome = await gateway.call_tool(ALICE, "faulty.echo", {"text": "x"})
    assert outcome.code is OutcomeCode.AUDIT_UNAVAILABLE


async def test_personal_data_keys_are_stored_as_salted_hashes_and_the_chain_still_verifies(gateway: Gateway) -> None:
    from gateway.audit import verify_file

    arguments = {"to": "ada@acme.example", "subject": "Hello", "body": "b"}
    await gateway.call_tool(ALICE, "email.send", arguments)
    row = records(gateway, tool="email.send")[-1]
    assert row["arguments"]["to"].startswith("hmac-sha256:") and row["arguments"]["subject"] == "Hello"
    assert "ada@acme.example" not in stored_bytes(gateway)
    assert "Hello" in stored_bytes(gateway)  # the check can see what is stored
    assert verify_file(gateway.audit.path).ok
