"""The TypeScript SDK's client (through the MCP Inspector CLI) against `portcullis serve` over stdio.

Claude Desktop, VS Code and the Inspector speak through the TypeScript SDK,
which checks results more strictly than the Python SDK (it validates
`structuredContent` against the tool's `outputSchema` even on error results).
`make test` and `.ci/run` install the Inspector with `npm ci`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import DEMO_VIEW

INSPECTOR = Path(__file__).parent / "js" / "node_modules" / ".bin" / "mcp-inspector"
PORTCULLIS = Path(sys.executable).parent / "portcullis"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not INSPECTOR.exists() or shutil.which("node") is None,
        reason="the MCP Inspector is not installed: run `npm ci --prefix tests/e2e/js` (make test does)",
    ),
]


def inspector(config: Path, subject: str, *method: str) -> dict[str, Any]:
    environment = ["PORTCULLIS_TRANSPORT=stdio", f"PORTCULLIS_SUBJECT={subject}", f"PORTCULLIS_CONFIG={config}"]
    args = [str(INSPECTOR), "--cli"]
    for pair in environment:
        args += ["-e", pair]
    completed = subprocess.run(
        [*args, str(PORTCULLIS), "serve", "--method", *method],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "npm_config_yes": "true"},
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return json.loads(completed.stdout)


def test_a_typescript_client_lists_the_subjects_tools(e2e_config: Path) -> None:
    listed = inspector(e2e_config, "bob", "tools/list")
    assert {tool["name"] for tool in listed["tools"]} == DEMO_VIEW["bob"]


def test_a_typescript_client_gets_structured_results(e2e_config: Path) -> None:
    result = inspector(
        e2e_config, "alice", "tools/call", "--tool-name", "crm.get_customer", "--tool-arg", "customer_id=C004"
    )
    assert result["isError"] is False
    assert result["structuredContent"]["name"] == "Katherine Johnson"


def test_a_typescript_client_gets_a_clear_refusal_from_a_tool_with_an_output_schema(e2e_config: Path) -> None:
    result = inspector(
        e2e_config, "alice", "tools/call", "--tool-name", "tickets.create", "--tool-arg", "customer_id=bad"
    )
    assert result["isError"] is True
    assert result["_meta"]["portcullis/error"]["code"] == "invalid_arguments"
    assert result["content"][0]["text"].startswith("invalid_arguments: ")


def test_a_typescript_client_sees_hidden_tools_as_unknown(e2e_config: Path) -> None:
    result = inspector(e2e_config, "bob", "tools/call", "--tool-name", "email.send", "--tool-arg", "to=x@acme.example")
    assert result["isError"] is True
    assert result["structuredContent"]["code"] == "unknown_tool"
