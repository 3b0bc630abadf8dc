"""`tools list --as` says `conditional` when what a subject may do with a tool depends on the arguments,
and lists the rules that decide it; a decision no argument can change stays plain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from gateway.cli import main


def listing(config_path: Path, subject: str, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["tools", "list", "--config", str(config_path), "--as", subject, *extra])
    return result.exit_code, result.stdout


def rows(config_path: Path, subject: str) -> dict[str, dict[str, Any]]:
    code, out = listing(config_path, subject, "--json")
    assert code == 0
    return {row["name"]: row for row in json.loads(out)}


def test_refunds_depend_on_the_amount_for_finance_and_for_a_manager(config_path: Path) -> None:
    bob = rows(config_path, "bob")["payments.refund"]
    assert bob["decision"] == "conditional"
    assert bob["decisions"] == ["deny", "approval_required", "allow"]
    assert [(r["effect"], r["approver"], r["condition"]) for r in bob["rules"]] == [
        ("allow", None, "args.amount <= 100"),
        ("approve", "role:manager", "args.amount > 100 and args.amount <= 10000"),
        ("deny", None, "args.amount > 10000"),
    ]
    carol = rows(config_path, "carol")["payments.refund"]
    assert carol["decision"] == "conditional"
    assert carol["decisions"] == ["approval_required", "allow"]  # her own consent above 5,000


def test_email_allowed_only_to_some_recipients_is_conditional(config_path: Path) -> None:
    alice = rows(config_path, "alice")
    assert alice["email.send"]["decision"] == "conditional"
    assert alice["email.send"]["decisions"] == ["deny", "allow"]
    assert alice["crm.find_customer"]["decision"] == "allow"  # no condition: nothing to depend on
    assert rows(config_path, "erin")["payments.refund"]["decision"] == "allow"  # the admin's rule has none


def test_the_table_names_the_rules_behind_a_conditional_decision(config_path: Path) -> None:
    code, out = listing(config_path, "bob")
    assert code == 0
    refund = next(line for line in out.splitlines() if line.startswith("payments.refund"))
    assert "conditional" in refund.split()
    assert "payments.refund: deny or approval_required or allow" in out
    assert "approve by role:manager when args.amount > 100 and args.amount <= 10000  (policy.csv:" in out
