"""An approver role no one holds is an error wherever it is named (policy rules, guardrails.yaml): `policy lint`
reports it, and neither start-up nor a hot reload accepts it, since the requests it decides could never be approved."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from support import make_deployment

from gateway import Gateway
from gateway.cli import main
from gateway.config import load_config
from gateway.config.models import JwtConfig
from gateway.guardrails import GuardrailsConfig
from gateway.outcomes import ConfigError
from gateway.policy import PolicyEngine
from gateway.policy.lint import approver_findings

REPO = Path(__file__).resolve().parents[3]


def demo_policy(extra: str = "", tmp_path: Path | None = None) -> PolicyEngine:
    if not extra:
        return PolicyEngine.from_files(REPO / "policies" / "model.conf", REPO / "policies" / "policy.csv")
    assert tmp_path is not None
    rules = tmp_path / "policy.csv"
    rules.write_text((REPO / "policies" / "policy.csv").read_text() + extra)
    return PolicyEngine.from_files(REPO / "policies" / "model.conf", rules)


def guardrails(approver: str, **settings: object) -> GuardrailsConfig:
    shipped = yaml.safe_load((REPO / "policies" / "guardrails.yaml").read_text())
    return GuardrailsConfig.model_validate({**shipped, "approver": approver, **settings})


def misspell_guardrails_approver(config_path: Path) -> Path:
    path = config_path.parent / "policies" / "guardrails.yaml"
    path.write_text(path.read_text().replace("approver: role:manager", "approver: role:managr"))
    return path


def lint(config_path: Path) -> tuple[int, list[dict[str, str]]]:
    result = CliRunner().invoke(main, ["policy", "lint", "--config", str(config_path), "--json"])
    return result.exit_code, json.loads(result.stdout)


def test_the_demo_approvers_are_all_held() -> None:
    assert approver_findings(demo_policy(), guardrails("role:manager"), Path("guardrails.yaml")) == []


def test_a_guardrails_approver_no_one_holds_is_an_error_naming_the_file_and_line(config_path: Path) -> None:
    path = misspell_guardrails_approver(config_path)
    code, findings = lint(config_path)
    assert code == 1
    errors = [f for f in findings if f["level"] == "error"]
    assert len(errors) == 1
    assert errors[0]["source"] == f"{path}:7"
    assert "'role:managr' is held by no one" in errors[0]["message"]
    assert "role:manager" in errors[0]["message"]  # the roles that do exist


def test_a_policy_approver_no_one_holds_is_an_error(tmp_path: Path) -> None:
    extra = "p, role:finance, tickets.create, call, approve, approver role:supervisor\n"
    (finding,) = approver_findings(demo_policy(extra, tmp_path))
    assert finding.level == "error" and finding.source.endswith(f"policy.csv:{extra_line(tmp_path)}")
    assert "approver role 'role:supervisor' is held by no one" in finding.message


def extra_line(tmp_path: Path) -> int:
    return len((tmp_path / "policy.csv").read_text().splitlines())


def test_consent_and_an_approver_nothing_asks_for_are_not_errors(tmp_path: Path) -> None:
    extra = "p, role:finance, tickets.create, call, approve, approver consent\n"
    unused = guardrails("role:nobody", rules=[], flows=[])  # no rule or flow can require approval
    assert approver_findings(demo_policy(extra, tmp_path), unused, Path("guardrails.yaml")) == []
    asks = guardrails("role:nobody", rules=[], flows=[{"after": ["private_data"], "sink": "external_sink"}])
    assert [f.level for f in approver_findings(demo_policy(), asks, Path("guardrails.yaml"))] == ["error"]
    consent = asks.model_copy(update={"approver": "consent"})  # the caller's own user confirms
    assert approver_findings(demo_policy(), consent, Path("guardrails.yaml")) == []


def test_a_role_only_a_token_grants_counts_when_tokens_carry_roles(tmp_path: Path) -> None:
    """With JWTs carrying roles, a role the policy gives rules to may be held through a token alone."""
    extra = "p, role:security, email.send, approve, allow\n"
    policy = demo_policy(extra, tmp_path)
    settings = guardrails("role:security")
    assert len(approver_findings(policy, settings, Path("guardrails.yaml"))) == 1
    jwt = JwtConfig(issuer="https://idp.example", audience="portcullis", secret="s", algorithms=("HS256",))
    assert approver_findings(policy, settings, Path("guardrails.yaml"), jwt) == []
    no_roles = jwt.model_copy(update={"roles_claim": None})
    assert len(approver_findings(policy, settings, Path("guardrails.yaml"), no_roles)) == 1


def test_a_gateway_does_not_start_with_an_approver_no_one_holds(config_path: Path) -> None:
    path = misspell_guardrails_approver(config_path)
    with pytest.raises(ConfigError) as raised:
        Gateway(load_config(config_path))
    assert any(p.startswith(f"{path}:7: approver: role 'role:managr'") for p in raised.value.problems)


@pytest.mark.anyio
async def test_a_hot_reload_refuses_an_approver_no_one_holds_and_records_why(tmp_path: Path) -> None:
    config_path = make_deployment(tmp_path / "d", changes={"policy": {"watch_seconds": 0}})
    async with Gateway(load_config(config_path)) as gateway:
        version = gateway.snapshot.version
        misspell_guardrails_approver(config_path)
        assert await gateway.reload() is False
        assert gateway.snapshot.version == version
        assert gateway.snapshot.guardrails.config.approver == "role:manager"
    with sqlite3.connect(config_path.parent / "audit" / "audit.db") as db:
        rows = db.execute("SELECT body FROM audit_log WHERE event = 'policy.reload_failed'").fetchall()
    (failed,) = [json.loads(body) for (body,) in rows]
    assert any("'role:managr' is held by no one" in p for p in failed["detail"]["problems"])
