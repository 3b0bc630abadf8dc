"""Issue 14, item 8: the smaller messages a new operator or an agent tripped over, each said plainly."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import make_deployment, set_guardrails

from gateway import Gateway
from gateway.cli import main
from gateway.config import load_config
from gateway.outcomes import ConfigError, OutcomeCode
from gateway.pipeline import Caller

ALICE = Caller(subject="alice", auth="test", transport="test")
BOB = Caller(subject="bob", auth="test", transport="test")


def problems_starting(config_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        Gateway(load_config(config_path))
    return raised.value.problems


def line_of(path: Path, text: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_an_unknown_detector_names_the_file_the_line_and_the_closest_name(config_path: Path) -> None:
    path = config_path.parent / "policies" / "guardrails.yaml"
    path.write_text(path.read_text().replace("arguments: {secrets: block", "arguments: {secretz: block"))
    (problem,) = problems_starting(config_path)
    assert problem.startswith(f"{path}:{line_of(path, 'secretz')}: rules.0.arguments.secretz: unknown detector")
    assert "(did you mean 'secrets'?)" in problem


def test_a_missing_policy_file_names_the_setting_that_points_at_it(config_path: Path) -> None:
    rules = config_path.parent / "policies" / "policy.csv"
    rules.unlink()
    assert problems_starting(config_path) == [f"policy.rules: file not found: {rules}"]


def test_a_missing_guardrails_file_names_the_setting_that_points_at_it(config_path: Path) -> None:
    path = config_path.parent / "policies" / "guardrails.yaml"
    path.unlink()
    assert problems_starting(config_path) == [f"guardrails: file not found: {path}"]


def test_an_unknown_setting_suggests_the_closest_known_one(config_path: Path) -> None:
    config_path.write_text(config_path.read_text().replace("  port: 8787", "  prot: 8787"))
    with pytest.raises(ConfigError) as raised:
        load_config(config_path)
    line = line_of(config_path, "prot:")
    assert raised.value.problems == [f"{config_path}:{line}: server.prot: unknown setting (did you mean 'port'?)"]


def test_policy_check_says_ok_once(config_path: Path) -> None:
    args = ["policy", "check", "--config", str(config_path), "alice", "crm.find_customer", "--args", '{"query": "a"}']
    out = CliRunner().invoke(main, args).stdout
    assert "outcome:  ok\n" in out and "ok (ok)" not in out


@pytest.mark.anyio
async def test_a_schema_pattern_is_shown_as_written(gateway: Gateway) -> None:
    outcome = await gateway.call_tool(ALICE, "crm.get_customer", {"customer_id": "X1"})
    assert outcome.code is OutcomeCode.INVALID_ARGUMENTS
    assert "'X1' does not match the pattern ^C\\d{3,}$" in outcome.message
    assert "\\\\" not in outcome.message


@pytest.mark.anyio
async def test_the_rate_limit_message_says_whether_the_burst_or_the_rate_ran_out(tmp_path: Path) -> None:
    refund = {"customer_id": "C001", "amount": 5, "reason": "goodwill"}
    config_path = make_deployment(tmp_path / "burst")  # the demo: 30 per 60 s, bursts of 10
    async with Gateway(load_config(config_path)) as gateway:
        outcomes = [await gateway.call_tool(BOB, "payments.refund", refund) for _ in range(11)]
    limited = outcomes[-1]
    assert [o.code for o in outcomes[:10]] == [OutcomeCode.OK] * 10 and limited.code is OutcomeCode.RATE_LIMITED
    assert limited.data["limit"] == "burst"
    assert "the burst of 10 call(s) is used up (it refills at 30 calls per 60 s)" in limited.message

    config_path = make_deployment(tmp_path / "rate")
    set_guardrails(config_path.parent, rate_limits=[{"tools": "payments.refund", "rate": 2, "per_seconds": 60}])
    async with Gateway(load_config(config_path)) as gateway:
        outcomes = [await gateway.call_tool(BOB, "payments.refund", refund) for _ in range(3)]
    limited = outcomes[-1]
    assert limited.code is OutcomeCode.RATE_LIMITED and limited.data["limit"] == "rate"
    assert "rate limit reached for payments.refund: 2 calls per 60 s; retry after" in limited.message


@pytest.mark.anyio
async def test_a_denial_names_the_rule_by_its_id_and_keeps_the_path_for_operators(
    gateway: Gateway, config_path: Path
) -> None:
    outcome = await gateway.call_tool(BOB, "payments.refund", {"customer_id": "C001", "amount": 50000, "reason": "x"})
    assert outcome.code is OutcomeCode.DENIED
    rules = config_path.parent / "policies" / "policy.csv"
    line = line_of(rules, "payments.refund, call, deny, when args.amount > 10000")
    assert outcome.message.endswith(f"when args.amount > 10000 (policy.csv:{line})")
    assert str(config_path.parent) not in outcome.message
    with sqlite3.connect(config_path.parent / "audit" / "audit.db") as db:
        (body,) = db.execute("SELECT body FROM audit_log WHERE seq = ?", (outcome.audit_id,)).fetchone()
    assert json.loads(body)["rule"].endswith(f"({rules}:{line})")  # the operator's record keeps the full path


def test_agents_are_not_shown_the_plans_approval_coverage(snapshot_gateway: Gateway) -> None:
    shown = snapshot_gateway.visible_tool("alice", "gateway.plan_run")
    assert shown is not None
    assert set(shown.input_schema["properties"]) == {"plan"}
    assert "never send" not in json.dumps(shown.input_schema)


@pytest.fixture
def snapshot_gateway(config_path: Path) -> Gateway:
    """A gateway not started: its catalog lists the built-in tools as any transport would."""
    return Gateway(load_config(config_path))
