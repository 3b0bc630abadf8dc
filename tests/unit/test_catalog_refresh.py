"""An upstream's tools changed: the catalog is rebuilt under the running snapshot, never from the files.

An edited `guardrails.yaml` or `tools.lock` goes live only through a reload (and its audit record),
an invalid one cannot break the refresh, and a catalog that cannot be built leaves the running one
in force without taking the upstream, or the gateway, down.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from support import make_deployment, portcullis, set_guardrails

from gateway import Gateway, OutcomeCode
from gateway.config import load_config
from gateway.pipeline import Caller

pytestmark = pytest.mark.anyio
ALICE = Caller(subject="alice", auth="test", transport="test")
TOKEN = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
BLOCK_SECRETS = [{"tools": "up.*", "arguments": {"secrets": "block"}}]

GROWER = '''
"""An upstream whose `grow` tool adds a tool named by $GROWN and announces the change."""

import os

from mcp.server import MCPServer
from mcp.server.mcpserver import Context

server = MCPServer("grower")


@server.tool()
def echo(text: str) -> str:
    """Return the text."""
    return text


@server.tool()
async def grow(ctx: Context) -> str:
    """Add a tool and tell the client its tools changed."""

    def added(text: str) -> str:
        return text

    server.add_tool(added, name=os.environ["GROWN"], description="Added while running.")
    await ctx.session.send_tool_list_changed()
    return "grown"


server.run()
'''


def deployment(tmp_path: Path, grown: str = "later", **tools: Any) -> Path:
    root = tmp_path / "deployment"
    script = tmp_path / "grower.py"
    script.write_text(GROWER)
    upstream = {"namespace": "up", "stdio": {"command": sys.executable, "args": [str(script)], "env": {"GROWN": grown}}}
    return make_deployment(
        root,
        extra_policy="p, role:support, up.*, call, allow\n",
        changes={"upstreams": [upstream], "tools": {"new_tools": "allow", **tools}},
    )


async def grow(gateway: Gateway) -> None:
    """Have the upstream add a tool, and wait until the gateway's catalog was rebuilt for it."""
    changed = anyio.Event()

    async def listener() -> None:
        changed.set()

    gateway.on_tools_changed(listener)
    assert (await gateway.call_tool(ALICE, "up.grow", {})).code is OutcomeCode.OK
    with anyio.fail_after(10):
        await changed.wait()


def upstream_status(gateway: Gateway) -> str:
    return {h.source: h.status for h in gateway.health()}["mcp:up"]


async def test_an_edited_guardrails_file_is_not_applied_by_an_upstream_refresh(tmp_path: Path) -> None:
    config = deployment(tmp_path)
    async with Gateway(load_config(config)) as gateway:
        assert (await gateway.call_tool(ALICE, "up.echo", {"text": TOKEN})).code is OutcomeCode.OK
        set_guardrails(config.parent, BLOCK_SECRETS)  # edited, not reloaded
        await grow(gateway)
        assert gateway.visible_tool("alice", "up.later") is not None  # the refresh took in the new tool...
        assert (await gateway.call_tool(ALICE, "up.echo", {"text": TOKEN})).code is OutcomeCode.OK  # ...not the file
        assert await gateway.reload()
        blocked = await gateway.call_tool(ALICE, "up.echo", {"text": TOKEN})
        assert blocked.code is OutcomeCode.GUARDRAIL_BLOCKED  # the reload applies it


async def test_an_edited_tool_lock_is_not_applied_by_an_upstream_refresh(tmp_path: Path) -> None:
    config = deployment(tmp_path, new_tools="quarantine")
    pinned = portcullis("tools", "pin", "--config", str(config))
    assert pinned.returncode == 0, pinned.stderr
    lock = config.parent / "tools.lock"
    async with Gateway(load_config(config)) as gateway:
        assert gateway.visible_tool("alice", "up.echo") is not None
        document = json.loads(lock.read_text())
        del document["tools"]["up.echo"]
        lock.write_text(json.dumps(document))  # edited, not reloaded: echo would be a new, unpinned tool
        await grow(gateway)
        assert gateway.visible_tool("alice", "up.later") is None  # new and unpinned under the running pins
        assert (await gateway.call_tool(ALICE, "up.echo", {"text": "hi"})).code is OutcomeCode.OK
        assert await gateway.reload()
        assert gateway.visible_tool("alice", "up.echo") is None  # the reload applies the new lock


async def test_an_invalid_guardrails_file_does_not_break_an_upstream_refresh(tmp_path: Path) -> None:
    config = deployment(tmp_path)
    async with Gateway(load_config(config)) as gateway:
        (config.parent / "policies" / "guardrails.yaml").write_text("rules: [this is not a rule\n")
        await grow(gateway)
        assert gateway.visible_tool("alice", "up.later") is not None
        assert upstream_status(gateway) == "ok"
        assert (await gateway.call_tool(ALICE, "up.later", {"text": "hi"})).code is OutcomeCode.OK
        assert not await gateway.reload()  # the file is invalid: a reload refuses it


async def test_a_refresh_that_cannot_build_a_catalog_keeps_the_running_one_and_the_upstream_up(
    tmp_path: Path,
) -> None:
    config = deployment(tmp_path, grown="later")
    (config.parent / "tools" / "up.py").write_text(
        "from gateway import tool\n\n\n@tool(read_only=True)\ndef later(text: str) -> str:\n    return 'python'\n"
    )
    database = config.parent / "audit" / "audit.db"
    async with Gateway(load_config(config)) as gateway:
        assert (await gateway.call_tool(ALICE, "up.grow", {})).code is OutcomeCode.OK
        with anyio.fail_after(10):
            while not (problems := refresh_failures(database)):
                await anyio.sleep(0.05)
        assert problems == [["tool up.later is defined by both python:tools and mcp:up"]]
        assert upstream_status(gateway) == "ok"
        later = await gateway.call_tool(ALICE, "up.later", {"text": "x"})
        assert later.content[0]["text"] == "python"  # the running catalog: the Python tool, not the upstream
        assert (await gateway.call_tool(ALICE, "up.echo", {"text": "still here"})).code is OutcomeCode.OK


def refresh_failures(database: Path) -> list[list[str]]:
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT body FROM audit_log WHERE event = 'catalog.refresh_failed'").fetchall()
    return [json.loads(body)["detail"]["problems"] for (body,) in rows]
