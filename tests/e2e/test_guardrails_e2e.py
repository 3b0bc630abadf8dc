"""The guardrails through real MCP clients, on every transport and era, against the demo's guardrails.yaml
with the demo inventory API running on 127.0.0.1 (its port rewritten to a free one)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import types
from servers import IN_PROCESS, MODES, Servers, connector, free_port, real, wait_for_http
from support import REPO, Connect, make_deployment

from gateway.mcp_server import AUDIT_ID_META_KEY, ERROR_META_KEY

pytestmark = pytest.mark.anyio
CARD = "5555 5555 5555 4444"
TOKEN = "xoxb-2048-1234567890-abcdefghijABCDEFGHIJ"


@pytest.fixture(scope="module")
def guarded_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    port = free_port()
    config = make_deployment(tmp_path_factory.mktemp("guardrails") / "deployment")
    inventory = config.parent / "tools" / "inventory.http.yaml"
    inventory.write_text(inventory.read_text().replace("127.0.0.1:8788", f"127.0.0.1:{port}"))
    log = config.parent / "inventory.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, str(REPO / "tools" / "servers" / "inventory.py"), "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        wait_for_http(f"http://127.0.0.1:{port}/items", server, log, None)
        yield config
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def connect(mode: str, guarded_config: Path, servers: Servers) -> Connect:
    return connector(guarded_config, mode, servers)


def error(result: types.CallToolResult) -> dict[str, Any]:
    assert result.is_error and result.meta is not None, result
    return dict(result.meta[ERROR_META_KEY])


def record(config: Path, seq: int) -> dict[str, Any]:
    with sqlite3.connect(config.parent / "audit" / "audit.db") as db:
        (body,) = db.execute("SELECT body FROM audit_log WHERE seq = ?", (seq,)).fetchone()
    return dict(json.loads(body))


@pytest.mark.parametrize("mode", [*IN_PROCESS, *real("http-legacy", "http-auto")])
async def test_block_an_email_with_a_card_number(connect: Connect, guarded_config: Path) -> None:
    async with connect("alice") as client:
        body = f"Card on file: {CARD}"
        result = await client.call_tool("email.send", {"to": "bob@acme.example", "subject": "card", "body": body})
    details = error(result)
    assert details["code"] == "guardrail_blocked" and details["stage"] == "input_guardrails"
    assert details["findings"][0] == {
        "rule": "personal.card_number",
        "message": "a payment card number",
        "stage": "input_guardrails",
        "path": "$.body",
        "action": "block",
    }
    audited = record(guarded_config, details["audit_id"])
    assert audited["outcome"] == "guardrail_blocked"
    assert CARD not in json.dumps(audited) and "<CARD>" in json.dumps(audited["arguments"])


async def test_redact_a_token_pasted_into_a_ticket(connect: Connect, guarded_config: Path) -> None:
    async with connect("alice") as client:
        arguments = {"customer_id": "C001", "subject": "cannot log in", "body": f"my slack token {TOKEN}"}
        result = await client.call_tool("tickets.create", arguments)
    assert not result.is_error, result
    audited = record(guarded_config, result.meta[AUDIT_ID_META_KEY])  # type: ignore[index]
    assert audited["outcome"] == "ok"
    assert [(f["rule"], f["action"]) for f in audited["findings"]] == [("secrets.slack_token", "redact")]
    assert TOKEN not in json.dumps(audited)


async def test_flag_a_phone_number_in_a_ticket(connect: Connect, guarded_config: Path) -> None:
    async with connect("alice") as client:
        arguments = {"customer_id": "C001", "subject": "callback", "body": "Please call me on +44 20 7946 0958."}
        result = await client.call_tool("tickets.create", arguments)
    assert not result.is_error, result
    audited = record(guarded_config, result.meta[AUDIT_ID_META_KEY])  # type: ignore[index]
    assert [(f["rule"], f["action"]) for f in audited["findings"]] == [("personal.phone", "flag")]


async def test_injection_in_an_http_result_is_annotated(connect: Connect, guarded_config: Path) -> None:
    async with connect("alice") as client:
        result = await client.call_tool("inventory.get_item", {"sku": "SKU-1003"})
    assert not result.is_error, result
    first = result.content[0]
    assert isinstance(first, types.TextContent) and first.text.startswith("[Portcullis]")
    audited = record(guarded_config, result.meta[AUDIT_ID_META_KEY])  # type: ignore[index]
    assert ("injection.instructions", "annotate") in [(f["rule"], f["action"]) for f in audited["findings"]]


@pytest.mark.parametrize("mode", MODES)  # what "one session" is differs by transport
async def test_the_flow_rule_holds_email_after_customer_data_and_untrusted_content_in_one_session(
    connect: Connect, guarded_config: Path
) -> None:
    mail = {"to": "bob@acme.example", "subject": "stock", "body": "The item is in stock."}
    async with connect("alice") as other:
        # another session that read only the untrusted content may send
        assert not (await other.call_tool("inventory.get_item", {"sku": "SKU-1001"})).is_error
        assert not (await other.call_tool("email.send", mail)).is_error
    async with connect("alice") as client:
        assert not (await client.call_tool("crm.get_customer", {"customer_id": "C001"})).is_error
        assert not (await client.call_tool("inventory.get_item", {"sku": "SKU-1001"})).is_error
        held = await client.call_tool("email.send", mail)
    details = error(held)
    assert details["code"] == "approval_required" and details["approver_role"] == "role:manager"
    audited = record(guarded_config, details["audit_id"])
    (flow,) = [f for f in audited["findings"] if f["rule"].startswith("flows.")]
    # stateless (2026-07-28) HTTP callers have no session: their reads count per subject, which is stricter
    assert len(flow["links"]) >= 2 and flow["action"] == "require_approval"
