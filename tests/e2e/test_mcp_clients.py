"""What an agent experiences through a real MCP client: in both protocol eras in-process, and for the
representative calls (and what is transport-specific) over stdio and Streamable HTTP in both eras."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import types
from servers import IN_PROCESS, MODES, real
from support import DEMO_VIEW, Connect

from gateway.mcp_server import AUDIT_ID_META_KEY, ERROR_META_KEY

pytestmark = pytest.mark.anyio


def audit_record(config: Path, seq: int) -> dict[str, Any]:
    db = sqlite3.connect(config.parent / "audit" / "audit.db")
    db.row_factory = sqlite3.Row
    row = db.execute("SELECT * FROM audit_log WHERE seq = ?", (seq,)).fetchone()
    calls = db.execute(
        "SELECT COUNT(*) FROM audit_log WHERE call_id = ? AND event = 'tool.call'", (row["call_id"],)
    ).fetchone()[0]
    db.close()
    return {**dict(row), "records_for_call": calls}


def error(result: types.CallToolResult) -> dict[str, Any]:
    """The refusal's details, from `_meta` (always there) and `structuredContent` (when safe to send)."""
    assert result.is_error, result
    assert result.meta is not None
    details: dict[str, Any] = result.meta[ERROR_META_KEY]
    assert result.content[0].text.startswith(f"{details['code']}: ")  # type: ignore[union-attr]
    if result.structured_content is not None:
        assert result.structured_content == details
    return details


@pytest.mark.parametrize("mode", [*IN_PROCESS, *real("http-legacy", "http-auto")])  # HTTP: the key names the subject
@pytest.mark.parametrize("subject", sorted(DEMO_VIEW))
async def test_each_subject_sees_exactly_the_tools_their_role_allows(connect: Connect, subject: str) -> None:
    async with connect(subject) as client:
        listed = await client.list_tools()
    names = {tool.name for tool in listed.tools}
    demo_only = {name for name in names if not name.startswith("faulty.")}
    assert demo_only == DEMO_VIEW[subject]
    for tool in listed.tools:
        assert tool.input_schema["type"] == "object"


@pytest.mark.parametrize("mode", MODES)
async def test_an_allowed_call_returns_the_result_and_is_audited(connect: Connect, e2e_config: Path) -> None:
    async with connect("alice") as client:
        result = await client.call_tool("crm.find_customer", {"query": "hopper"})
    assert not result.is_error
    assert result.structured_content == {
        "customers": [
            {
                "id": "C002",
                "name": "Grace Hopper",
                "email": "grace@hopper.example",
                "tier": "platinum",
                "balance": 8400.5,
            }
        ]
    }
    record = audit_record(e2e_config, result.meta[AUDIT_ID_META_KEY])  # type: ignore[index]
    assert (record["subject"], record["tool"], record["decision"], record["outcome"]) == (
        "alice",
        "crm.find_customer",
        "allow",
        "ok",
    )
    assert record["records_for_call"] == 1


@pytest.mark.parametrize("mode", [*IN_PROCESS, *real("http-legacy", "http-auto")])
async def test_a_tool_outside_the_callers_role_looks_unknown_but_is_audited_as_denied(
    connect: Connect, e2e_config: Path
) -> None:
    async with connect("alice") as client:
        hidden = await client.call_tool("crm.delete_customer", {"customer_id": "C001"})
        missing = await client.call_tool("payments.launder", {})
    hidden_error, missing_error = error(hidden), error(missing)
    assert hidden.structured_content == hidden_error  # never listed: no schema to clash with
    assert hidden_error["code"] == missing_error["code"] == "unknown_tool"
    assert hidden_error["message"] == "Unknown tool: crm.delete_customer"
    record = audit_record(e2e_config, hidden_error["audit_id"])
    assert (record["subject"], record["decision"], record["outcome"]) == ("alice", "deny", "unknown_tool")
    assert record["records_for_call"] == 1


async def test_a_caller_without_a_role_can_call_nothing(connect: Connect) -> None:
    async with connect("mallory") as client:
        result = await client.call_tool("crm.find_customer", {"query": "a"})
    assert error(result)["code"] == "unknown_tool"


async def test_schema_violations_are_refused_with_every_problem(connect: Connect, e2e_config: Path) -> None:
    async with connect("alice") as client:
        result = await client.call_tool("tickets.create", {"customer_id": "not-an-id", "subject": 42})
    details = error(result)
    assert details["code"] == "invalid_arguments"
    assert {e["path"] for e in details["errors"]} == {"$", "$.customer_id", "$.subject"}
    # tickets.create lists an outputSchema: an error object in structuredContent would fail
    # TypeScript clients' schema check, so the details travel in _meta only
    assert result.structured_content is None
    assert audit_record(e2e_config, details["audit_id"])["outcome"] == "invalid_arguments"


@pytest.mark.parametrize("mode", MODES)
async def test_oversized_and_deeply_nested_arguments_are_refused(connect: Connect) -> None:
    nested: dict[str, Any] = {"text": "x"}
    for _ in range(40):
        nested = {"a": nested}
    async with connect("alice") as client:
        big = await client.call_tool("faulty.echo", {"text": "x" * 1_100_000})
        deep = await client.call_tool("faulty.echo", nested)
        after = await client.call_tool("faulty.echo", {"text": "still serving"})
    assert error(big)["code"] == "arguments_too_large"
    assert error(deep)["code"] == "arguments_too_large"
    assert not after.is_error


