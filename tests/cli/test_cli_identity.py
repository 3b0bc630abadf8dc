"""The CLI acts as the OS user's subject (identity.os_users); `--as` only where the deployment allows choosing.

A deployment with `allow_choosing_subject: false`: a requester with a shell account must not
approve their own request, or run a plan, under another subject's name.
"""

from __future__ import annotations

import json
import os
import pwd
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from click.testing import CliRunner
from support import make_deployment

from gateway import Gateway, OutcomeCode
from gateway.approvals import ApprovalStatus
from gateway.cli import main
from gateway.config import load_config
from gateway.pipeline import Caller

ME = pwd.getpwuid(os.geteuid()).pw_name
"""The account running the tests (root here), whatever $USER says."""
REFUND = {"customer_id": "C004", "amount": 500, "reason": "late delivery"}


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def locked(tmp_path: Path, os_users: dict[str, str]) -> Path:
    """The demo with choosing the subject switched off and OS users mapped to subjects."""
    identity = {"os_users": os_users, "allow_choosing_subject": False}
    return make_deployment(tmp_path / "d", changes={"identity": identity})


def remap(config: Path, os_users: dict[str, str]) -> None:
    data = yaml.safe_load(config.read_text())
    data["identity"]["os_users"] = os_users
    config.write_text(yaml.safe_dump(data, sort_keys=False))


def bob_requests_a_refund(config: Path) -> str:
    async def request() -> str:
        async with Gateway(load_config(config)) as gateway:
            outcome = await gateway.call_tool(
                Caller(subject="bob", auth="test", transport="test"), "payments.refund", REFUND
            )
        assert outcome.code is OutcomeCode.APPROVAL_REQUIRED
        return str(outcome.data["approval_id"])

    return anyio.run(request)


def run_the_queue(config: Path, request_id: str) -> ApprovalStatus:
    """Start the gateway, execute whatever is approved, and say where the request ended up."""

    async def drain() -> ApprovalStatus:
        async with Gateway(load_config(config)) as gateway:
            await gateway.approvals.run_approved()
            # the gateway's own worker may have claimed it first: wait for whichever runs it to finish
            request = await gateway.approvals.wait(request_id, 30)
        assert request is not None
        return request.status

    return anyio.run(drain)


def refunds(config: Path) -> list[tuple[str, str]]:
    """The demo payments tool's side effect: (customer, issued_by) per refund written to data/acme.db."""
    database = config.parent / "data" / "acme.db"
    if not database.exists():
        return []
    db = sqlite3.connect(database)
    rows = db.execute("SELECT customer_id, issued_by FROM refunds WHERE customer_id = 'C004'").fetchall()
    db.close()
    return [(str(customer), str(issuer)) for customer, issuer in rows]


def audit_bodies(config: Path, event: str) -> list[dict[str, Any]]:
    db = sqlite3.connect(config.parent / "audit" / "audit.db")
    rows = db.execute("SELECT body FROM audit_log WHERE event = ? ORDER BY seq", (event,)).fetchall()
    db.close()
    return [json.loads(body) for (body,) in rows]


def decisions(config: Path, request_id: str) -> tuple[str, list[str]]:
    code, out, err = cli("approvals", "show", request_id, "--config", str(config), "--json")
    assert code == 0, err
    shown = json.loads(out)
    return shown["status"], [d["approver"] for d in shown["decisions"]]


@pytest.mark.parametrize("verb", [("approve",), ("deny", "--reason", "duplicate")], ids=["approve", "deny"])
def test_a_requester_cannot_decide_their_own_request_by_naming_an_approver(
    tmp_path: Path, verb: tuple[str, ...]
) -> None:
    config = locked(tmp_path, {ME: "bob"})
    request_id = bob_requests_a_refund(config)
    code, _, err = cli("approvals", verb[0], request_id, *verb[1:], "--as", "carol", "--config", str(config))
    assert code == 1
    assert "identity.allow_choosing_subject" in err and repr(ME) in err and "'bob'" in err
    assert decisions(config, request_id) == ("pending", [])
    assert run_the_queue(config, request_id) is ApprovalStatus.PENDING
    assert refunds(config) == []


