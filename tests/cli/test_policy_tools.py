"""`policy test` and `policy lint` on the demo policy and on broken copies of it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway import Gateway
from gateway.cli import main
from gateway.pipeline import Caller


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_the_demo_policy_passes_its_own_tests(config_path: Path) -> None:
    code, out, _ = run("policy", "test", "--config", str(config_path))
    assert code == 0
    assert out.strip().endswith("passed, 0 failed")
    assert int(out.split()[0]) >= 30


def test_a_wrong_expectation_fails_with_the_reason(config_path: Path, tmp_path: Path) -> None:
    cases = tmp_path / "wrong_test.yaml"
    cases.write_text(
        "tests:\n"
        "  - {name: refunds are free, subject: bob, tool: payments.refund, args: {amount: 50000}, expect: allow}\n"
        "  - {name: support emails acme, subject: alice, tool: email.send, args: {to: a@acme.example}, expect: allow}\n"
    )
    code, out, _ = run("policy", "test", "--config", str(config_path), str(cases), "--json")
    results = json.loads(out)
    assert code == 1
    assert [r["passed"] for r in results] == [False, True]
    assert results[0]["problem"].startswith("expected allow, got deny")


def test_a_malformed_test_file_is_reported(config_path: Path, tmp_path: Path) -> None:
    cases = tmp_path / "bad_test.yaml"
    cases.write_text("tests:\n  - {name: no target, subject: bob, expect: allow}\n")
    code, _, err = run("policy", "test", "--config", str(config_path), str(cases))
    assert code == 1 and "give exactly one of 'tool' or 'object'" in err


def test_lint_passes_the_demo_with_only_warnings(config_path: Path) -> None:
    code, out, _ = run("policy", "lint", "--config", str(config_path), "--json")
    findings = json.loads(out)
    assert code == 0
    assert {f["level"] for f in findings} == {"warning"}


def test_lint_reports_errors_and_warnings(config_path: Path) -> None:
    policy = config_path.parent / "policies" / "policy.csv"
    policy.write_text(
        policy.read_text()
        + "p, role:crm-reader, crm.find_customer, call, allow\n"  # duplicate
        + "p, role:ghost, tickets.list, call, allow\n"  # role nobody has
        + "p, role:support, crm.find_custmer, call, allow\n"  # typo in the tool name
        + "p, role:support, tickets.list, call, allow\n"  # shadowed by the next line
        + "p, role:support, tickets.*, call, deny\n"  # (and contradicts the tickets.* allow)
        + "p, role:crm-reader, crm.get_customer, call, deny\n"  # contradicts the crm-reader allow
        + "g, role:unused, role:orphan\n"
        + "p, role:orphan, kb.search, call, allow\n"
    )
    code, out, _ = run("policy", "lint", "--config", str(config_path), "--json")
    findings = json.loads(out)
    messages = [(f["level"], f["message"]) for f in findings]
    assert code == 1

    def has(level: str, text: str) -> bool:
        return any(lvl == level and text in message for lvl, message in messages)

    assert has("error", "duplicate of the rule at")
    assert has("error", "no role 'role:ghost'")
    assert has("error", "no tool named 'crm.find_custmer'")
    assert has("warning", "role 'role:orphan' is held by no subject")
    assert has("warning", "shadowed by the deny rule at")
    assert has("error", "contradicted by the deny rule at")


@pytest.mark.anyio
async def test_replay_lists_the_recorded_calls_a_candidate_policy_would_decide_differently(
    gateway: Gateway, config_path: Path, tmp_path: Path
) -> None:
    bob = Caller(subject="bob", auth="test", transport="test")
    alice = Caller(subject="alice", auth="test", transport="test")
    await gateway.call_tool(bob, "payments.refund", {"customer_id": "C001", "amount": 80, "reason": "r"})
    await gateway.call_tool(bob, "payments.refund", {"customer_id": "C001", "amount": 800, "reason": "r"})
    await gateway.call_tool(alice, "crm.find_customer", {"query": "ada"})
    candidate = tmp_path / "candidate"
    shutil.copytree(config_path.parent / "policies", candidate)
    rules = candidate / "policy.csv"
    rules.write_text(rules.read_text().replace("when args.amount <= 100", "when args.amount <= 50"))
    code, out, _ = run("policy", "replay", "--config", str(config_path), "--policy", str(candidate), "--json")
    report = json.loads(out)
    assert code == 0
    assert report["replayed"] == 3
    assert [(c["subject"], c["tool"], c["old"], c["new"]) for c in report["changes"]] == [
        ("bob", "payments.refund", "allow", "deny")
    ]
    unchanged = run("policy", "replay", "--config", str(config_path), "--policy", str(config_path.parent / "policies"))
    assert unchanged[0] == 0 and "0 decision(s) would change" in unchanged[1]
