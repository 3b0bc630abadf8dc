"""`policy replay` compares like with like: the unchanged policy changes nothing, a decision that reads a value
the audit log holds only hashed is reported as not replayable (with the reason), and real changes still show."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support import REPO

from gateway import Gateway
from gateway.cli import main
from gateway.outcomes import OutcomeCode
from gateway.pipeline import Caller

pytestmark = pytest.mark.anyio
DEMO_PLAN = json.loads((REPO / "examples" / "plans" / "refund-and-notify.json").read_text())
EMAIL = {"subject": "hello", "body": "see you"}


def who(subject: str) -> Caller:
    return Caller(subject=subject, auth="test", transport="test", session=f"{subject}-session")


def replay(config_path: Path, policies: Path, *extra: str) -> tuple[int, str]:
    args = ["policy", "replay", "--config", str(config_path), "--policy", str(policies), *extra]
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.stdout


def candidate(config_path: Path, tmp_path: Path, *lines: str) -> Path:
    """A copy of the deployment's policies with `lines` appended."""
    folder = tmp_path / "candidate"
    shutil.copytree(config_path.parent / "policies", folder)
    rules = folder / "policy.csv"
    rules.write_text(rules.read_text() + "".join(f"{line}\n" for line in lines))
    return folder


@pytest.fixture
async def history(gateway: Gateway) -> dict[str, Any]:
    """An hour of demo traffic in miniature: email inside and outside the company, the demo plan held for
    approval then approved and run, a name no source lists, and refunds past the rate limit."""
    sent = await gateway.call_tool(who("alice"), "email.send", {"to": "bob@acme.example", **EMAIL})
    outside = await gateway.call_tool(who("alice"), "email.send", {"to": "eve@evil.example", **EMAIL})
    held = await gateway.call_tool(who("alice"), "gateway.plan_run", {"plan": DEMO_PLAN})
    assert (sent.code, outside.code, held.code) == (OutcomeCode.OK, OutcomeCode.DENIED, OutcomeCode.APPROVAL_REQUIRED)
    await gateway.approvals.approve(held.data["approval_id"], who("carol"), "fine")
    done = await gateway.approvals.wait(held.data["approval_id"], 20)
    assert done is not None and done.status.value == "succeeded", done
    assert (await gateway.call_tool(who("erin"), "nosuch.tool", {})).code is OutcomeCode.UNKNOWN_TOOL
    refund = {"customer_id": "C001", "amount": 5, "reason": "goodwill"}
    codes = [(await gateway.call_tool(who("bob"), "payments.refund", refund)).code for _ in range(11)]
    assert codes[-1] is OutcomeCode.RATE_LIMITED
    return {"emails": 3}  # two sent by alice, one by the plan's notify step


async def test_the_unchanged_policy_changes_nothing_and_says_which_calls_it_could_not_replay(
    history: dict[str, Any], config_path: Path
) -> None:
    code, out = replay(config_path, config_path.parent / "policies", "--json")
    report = json.loads(out)
    assert code == 0
    assert report["changes"] == []
    # the plan run twice (held, then approved), three of its four steps, the ten refunds policy decided;
    # neither the rate-limited refund nor the unknown name was decided by policy
    assert report["replayed"] == 15
    skipped = report["not_replayable"]
    assert [s["tool"] for s in skipped] == ["email.send"] * history["emails"]
    for entry in skipped:
        assert entry["possible"] == ["deny", "allow"]
        (reason,) = entry["reasons"]
        assert 'when args.to endswith "@acme.example" (policy.csv:' in reason
        assert "args.to, which the audit log holds only as a salted hash (audit.personal_keys)" in reason
    assert {s["old"] for s in skipped} == {"allow", "deny"}


async def test_the_text_report_lists_each_call_it_could_not_replay_with_the_reason(
    history: dict[str, Any], config_path: Path
) -> None:
    code, out = replay(config_path, config_path.parent / "policies")
    assert code == 0
    assert out.strip().splitlines()[-1].endswith("0 decision(s) would change, 3 not replayable")
    assert out.count("email.send: allow, not replayable") == 2
    assert "salted hash (audit.personal_keys)" in out


async def test_a_change_that_does_not_depend_on_the_hashed_value_is_still_reported(
    history: dict[str, Any], config_path: Path, tmp_path: Path
) -> None:
    """An unconditional deny decides whatever the recipient was: the sends become changes, not unknowns."""
    stricter = candidate(config_path, tmp_path, "p, alice, email.send, call, deny")
    report = json.loads(replay(config_path, stricter, "--json")[1])
    changed = [(c["subject"], c["tool"], c["old"], c["new"]) for c in report["changes"]]
    assert changed == [("alice", "email.send", "allow", "deny")] * 2  # hers and her plan's; the denied one stays
    assert report["not_replayable"] == []


async def test_a_plan_held_for_its_steps_is_compared_as_the_pipeline_decides_it(
    history: dict[str, Any], config_path: Path, tmp_path: Path
) -> None:
    """The plan review raised policy's allow to an approval; without the rule that allows plans, both
    recorded plan runs (held, then approved) would be denied."""
    folder = candidate(config_path, tmp_path)
    rules = folder / "policy.csv"
    rules.write_text(rules.read_text().replace("p, role:support, gateway.plan_*, call, allow\n", ""))
    report = json.loads(replay(config_path, folder, "--json")[1])
    changed = [(c["tool"], c["old"], c["new"]) for c in report["changes"]]
    assert changed == [("gateway.plan_run", "approval_required", "deny")] * 2