def test_the_mapped_approver_approves_without_naming_anyone_and_the_record_names_the_os_user(tmp_path: Path) -> None:
    config = locked(tmp_path, {ME: "bob"})
    request_id = bob_requests_a_refund(config)
    remap(config, {ME: "carol"})
    code, out, err = cli("approvals", "approve", request_id, "--config", str(config), "--json")
    assert code == 0, err
    assert json.loads(out)["status"] == "approved"
    assert decisions(config, request_id) == ("approved", ["carol"])
    (record,) = audit_bodies(config, "approval.approve")
    assert (record["subject"], record["auth"]) == ("carol", f"cli:os_user:{ME}")
    assert run_the_queue(config, request_id) is ApprovalStatus.SUCCEEDED
    assert refunds(config) == [("C004", "bob")]


def test_naming_the_subject_the_os_user_maps_to_is_accepted(tmp_path: Path) -> None:
    config = locked(tmp_path, {ME: "bob"})
    request_id = bob_requests_a_refund(config)
    remap(config, {ME: "carol"})
    code, _, err = cli("approvals", "approve", request_id, "--as", "carol", "--config", str(config))
    assert code == 0, err
    (record,) = audit_bodies(config, "approval.approve")
    assert (record["subject"], record["auth"]) == ("carol", f"cli:os_user:{ME}")


def test_setting_user_in_the_environment_does_not_change_the_os_user(tmp_path: Path) -> None:
    config = locked(tmp_path, {ME: "bob", "carol-account": "carol"})
    request_id = bob_requests_a_refund(config)
    spoofed = {
        "USER": "carol-account",
        "LOGNAME": "carol-account",
        "LNAME": "carol-account",
        "USERNAME": "carol-account",
    }
    code, _, err = cli("approvals", "approve", request_id, "--config", str(config), env=spoofed)
    assert code == 1 and "self_approval" in err
    assert decisions(config, request_id) == ("pending", [])


def test_an_unmapped_os_user_is_refused_and_told_where_to_map_it(tmp_path: Path) -> None:
    config = locked(tmp_path, {"someone-else": "carol"})
    request_id = bob_requests_a_refund(config)
    code, _, err = cli("approvals", "approve", request_id, "--config", str(config))
    assert code == 1 and "identity.os_users" in err and repr(ME) in err
    assert decisions(config, request_id) == ("pending", [])


def plan_file(tmp_path: Path) -> Path:
    plan = {
        "goal": "a small refund",
        "steps": [
            {
                "id": "refund",
                "tool": "payments.refund",
                "arguments": {"customer_id": "C004", "amount": 25, "reason": "r"},
            }
        ],
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return path


def test_plan_run_refuses_another_subject(tmp_path: Path) -> None:
    config = locked(tmp_path, {ME: "bob"})
    code, _, err = cli("plan", "run", str(plan_file(tmp_path)), "--as", "alice", "--config", str(config))
    assert code == 1 and "identity.allow_choosing_subject" in err and repr(ME) in err
    assert refunds(config) == []
    assert not (config.parent / "audit" / "audit.db").exists()


@pytest.mark.parametrize("verb", ["validate", "preview"])
def test_plan_checks_refuse_another_subject(tmp_path: Path, verb: str) -> None:
    config = locked(tmp_path, {ME: "bob"})
    code, _, err = cli("plan", verb, str(plan_file(tmp_path)), "--as", "alice", "--config", str(config))
    assert code == 1 and "identity.allow_choosing_subject" in err


def test_plan_run_acts_as_the_os_users_subject_and_says_so_in_the_log(tmp_path: Path) -> None:
    config = locked(tmp_path, {ME: "bob"})
    code, out, err = cli("plan", "run", str(plan_file(tmp_path)), "--config", str(config), "--json")
    assert code == 0, out + err
    assert refunds(config) == [("C004", "bob")]
    calls = audit_bodies(config, "tool.call")
    assert {(c["tool"], c["subject"], c["auth"]) for c in calls} >= {
        ("gateway.plan_run", "bob", f"cli:os_user:{ME}"),
        ("payments.refund", "bob", f"cli:os_user:{ME}"),
    }