async def test_a_call_that_needs_approval_is_queued_and_answered_at_once(connect: Connect, e2e_config: Path) -> None:
    async with connect("bob") as client:
        result = await client.call_tool("payments.refund", {"customer_id": "C003", "amount": 420.5, "reason": "late"})
    details = error(result)
    assert details["code"] == "approval_required"
    assert details["approver_role"] == "role:manager"
    db = sqlite3.connect(e2e_config.parent / "audit" / "audit.db")
    row = db.execute(
        "SELECT status, subject, tool, arguments FROM approval_requests WHERE id = ?", (details["approval_id"],)
    ).fetchone()
    db.close()
    assert row == ("pending", "bob", "payments.refund", '{"amount":420.5,"customer_id":"C003","reason":"late"}')
    record = audit_record(e2e_config, details["audit_id"])
    assert (record["decision"], record["outcome"]) == ("approval_required", "approval_required")


async def test_a_call_policy_denies_on_its_arguments_is_refused_as_denied(connect: Connect, e2e_config: Path) -> None:
    async with connect("alice") as client:
        outside = await client.call_tool("email.send", {"to": "someone@gmail.example", "subject": "s", "body": "b"})
        inside = await client.call_tool("email.send", {"to": "team@acme.example", "subject": "s", "body": "b"})
    details = error(outside)
    assert details["code"] == "denied"
    assert 'args.to endswith "@acme.example"' not in details["message"]  # deny by default: no rule matched
    assert not inside.is_error
    record = audit_record(e2e_config, details["audit_id"])
    assert (record["decision"], record["outcome"]) == ("deny", "denied")


async def test_a_tool_that_raises_fails_cleanly_and_the_gateway_keeps_serving(connect: Connect) -> None:
    async with connect("alice") as client:
        failed = await client.call_tool("faulty.boom", {})
        after = await client.call_tool("faulty.echo", {"text": "ok"})
    details = error(failed)
    assert details["code"] == "tool_failed"
    assert "the tool exploded" in details["message"]
    assert after.content[0].text == "ok"  # type: ignore[union-attr]


async def test_a_tool_that_hangs_times_out_and_the_gateway_keeps_serving(connect: Connect, e2e_config: Path) -> None:
    async with connect("alice") as client:
        with anyio.fail_after(10):
            slow = await client.call_tool("faulty.slow", {"seconds": 3})
        after = await client.call_tool("faulty.echo", {"text": "ok"})
    details = error(slow)
    assert details["code"] == "timeout"
    assert not after.is_error
    assert audit_record(e2e_config, details["audit_id"])["outcome"] == "timeout"


async def test_an_oversized_result_is_withheld(connect: Connect) -> None:
    async with connect("alice") as client:
        result = await client.call_tool("faulty.huge", {"size": 1_200_000})
    assert error(result)["code"] == "output_too_large"


@pytest.mark.e2e
@pytest.mark.parametrize("header", [None, "Bearer wrong-key", "Bearer", "Basic ZGVtby1hbGljZQ=="])
def test_http_without_a_valid_key_gets_401(http_url: str, header: str | None) -> None:
    headers = {"Accept": "application/json, text/event-stream"}
    if header is not None:
        headers["Authorization"] = header
    request = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    response = httpx.post(http_url, json=request, headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_the_stdio_caller_is_the_os_user_mapped_by_config(mode: str, tmp_path: Path) -> None:
    import getpass
    import sys

    from mcp import Client, StdioServerParameters
    from support import make_deployment

    config = make_deployment(
        tmp_path / "d", changes={"identity": {"os_users": {getpass.getuser(): "bob"}, "allow_choosing_subject": False}}
    )
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "gateway", "serve", "--transport", "stdio", "--config", str(config)],
        env={"PATH": "/usr/bin:/bin", "PORTCULLIS_SUBJECT": ""},
    )
    async with Client(params, mode=mode) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("crm.get_customer", {"customer_id": "C001"})
    assert names == DEMO_VIEW["bob"]
    record = audit_record(config, result.meta[AUDIT_ID_META_KEY])  # type: ignore[index]
    assert (record["subject"], json.loads(record["body"])["auth"]) == ("bob", "stdio:os_user")


async def test_admins_can_ask_the_gateway_to_explain_a_decision(connect: Connect) -> None:
    async with connect("erin") as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool(
            "gateway.policy_check", {"subject": "bob", "tool": "payments.refund", "args": {"amount": 500}}
        )
    assert "gateway.policy_check" in listed
    assert result.structured_content is not None
    assert result.structured_content["decision"] == "approval_required"
    assert result.structured_content["approver"] == "role:manager"
    async with connect("alice") as client:
        refused = await client.call_tool("gateway.policy_check", {"subject": "bob", "tool": "payments.refund"})
    assert error(refused)["code"] == "unknown_tool"


async def test_the_auditor_queries_the_log_through_mcp(connect: Connect) -> None:
    async with connect("alice") as client:
        await client.call_tool("crm.find_customer", {"query": "turing"})
        refused = await client.call_tool("gateway.audit_query", {"subject": "alice"})
    async with connect("dave") as client:
        result = await client.call_tool("gateway.audit_query", {"subject": "alice", "tool": "crm.*", "limit": 5})
    assert error(refused)["code"] == "unknown_tool"
    assert result.structured_content is not None
    records = result.structured_content["records"]
    assert records and all(r["subject"] == "alice" and r["tool"].startswith("crm.") for r in records)
    assert records[0]["seq"] > records[-1]["seq"]
