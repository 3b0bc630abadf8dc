"""An upstream's resources, prompts and completions pass the same stages as tool calls (rate limits, output
guardrails, intent and outcome records), through real clients on every transport and era (issue 12, item 6)."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from mcp import MCPError, types
from servers import MODES, Servers, connector
from support import Connect, make_deployment, set_guardrails
from upstreams.injector import INJECTION, SECRET, upstream

pytestmark = pytest.mark.anyio
FINDINGS = "portcullis/findings"
READS_PER_HOUR = 2


@pytest.fixture(scope="module")
def injector_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = make_deployment(
        tmp_path_factory.mktemp("governed-resources") / "deployment",
        extra_policy="p, role:support, inj.*, call, allow\np, role:support, inj.*, read, allow\n"
        "p, role:support, inj.*, get, allow\n",
        changes={"upstreams": [upstream(timeout_seconds=20)], "tools": {"new_tools": "allow"}},
    )
    set_guardrails(
        config.parent,
        [{"tools": "inj.*", "outputs": {"injection": "annotate", "secrets": "redact"}}],
        rate_limits=[{"tools": "inj.inj://counted/*", "rate": READS_PER_HOUR, "per_seconds": 3600}],
    )
    return config


@pytest.fixture
def connect(mode: str, injector_config: Path, servers: Servers) -> Connect:
    return connector(injector_config, mode, servers)


def records(config: Path, tool: str) -> list[dict[str, Any]]:
    with sqlite3.connect(config.parent / "audit" / "audit.db") as db:
        rows = db.execute("SELECT seq, body FROM audit_log WHERE tool = ? ORDER BY seq", (tool,)).fetchall()
    return [{**json.loads(body), "seq": seq} for seq, body in rows]


def text_of(result: types.ReadResourceResult) -> str:
    (content,) = result.contents
    assert isinstance(content, types.TextResourceContents)
    return content.text


async def test_instructions_in_a_resource_are_annotated_before_the_client_reads_them(connect: Connect) -> None:
    async with connect("alice") as client:
        result = await client.read_resource("inj://notes/poisoned")
    text = text_of(result)
    assert text.startswith("[Portcullis]") and "injection.instructions" in text.split("\n")[0]
    assert text.endswith(f"Meeting notes.\n{INJECTION}")
    assert result.meta is not None
    assert [(f["rule"], f["action"], f["path"]) for f in result.meta[FINDINGS]] == [
        ("injection.instructions", "annotate", "$.contents[0].text")
    ]


async def test_a_secret_in_a_resource_is_redacted_before_the_client_reads_it(connect: Connect) -> None:
    async with connect("alice") as client:
        result = await client.read_resource("inj://notes/credentials")
    assert text_of(result) == "The deploy token is <SECRET> (rotate monthly)."
    assert SECRET not in result.model_dump_json()


async def test_a_prompt_is_annotated_and_redacted_before_the_client_gets_it(connect: Connect) -> None:
    async with connect("alice") as client:
        result = await client.get_prompt("inj.summarise", {"topic": "the quarter"})
    (message,) = result.messages
    assert isinstance(message.content, types.TextContent)
    notice, _, text = message.content.text.partition("\n\n")
    assert notice.startswith("[Portcullis]")
    assert text == f"Summarise the quarter. {INJECTION} Use token <SECRET>."
    assert result.meta is not None and result.meta[FINDINGS][0]["rule"] == "injection.instructions"
    assert SECRET not in result.model_dump_json()


@pytest.mark.parametrize("mode", MODES)  # a refusal on the wire is an error response
async def test_a_rate_limit_on_a_resource_refuses_the_read_after_the_limit(connect: Connect) -> None:
    uri = f"inj://counted/{uuid.uuid4().hex}"
    async with connect("alice") as client:
        for _ in range(READS_PER_HOUR):
            assert text_of(await client.read_resource(uri)).startswith("note ")
        with pytest.raises(MCPError) as raised:
            await client.read_resource(uri)
    assert raised.value.error.data["code"] == "rate_limited"
    assert raised.value.error.data["retry_after"] > 0


async def test_a_resource_read_is_recorded_as_intent_then_outcome_with_its_findings(
    connect: Connect, injector_config: Path
) -> None:
    async with connect("alice") as client:
        await client.read_resource("inj://notes/poisoned")
    rows = records(injector_config, "inj.inj://notes/poisoned")
    outcome = rows[-1]
    intents = [r for r in rows if r["call_id"] == outcome["call_id"] and r is not outcome]
    assert [(r["event"], r["outcome"]) for r in intents] == [("resource.intent", "started")]
    assert intents[0]["seq"] < outcome["seq"]
    assert (outcome["event"], outcome["subject"], outcome["outcome"]) == ("resource.read", "alice", "ok")
    assert [(f["rule"], f["action"]) for f in outcome["findings"]] == [("injection.instructions", "annotate")]
    assert outcome["result_digest"] is not None
