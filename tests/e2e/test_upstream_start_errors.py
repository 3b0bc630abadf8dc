"""An upstream that cannot start is reported with its cause, not as "unhandled errors in a TaskGroup":
to the operator's `tools list`, to the log, and to the agent calling one of its (pinned) tools (issue 14, item 7)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import anyio
import pytest
import yaml
from mcp import Client, StdioServerParameters
from support import make_deployment, portcullis, toy_upstream

from gateway import Gateway
from gateway.config import load_config
from gateway.mcp_server import ERROR_META_KEY
from gateway.sources.mcp_upstream import describe

pytestmark = pytest.mark.anyio
NOT_EXECUTABLE = Path(__file__)
COMMANDS = {
    "missing-name": ("no-such-mcp-server-14", "No such file or directory"),
    "missing-path": ("/nonexistent/mcp-server", "No such file or directory"),
    "not-executable": (str(NOT_EXECUTABLE), "Permission denied"),
}


def broken_deployment(tmp_path: Path, command: str) -> Path:
    """The toy upstream, pinned while it worked, then pointed at `command`."""
    path = make_deployment(
        tmp_path / "deployment",
        extra_policy="p, role:support, toy.*, call, allow\n",
        changes={"upstreams": [toy_upstream(connect_timeout_seconds=10)], "tools": {"new_tools": "quarantine"}},
    )
    pinned = portcullis("tools", "pin", "--config", str(path))
    assert pinned.returncode == 0, pinned.stderr
    config = yaml.safe_load(path.read_text())
    config["upstreams"][0]["stdio"] = {"command": command}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.parametrize(("command", "cause"), COMMANDS.values(), ids=COMMANDS.keys())
async def test_the_cause_reaches_the_health_report_and_the_log(
    tmp_path: Path, command: str, cause: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert not NOT_EXECUTABLE.stat().st_mode & 0o111
    path = broken_deployment(tmp_path, command)
    with caplog.at_level(logging.WARNING, logger="gateway.sources.mcp_upstream"), anyio.fail_after(20):
        async with Gateway(load_config(path)) as gateway:
            health = {h.source: h for h in gateway.health()}["mcp:toy"]
    assert health.status == "down"
    assert cause in health.detail and command in health.detail
    assert "TaskGroup" not in health.detail
    logged = [r.getMessage() for r in caplog.records if r.name == "gateway.sources.mcp_upstream"]
    assert logged and all(cause in line and "TaskGroup" not in line for line in logged)


async def test_tools_list_shows_the_cause(tmp_path: Path) -> None:
    path = broken_deployment(tmp_path, "no-such-mcp-server-14")
    listed = portcullis("tools", "list", "--config", str(path))
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if line.startswith("mcp:toy")]
    assert "down" in row and "failed to start: no-such-mcp-server-14" in row
    # the table cuts long cells; the whole cause is on stderr, where the warning is logged
    assert "no-such-mcp-server-14: not found on its PATH (No such file or directory)" in listed.stderr
    assert "TaskGroup" not in listed.stdout + listed.stderr
    # scripts get the whole cause too: every tool of the source carries it
    as_json = portcullis("tools", "list", "--config", str(path), "--json")
    toy = [row for row in json.loads(as_json.stdout) if row["source"] == "mcp:toy"]
    assert toy and all(row["source_status"] == "down" for row in toy)
    assert all("No such file or directory" in row["source_detail"] for row in toy)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_the_agent_is_told_the_cause(tmp_path: Path, mode: str) -> None:
    path = broken_deployment(tmp_path, "no-such-mcp-server-14")
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "gateway", "serve", "--transport", "stdio", "--config", str(path), "--as", "alice"],
        cwd=str(path.parent),
    )
    async with Client(params, mode=mode) as client:
        result = await client.call_tool("toy.echo", {"text": "hi"})
    assert result.is_error and result.meta is not None
    details = result.meta[ERROR_META_KEY]
    assert details["code"] == "upstream_unavailable"
    assert "No such file or directory" in details["message"] and "TaskGroup" not in details["message"]


def test_a_cause_is_found_inside_nested_task_group_errors() -> None:
    wrapped = ExceptionGroup("unhandled errors in a TaskGroup", [ExceptionGroup("inner", [OSError("pipe broke")])])
    assert describe(wrapped) == "OSError: pipe broke"
    assert describe(BaseExceptionGroup("outer", [asyncio.CancelledError(), EOFError()])) == "EOFError"
