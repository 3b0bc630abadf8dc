"""Upstream MCP servers behind the gateway: real subprocess upstreams, the real pipeline.

The gateway runs in-process here (its MCP front is covered by test_mcp_clients.py
and test_proxy_e2e.py); the upstreams are real servers in subprocesses.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from support import UPSTREAMS, cli, make_deployment, toy_upstream

from gateway import Gateway, OutcomeCode
from gateway.config import load_config
from gateway.outcomes import ConfigError
from gateway.pipeline import Caller

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # each test starts upstream processes, some several
ALICE = Caller(subject="alice", auth="test", transport="test")
BOB = Caller(subject="bob", auth="test", transport="test")
TOY_POLICY = "p, role:support, toy.*, call, allow\np, role:support, broken.*, call, allow\n"


def deployment(tmp_path: Path, *upstreams: dict[str, Any], new_tools: str = "allow") -> Path:
    return make_deployment(
        tmp_path / "deployment",
        extra_policy=TOY_POLICY,
        changes={"upstreams": list(upstreams), "tools": {"new_tools": new_tools}},
    )


async def test_upstream_tools_are_namespaced_with_schemas_and_annotations_intact(tmp_path: Path) -> None:
    async with Gateway(load_config(deployment(tmp_path, toy_upstream()))) as gateway:
        echo = gateway.visible_tool("alice", "toy.echo")
        assert echo is not None
        assert echo.description == "Echo the text back."
        assert echo.input_schema["properties"]["text"]["type"] == "string"
        assert echo.output_schema is not None and echo.output_schema["properties"]["text"]["type"] == "string"
        assert echo.annotations == {"readOnlyHint": True, "openWorldHint": False}
        outcome = await gateway.call_tool(ALICE, "toy.echo", {"text": "hi"})
        assert outcome.code is OutcomeCode.OK
        assert outcome.structured == {"text": "hi"}
        added = await gateway.call_tool(ALICE, "toy.add", {"a": 2, "b": 40})
        assert added.structured == {"result": 42}


async def test_policy_applies_to_proxied_tools(tmp_path: Path) -> None:
    async with Gateway(load_config(deployment(tmp_path, toy_upstream()))) as gateway:
        assert gateway.visible_tool("bob", "toy.echo") is None
        outcome = await gateway.call_tool(BOB, "toy.echo", {"text": "hi"})
        assert outcome.code is OutcomeCode.UNKNOWN_TOOL
        invalid = await gateway.call_tool(ALICE, "toy.add", {"a": "two", "b": 1})
        assert invalid.code is OutcomeCode.INVALID_ARGUMENTS


async def test_reserved_meta_keys_of_the_upstream_are_stripped(tmp_path: Path) -> None:
    async with Gateway(load_config(deployment(tmp_path, toy_upstream()))) as gateway:
        outcome = await gateway.call_tool(ALICE, "toy.with_meta", {})
    assert outcome.meta == {"toy/trace": "abc"}


async def test_an_upstream_gets_only_its_configured_environment(tmp_path: Path) -> None:
    upstream = toy_upstream()
    upstream["stdio"]["env"] = {"TOY_TOKEN": "configured"}
    async with Gateway(load_config(deployment(tmp_path, upstream))) as gateway:
        outcome = await gateway.call_tool(ALICE, "toy.environment", {})
    assert outcome.structured is not None
    names = set(outcome.structured["env"])
    assert "TOY_TOKEN" in names and "PATH" in names
    assert not names & {"HOME", "PORTCULLIS_SUBJECT", "PYTEST_CURRENT_TEST"}


async def test_progress_from_the_upstream_reaches_the_caller(tmp_path: Path) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        seen.append((value, total, message))

    async with Gateway(load_config(deployment(tmp_path, toy_upstream()))) as gateway:
        outcome = await gateway.call_tool(ALICE, "toy.slow", {"steps": 3}, progress=progress)
    assert outcome.code is OutcomeCode.OK
    assert seen == [(1, 3, "step 1 of 3"), (2, 3, "step 2 of 3"), (3, 3, "step 3 of 3")]


async def test_a_hanging_upstream_times_out_and_its_call_is_cancelled_upstream(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    async with Gateway(load_config(deployment(tmp_path, toy_upstream(timeout_seconds=1)))) as gateway:
        started = time.monotonic()
        outcome = await gateway.call_tool(ALICE, "toy.hang", {"marker": str(marker)})
        assert outcome.code is OutcomeCode.TIMEOUT
        assert time.monotonic() - started < 5
        with anyio.fail_after(10):
            while marker.read_text() != "cancelled":
                await anyio.sleep(0.05)
        after = await gateway.call_tool(ALICE, "toy.echo", {"text": "still here"})
        assert after.code is OutcomeCode.OK


async def test_a_crashed_upstream_fails_fast_and_is_restarted_on_a_later_call(tmp_path: Path) -> None:
    config = load_config(deployment(tmp_path, toy_upstream(restart_backoff_seconds=0.3)))
    async with Gateway(config) as gateway:
        crashed = await gateway.call_tool(ALICE, "toy.crash", {})
        assert crashed.code is OutcomeCode.UPSTREAM_UNAVAILABLE
        other = await gateway.call_tool(ALICE, "crm.get_customer", {"customer_id": "C001"})
        assert other.code is OutcomeCode.OK
        assert {h.source: h.status for h in gateway.health()}["mcp:toy"] == "down"
        with anyio.fail_after(15):
            while (outcome := await gateway.call_tool(ALICE, "toy.echo", {"text": "back"})).code is not OutcomeCode.OK:
                assert outcome.code is OutcomeCode.UPSTREAM_UNAVAILABLE
                await anyio.sleep(0.1)
        assert outcome.structured == {"text": "back"}
        assert {h.source: h.status for h in gateway.health()}["mcp:toy"] == "ok"


@pytest.mark.parametrize(
    ("stdio", "detail"),
    [
        ({"command": sys.executable, "args": [str(UPSTREAMS / "garbage.py")]}, ""),
        ({"command": "/nonexistent/mcp-server"}, "failed to start"),
        ({"command": sys.executable, "args": ["-c", "import time; time.sleep(60)"]}, "did not answer"),
    ],
    ids=["garbage", "missing-command", "silent"],
)
async def test_a_broken_upstream_is_contained(tmp_path: Path, stdio: dict[str, Any], detail: str) -> None:
    broken = {"namespace": "broken", "stdio": stdio, "connect_timeout_seconds": 2, "timeout_seconds": 2}
    config = load_config(deployment(tmp_path, toy_upstream(), broken))
    with anyio.fail_after(20):
        async with Gateway(config) as gateway:
            health = {h.source: h for h in gateway.health()}
            assert health["mcp:broken"].status == "down"
            assert detail in health["mcp:broken"].detail
            assert health["mcp:toy"].status == "ok"
            assert (await gateway.call_tool(ALICE, "toy.echo", {"text": "fine"})).code is OutcomeCode.OK


async def test_a_down_upstream_keeps_its_pinned_tools_and_answers_unavailable(tmp_path: Path) -> None:
    path = deployment(tmp_path, toy_upstream(), new_tools="quarantine")
    pinned = cli("tools", "pin", "--config", str(path))
    assert pinned.returncode == 0, pinned.stderr
    text = path.read_text().replace(str(UPSTREAMS / "toy.py"), str(UPSTREAMS / "missing.py"))
    path.write_text(text)
    async with Gateway(load_config(path)) as gateway:
        assert gateway.visible_tool("alice", "toy.echo") is not None
        started = time.monotonic()
        outcome = await gateway.call_tool(ALICE, "toy.echo", {"text": "x"})
        assert outcome.code is OutcomeCode.UPSTREAM_UNAVAILABLE
        assert time.monotonic() - started < 5


async def test_a_name_collision_between_sources_stops_start_up(tmp_path: Path) -> None:
    path = deployment(tmp_path, toy_upstream())
    (path.parent / "tools" / "toy.py").write_text(
        "from gateway import tool\n\n@tool(read_only=True)\ndef echo(text: str) -> str:\n    return text\n"
    )
    with pytest.raises(ConfigError) as raised:
        async with Gateway(load_config(path)):
            pass
    assert raised.value.problems == ["tool toy.echo is defined by both python:tools and mcp:toy"]


async def test_a_list_changed_upstream_is_rechecked_and_the_changed_tool_quarantined(tmp_path: Path) -> None:
    path = deployment(tmp_path, toy_upstream(), new_tools="quarantine")
    pinned = cli("tools", "pin", "--config", str(path))
    assert pinned.returncode == 0, pinned.stderr
    changed = anyio.Event()
    async with Gateway(load_config(path)) as gateway:

        async def listener() -> None:
            changed.set()

        gateway.on_tools_changed(listener)
        assert (await gateway.call_tool(ALICE, "toy.mutate", {})).code is OutcomeCode.OK
        with anyio.fail_after(10):
            await changed.wait()
        assert gateway.visible_tool("alice", "toy.echo") is None
        outcome = await gateway.call_tool(ALICE, "toy.echo", {"text": "x"})
        assert outcome.code is OutcomeCode.TOOL_DEFINITION_CHANGED
    db = sqlite3.connect(path.parent / "audit" / "audit.db")
    rows = db.execute("SELECT tool, outcome FROM audit_log WHERE event = 'tool.quarantined'").fetchall()
    db.close()
    assert rows == [("toy.echo", "changed")]
