"""`audit query` filters as the README and `--help` describe them (issue 14, item 5)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support import REPO

from gateway import Gateway
from gateway.cli import main
from gateway.pipeline import Caller

pytestmark = pytest.mark.anyio
ALICE = Caller(subject="alice", auth="test", transport="test")


def query(config_path: Path, *args: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(main, ["audit", "query", "--config", str(config_path), *args, "--json"])
    assert result.exit_code == 0, result.output
    records: list[dict[str, Any]] = json.loads(result.stdout)
    return records


async def test_text_finds_recorded_argument_values_but_never_inside_a_hash(gateway: Gateway, config_path: Path) -> None:
    await gateway.call_tool(ALICE, "crm.find_customer", {"query": "Hopper"})
    sent = {"to": "grace@acme.example", "subject": "Your refund", "body": "Processed on Tuesday"}
    await gateway.call_tool(ALICE, "email.send", sent)

    found = query(config_path, "--event", "tool.call", "--text", "hopper")
    assert [(r["tool"], r["arguments"]) for r in found] == [("crm.find_customer", {"query": "Hopper"})]
    found = query(config_path, "--event", "tool.call", "--text", "on tuesday")
    assert [r["tool"] for r in found] == ["email.send"]

    (record,) = query(config_path, "--event", "tool.call", "--tool", "email.send")
    hashed = record["arguments"]["to"]
    assert hashed.startswith("hmac-sha256:")  # `to` is a personal key in the demo
    assert query(config_path, "--text", hashed.split(":")[1][10:22]) == []
    assert query(config_path, "--text", "grace@") == []  # its value was recorded only as a hash


async def test_event_takes_a_glob(gateway: Gateway, config_path: Path) -> None:
    rules = config_path.parent / "policies" / "policy.csv"
    rules.write_text(rules.read_text() + "\n# a harmless edit\n")
    assert await gateway.reload()
    rules.write_text(rules.read_text() + "\np, role:support, crm.*, call, maybe\n")
    assert not await gateway.reload()

    events = [r["event"] for r in query(config_path, "--event", "policy.reload*")]
    assert events == ["policy.reload_failed", "policy.reload"]
    assert [r["event"] for r in query(config_path, "--event", "policy.reload")] == ["policy.reload"]


async def test_json_comes_newest_first_as_the_readme_contract_says(gateway: Gateway, config_path: Path) -> None:
    for text in ("one", "two", "three"):
        await gateway.call_tool(ALICE, "crm.find_customer", {"query": text})
    seqs = [r["seq"] for r in query(config_path, "--event", "tool.call")]
    assert len(seqs) == 3 and seqs == sorted(seqs, reverse=True)

    readme = (REPO / "README.md").read_text()
    contract = readme[readme.index("`--json` output is a contract:") :]
    item = re.search(r"^- `audit query`: (.+?)(?=^- )", contract, re.MULTILINE | re.DOTALL)
    assert item is not None
    assert "newest first" in item.group(1) and "oldest first" not in item.group(1)
