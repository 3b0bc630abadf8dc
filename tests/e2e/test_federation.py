"""Resources and prompts of upstreams, federated under policy and audited, through real clients (in-process;
listing and reading also over stdio and Streamable HTTP)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from mcp import MCPError, types
from servers import MODES
from support import Connect

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", MODES)
async def test_resources_of_an_upstream_are_listed_and_read_under_policy(connect: Connect, e2e_config: Path) -> None:
    async with connect("alice") as client:
        listed = (await client.list_resources()).resources
        read = await client.read_resource("kb://articles/escalation")
    names = {resource.name: str(resource.uri) for resource in listed}
    assert names["kb.escalation"] == "kb://articles/escalation"
    assert len(names) == 4
    content = read.contents[0]
    assert isinstance(content, types.TextResourceContents) and content.text.startswith("# Escalating a ticket")


async def test_a_caller_without_read_permission_sees_no_resources_and_cannot_read(
    connect: Connect, e2e_config: Path
) -> None:
    async with connect("bob") as client:
        assert (await client.list_resources()).resources == []
        with pytest.raises(MCPError) as raised:
            await client.read_resource("kb://articles/escalation")
    assert raised.value.error.code == -32002
    assert raised.value.error.data["code"] == "unknown_resource"
    db = sqlite3.connect(e2e_config.parent / "audit" / "audit.db")
    row = db.execute(
        "SELECT subject, decision, outcome FROM audit_log WHERE seq = ?", (raised.value.error.data["audit_id"],)
    ).fetchone()
    db.close()
    assert row == ("bob", "deny", "unknown_resource")


async def test_prompts_of_an_upstream_are_namespaced_and_audited(connect: Connect, e2e_config: Path) -> None:
    async with connect("alice") as client:
        prompts = (await client.list_prompts()).prompts
        got = await client.get_prompt("kb.answer_from_kb", {"question": "when do refunds arrive?"})
        with pytest.raises(MCPError) as raised:
            await client.get_prompt("kb.no_such_prompt", {})
    assert [prompt.name for prompt in prompts] == ["kb.answer_from_kb"]
    message = got.messages[0].content
    assert isinstance(message, types.TextContent) and "when do refunds arrive?" in message.text
    assert raised.value.error.data["code"] == "unknown_prompt"
    db = sqlite3.connect(e2e_config.parent / "audit" / "audit.db")
    events = db.execute(
        "SELECT outcome FROM audit_log WHERE event = 'prompt.get' AND subject = 'alice' AND tool = 'kb.answer_from_kb'"
    ).fetchall()
    db.close()
    assert ("ok",) in events
