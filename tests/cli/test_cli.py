"""The CLI's contracts: --json shapes other programs rely on, exit codes, errors on stderr."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import DEMO_VIEW

from gateway import Gateway
from gateway.cli import main
from gateway.pipeline import Caller

pytestmark = pytest.mark.anyio


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_tools_list_json_shows_the_catalog_as_a_subject_sees_it(config_path: Path) -> None:
    code, out, _ = run("tools", "list", "--config", str(config_path), "--as", "bob", "--json")
    assert code == 0
    tools = json.loads(out)
    assert {t["name"] for t in tools} == DEMO_VIEW["bob"]
    assert all({"name", "description", "source"} <= set(t) for t in tools)
    assert {t["name"]: t["decision"] for t in tools}["payments.refund"] == "conditional"


def test_tools_list_for_a_subject_without_roles_is_empty(config_path: Path) -> None:
    code, out, _ = run("tools", "list", "--config", str(config_path), "--as", "mallory", "--json")
    assert code == 0 and json.loads(out) == []


def test_policy_check_explains_the_decision_without_calling_anything(config_path: Path) -> None:
    args = json.dumps({"customer_id": "C001", "amount": 2000, "reason": "duplicate charge"})
    code, out, _ = run(
        "policy", "check", "--config", str(config_path), "bob", "payments.refund", "--args", args, "--json"
    )
    assert code == 0
    report = json.loads(out)
    assert report["decision"] == "approval_required"
    assert report["rule"].startswith("p, role:finance, payments.refund, call, approve, approver role:manager, when")
    assert report["approver"] == "role:manager" and report["quorum"] == 1
    assert [(m["effect"], m["condition_value"]) for m in report["matches"]] == [
        ("allow", False),
        ("approve", True),
        ("deny", False),
    ]
    assert not (config_path.parent / "audit" / "audit.db").exists()


def test_policy_check_reports_guardrail_findings(config_path: Path) -> None:
    args = '{"customer_id": "X1", "subject": "s"}'
    code, out, _ = run(
        "policy", "check", "--config", str(config_path), "alice", "tickets.create", "--args", args, "--json"
    )
    report = json.loads(out)
    assert code == 0 and report["decision"] == "allow" and report["outcome"] == "invalid_arguments"
    assert {f["path"] for f in report["findings"]} == {"$", "$.customer_id"}


@pytest.mark.parametrize(
    ("subject", "tool", "arguments", "decision", "outcome"),
    [
        ("bob", "payments.refund", {"customer_id": "C001", "amount": 100, "reason": "r"}, "allow", "ok"),
        (
            "bob",
            "payments.refund",
            {"customer_id": "C001", "amount": 100.5, "reason": "r"},
            "approval_required",
            "approval_required",
        ),
        ("bob", "payments.refund", {"customer_id": "C001", "amount": 10001, "reason": "r"}, "deny", "denied"),
        ("bob", "payments.refund", {"customer_id": "C001", "reason": "no amount"}, "deny", "denied"),
        ("carol", "payments.refund", {"customer_id": "C001", "amount": 5000, "reason": "r"}, "allow", "ok"),
        (
            "carol",
            "payments.refund",
            {"customer_id": "C001", "amount": 50000, "reason": "r"},
            "approval_required",
            "consent_required",
        ),
        ("alice", "email.send", {"to": "ops@acme.example", "subject": "s", "body": "b"}, "allow", "ok"),
        ("alice", "email.send", {"to": "ops@acme.example.evil.com", "subject": "s", "body": "b"}, "deny", "denied"),
        ("erin", "crm.delete_customer", {"customer_id": "C001"}, "approval_required", "approval_required"),
    ],
)
def test_the_demo_policy_decides_on_arguments(
    config_path: Path, subject: str, tool: str, arguments: dict[str, object], decision: str, outcome: str
) -> None:
    code, out, _ = run(
        "policy", "check", "--config", str(config_path), subject, tool, "--args", json.dumps(arguments), "--json"
    )
    report = json.loads(out)
    assert (code, report["decision"], report["outcome"]) == (0, decision, outcome)


def test_policy_check_rejects_arguments_that_are_not_json(config_path: Path) -> None:
    code, _, err = run("policy", "check", "--config", str(config_path), "bob", "crm.get_customer", "--args", "{")
    assert code == 2 and "not JSON" in err


def test_a_broken_config_is_reported_on_stderr_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "portcullis.yaml").write_text("server:\n  port: 99999\n")
    code, out, err = run("tools", "list", "--config", str(tmp_path / "portcullis.yaml"))
    assert code == 1 and out == ""
    assert f"{tmp_path / 'portcullis.yaml'}:2: server.port:" in err


def test_a_broken_policy_file_is_reported_with_its_line(config_path: Path) -> None:
    policy = config_path.parent / "policies" / "policy.csv"
    policy.write_text(policy.read_text() + "p, alice, crm.*, call, maybe\n")
    lines = len(policy.read_text().splitlines())
    code, _, err = run("tools", "list", "--config", str(config_path))
    assert code == 1 and f"policy.csv:{lines}: unknown effect 'maybe'" in err


def test_a_condition_reading_an_argument_the_tool_lacks_is_a_load_error(config_path: Path) -> None:
    policy = config_path.parent / "policies" / "policy.csv"
    policy.write_text(policy.read_text() + 'p, role:support, email.send, call, deny, when args.cc endswith "@x"\n')
    lines = len(policy.read_text().splitlines())
    code, _, err = run("tools", "list", "--config", str(config_path))
    assert code == 1
    assert f"policy.csv:{lines}: condition reads args.cc, but email.send has no argument 'cc'" in err


def test_serve_on_stdio_refuses_to_start_without_an_identity(
    config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PORTCULLIS_SUBJECT", raising=False)
    code, _, err = run("serve", "--config", str(config_path), "--transport", "stdio")
    assert code == 1 and "is not mapped in identity.os_users" in err


def test_serve_on_stdio_refuses_a_chosen_subject_unless_the_deployment_allows_it(config_path: Path) -> None:
    config_path.write_text(
        config_path.read_text().replace("allow_choosing_subject: true", "allow_choosing_subject: false")
    )
    code, _, err = run("serve", "--config", str(config_path), "--transport", "stdio", "--as", "erin")
    assert code == 1 and "does not let the caller choose its subject" in err


async def fill(gateway: Gateway) -> None:
    alice = Caller(subject="alice", auth="test", transport="test")
    bob = Caller(subject="bob", auth="test", transport="test")
    await gateway.call_tool(alice, "crm.find_customer", {"query": "ada"})
    await gateway.call_tool(alice, "payments.refund", {"customer_id": "C001", "amount": 500, "reason": "r"})
    await gateway.call_tool(bob, "payments.refund", {"customer_id": "C001", "amount": 500, "reason": "r"})


async def test_audit_query_filters_and_prints_the_json_contract(gateway: Gateway, config_path: Path) -> None:
    await fill(gateway)
    code, out, _ = run("audit", "query", "--config", str(config_path), "--event", "tool.call", "--json")
    records = json.loads(out)
    assert code == 0 and len(records) == 3
    assert all({"seq", "ts", "subject", "tool", "decision", "outcome"} <= set(r) for r in records)
    code, out, _ = run("audit", "query", "--config", str(config_path), "--decision", "deny", "--json")
    assert [(r["subject"], r["tool"]) for r in json.loads(out)] == [("alice", "payments.refund")]
    code, out, _ = run(
        "audit", "query", "--config", str(config_path), "--tool", "payments.*", "--subject", "bob", "--json"
    )
    assert [r["outcome"] for r in json.loads(out)] == ["approval_required"]
    code, out, _ = run("audit", "query", "--config", str(config_path), "--since", "1h", "--limit", "2", "--json")
    assert len(json.loads(out)) == 2
    code, _, err = run("audit", "query", "--config", str(config_path), "--since", "yesterday")
    assert code == 2 and "--since" in err


async def test_approvals_list_shows_the_pending_request(gateway: Gateway, config_path: Path) -> None:
    await fill(gateway)
    code, out, _ = run("approvals", "list", "--config", str(config_path), "--json")
    (request,) = json.loads(out)
    assert code == 0
    assert (request["subject"], request["tool"], request["status"]) == ("bob", "payments.refund", "pending")
    assert request["arguments"] == {"customer_id": "C001", "amount": 500, "reason": "r"}
    assert request["approver_role"] == "role:manager"


async def test_audit_verify_exits_non_zero_with_the_first_bad_record(gateway: Gateway, config_path: Path) -> None:
    await fill(gateway)
    await gateway.stop()
    code, out, err = run("audit", "verify", "--config", str(config_path))
    assert code == 0 and "chain intact" in out, out + err
    db = sqlite3.connect(config_path.parent / "audit" / "audit.db")
    db.executescript("DROP TRIGGER audit_no_update;")
    db.execute("UPDATE audit_log SET body = replace(body, '\"alice\"', '\"carol\"') WHERE seq = 3")
    db.commit()
    db.close()
    code, out, err = run("audit", "verify", "--config", str(config_path), "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and report["first_bad_seq"] == 3


def test_audit_commands_explain_a_missing_database(config_path: Path) -> None:
    code, _, err = run("audit", "verify", "--config", str(config_path))
    assert code == 1 and "no audit database" in err


async def test_audit_query_formats_paging_and_body_filters(gateway: Gateway, config_path: Path) -> None:
    await fill(gateway)
    base = ["audit", "query", "--config", str(config_path), "--event", "tool.call"]
    code, out, _ = run(*base, "--format", "jsonl")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["seq"] for r in lines] == sorted((r["seq"] for r in lines), reverse=True)
    first, second = run(*base, "--limit", "1", "--json")[1], run(*base, "--limit", "1", "--page", "2", "--json")[1]
    assert json.loads(first)[0]["seq"] > json.loads(second)[0]["seq"]
    code, out, _ = run(*base, "--format", "csv")
    assert out.splitlines()[0].startswith("seq,ts,event,subject,tool,decision,outcome")
    assert len(out.splitlines()) == 4
    code, out, _ = run(*base, "--text", "role:finance", "--json")
    assert [(r["subject"], r["tool"]) for r in json.loads(out)] == [("bob", "payments.refund")]
    approval = json.loads(run(*base, "--subject", "bob", "--json")[1])[0]["approval_id"]
    code, out, _ = run("audit", "query", "--config", str(config_path), "--approval", approval, "--json")
    assert {r["subject"] for r in json.loads(out)} == {"bob"}
    code, out, _ = run(*base, "--until", "1h", "--json")
    assert json.loads(out) == []


async def test_audit_stats_counts_decisions_tools_and_denials(gateway: Gateway, config_path: Path) -> None:
    await fill(gateway)
    code, out, _ = run("audit", "stats", "--config", str(config_path), "--json")
    report = json.loads(out)
    assert code == 0
    assert {r["decision"]: r["calls"] for r in report["by_decision"]} == {"allow": 1, "deny": 1, "approval_required": 1}
    assert report["top_denied"] == [{"subject": "alice", "tool": "payments.refund", "calls": 1}]


async def test_an_export_carries_the_chain_so_a_copy_verifies_elsewhere(gateway: Gateway, config_path: Path) -> None:
    from gateway.audit import chain_hash
    from gateway.canonical import canonical_json

    await fill(gateway)
    await gateway.stop()
    code, out, _ = run("audit", "export", "--config", str(config_path))
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(lines) > 4
    previous = "0" * 64
    for line in lines:
        body = canonical_json({k: v for k, v in line.items() if k not in ("prev_hash", "hash")})
        assert line["prev_hash"] == previous
        assert chain_hash(line["prev_hash"], body) == line["hash"]
        previous = line["hash"]
    code, out, _ = run("audit", "export", "--config", str(config_path), "--format", "ocsf")
    events = [json.loads(line) for line in out.splitlines()]
    assert {e["class_uid"] for e in events} == {6003}
    assert any(e["status"] == "Failure" and e["api"]["operation"] == "payments.refund" for e in events)
