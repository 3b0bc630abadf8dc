"""An upstream tool's error result passes the output guardrails like any result, through real clients
on every transport and era (issue 12, item 2)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from mcp import types
from servers import IN_PROCESS, Servers, connector, real
from support import Connect, make_deployment, set_guardrails
from upstreams.injector import INJECTION, SECRET, upstream

from gateway.mcp_server import AUDIT_ID_META_KEY, ERROR_META_KEY

pytestmark = pytest.mark.anyio
FINDINGS = "portcullis/findings"


@pytest.fixture(scope="module")
def injector_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = make_deployment(
        tmp_path_factory.mktemp("error-results") / "deployment",
        extra_policy="p, role:support, inj.*, call, allow\n",
        changes={"upstreams": [upstream(timeout_seconds=20)], "tools": {"new_tools": "allow"}},
    )
    set_guardrails(config.parent, [{"tools": "inj.*", "outputs": {"injection": "annotate", "secrets": "redact"}}])
    return config


@pytest.fixture
def connect(mode: str, injector_config: Path, servers: Servers) -> Connect:
    return connector(injector_config, mode, servers)


def audited(config: Path, seq: int) -> dict[str, Any]:
    with sqlite3.connect(config.parent / "audit" / "audit.db") as db:
        (body,) = db.execute("SELECT body FROM audit_log WHERE seq = ?", (seq,)).fetchone()
    return dict(json.loads(body))


def texts(result: types.CallToolResult) -> list[str]:
    return [block.text for block in result.content if isinstance(block, types.TextContent)]


@pytest.mark.parametrize("mode", [*IN_PROCESS, *real("http-legacy", "http-auto")])
async def test_instructions_in_an_upstream_error_result_are_annotated(connect: Connect, injector_config: Path) -> None:
    async with connect("alice") as client:
        result = await client.call_tool("inj.fail_with_instructions", {})
    assert result.is_error and result.meta is not None
    notice, original = texts(result)
    assert notice.startswith("[Portcullis]") and "injection.instructions" in notice
    assert original == f"Error: {INJECTION}"  # annotated, not removed: the agent is told what it is
    assert [(f["rule"], f["action"]) for f in result.meta[FINDINGS]] == [("injection.instructions", "annotate")]
    details = result.meta[ERROR_META_KEY]
    assert details["code"] == "tool_failed" and details["tool_error"] is True
    assert "SSH key" not in details["message"]  # the refusal's message does not repeat it without the notice
    record = audited(injector_config, result.meta[AUDIT_ID_META_KEY])
    assert record["outcome"] == "tool_failed"
    assert ("injection.instructions", "annotate") in [(f["rule"], f["action"]) for f in record["findings"]]


async def test_a_secret_in_an_upstream_error_result_is_redacted_everywhere(
    connect: Connect, injector_config: Path
) -> None:
    async with connect("alice") as client:
        result = await client.call_tool("inj.fail_with_secret", {})
    assert result.is_error and result.meta is not None
    assert texts(result) == ["Error: login with token <SECRET> was refused"]
    details = result.meta[ERROR_META_KEY]
    assert details["code"] == "tool_failed"
    assert details["message"].endswith("reported an error: Error: login with token <SECRET> was refused")
    assert details["injector/trace"] == "t-1"  # the upstream's own _meta is passed on as before
    assert FINDINGS not in result.meta  # ... but not a key in the gateway's namespace it tried to forge
    assert SECRET not in result.model_dump_json()
    record = audited(injector_config, result.meta[AUDIT_ID_META_KEY])
    assert SECRET not in json.dumps(record)
    assert [(f["rule"], f["action"]) for f in record["findings"]] == [("secrets.github_token", "redact")]
