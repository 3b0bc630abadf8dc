"""Policy unit tests in YAML: who calls what with which arguments, and the expected decision.

    tests:
      - name: finance refunds up to 100 directly
        subject: bob
        tool: payments.refund
        args: {customer_id: C001, amount: 100, reason: duplicate}
        expect: allow              # allow | deny | approval_required
      - name: support reads knowledge-base articles
        subject: alice
        action: read               # call (default) | approve | read | get
        object: kb.kb://articles/escalation
        expect: allow

Run with `portcullis policy test`; the exit code is for CI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.outcomes import ConfigError, Decision


class PolicyCase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    subject: str
    tool: str | None = None
    object: str | None = None
    action: Literal["call", "approve", "read", "get"] = "call"
    args: dict[str, Any] = Field(default_factory=dict)
    tenant: str | None = None
    expect: Decision
    approver: str | None = None
    quorum: int | None = None
    rule: str | None = None
    """A substring the deciding rule must contain."""

    @model_validator(mode="after")
    def _names_a_target(self) -> PolicyCase:
        if (self.tool is None) == (self.object is None):
            raise ValueError("give exactly one of 'tool' or 'object'")
        return self

    @property
    def target(self) -> str:
        return self.tool or self.object or ""


class CaseResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    file: str
    name: str
    passed: bool
    problem: str | None = None


def load_cases(path: Path) -> list[PolicyCase]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError([f"{path}: cannot read policy tests: {exc}"]) from exc
    if not isinstance(data, dict) or not isinstance(data.get("tests"), list):
        raise ConfigError([f"{path}: a policy test file needs a top-level 'tests:' list"])
    cases: list[PolicyCase] = []
    problems: list[str] = []
    for index, item in enumerate(data["tests"]):
        try:
            cases.append(PolicyCase.model_validate(item))
        except ValidationError as exc:
            problems.extend(f"{path}: tests[{index}].{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    if problems:
        raise ConfigError(problems)
    return cases


def default_test_files(policy_folder: Path) -> list[Path]:
    return sorted(policy_folder.rglob("*_test.yaml"))
