"""`policy lint`: mistakes a policy can load with, found before they hurt anyone.

Errors: rules naming tools or roles that do not exist, duplicate rules, contradictory
rules (the same request both allowed and denied by rules of one holder), approver roles
nobody can hold (in policy rules and in guardrails.yaml). Warnings: allow-all wildcards,
rules shadowed by an unconditional deny, roles nobody holds.
(Syntax errors and unknown condition fields are load errors: the policy does not load.
So are approver roles nobody can hold: `check_approvers` runs on every load and reload,
since the requests such a role would decide could never be approved.)
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from gateway.config.loader import locate
from gateway.outcomes import PolicyError
from gateway.policy.engine import PolicyEngine
from gateway.policy.rules import Effect, Rule

if TYPE_CHECKING:
    from gateway.config.models import JwtConfig
    from gateway.guardrails.config import GuardrailsConfig

CONSENT = "consent"
"""Not a role: the caller's own user confirms the call."""

GLOB_CHARS = frozenset("*?[")


class LintFinding(BaseModel):
    model_config = ConfigDict(frozen=True)

    level: Literal["error", "warning"]
    source: str
    message: str


def lint(
    policy: PolicyEngine,
    tool_names: set[str],
    other_objects: set[str] | None = None,
    guardrails: tuple[GuardrailsConfig, Path] | None = None,
    jwt: JwtConfig | None = None,
) -> list[LintFinding]:
    """Findings for `policy` against the catalog's tool names (and resource/prompt objects), and the
    approver roles of `policy` and of the guardrails settings (with their file) against the roles that exist."""
    settings, path = guardrails if guardrails is not None else (None, None)
    findings: list[LintFinding] = approver_findings(policy, settings, path, jwt)
    known_objects = tool_names | (other_objects or set())
    members = {g.member for g in policy.groups}
    roles = {g.role for g in policy.groups}
    subjects = {member for member in members - roles if not member.startswith("role:")}
    held = {role for subject in subjects for role in policy.roles_for(subject)}
    seen: dict[str, Rule] = {}
    for rule in policy.rules:
        text = rule.describe()
        if text in seen:
            findings.append(_error(rule, f"duplicate of the rule at {seen[text].source}"))
        seen.setdefault(text, rule)
        if rule.action == "call" and not set(rule.tool) & GLOB_CHARS and rule.tool not in known_objects:
            findings.append(_error(rule, f"no tool named {rule.tool!r}"))
        if rule.subject.startswith("role:") and rule.subject not in roles:
            findings.append(_error(rule, f"no role {rule.subject!r}: no 'g' line gives it to anyone"))
        elif rule.subject.startswith("role:") and rule.subject not in held:
            findings.append(_warning(rule, f"role {rule.subject!r} is held by no subject"))
        if rule.effect is Effect.ALLOW and rule.tool == "*" and rule.condition is None:
            findings.append(_warning(rule, "allows every object: prefer naming the tools"))
    findings.extend(_contradictions_and_shadows(policy))
    return findings


def holdable_roles(policy: PolicyEngine, jwt: JwtConfig | None = None) -> set[str]:
    """The roles someone can hold: those a 'g' line gives, and, when tokens carry roles (`identity.jwt`
    with a `roles_claim`), the roles the policy names with the token's prefix (a token may grant them)."""
    roles = {g.role for g in policy.groups}
    if jwt is not None and jwt.roles_claim:
        named = {rule.subject for rule in policy.rules} | {g.member for g in policy.groups}
        roles |= {name for name in named if name.startswith(jwt.role_prefix)}
    return roles


def approver_findings(
    policy: PolicyEngine,
    guardrails: GuardrailsConfig | None = None,
    guardrails_path: Path | None = None,
    jwt: JwtConfig | None = None,
) -> list[LintFinding]:
    """An error for every approver role no one can hold: the requests it would decide could never be approved.

    The policy's `approve` rules and the guardrails' `approver:` when a rule or flow there can require
    approval; `consent` (the caller's own user confirms) is not a role.
    """
    roles = holdable_roles(policy, jwt)
    known = ", ".join(sorted(roles)) or "none"
    findings = [
        _error(rule, f"approver role {rule.approver!r} is held by no one (roles that exist: {known})")
        for rule in policy.rules
        if rule.effect is Effect.APPROVE and rule.approver not in (CONSENT, None) and rule.approver not in roles
    ]
    if guardrails is not None and guardrails.asks_for_approval and guardrails.approver not in {*roles, CONSENT}:
        source = locate(guardrails_path, ("approver",)) if guardrails_path else "guardrails.yaml"
        message = (
            f"approver: role {guardrails.approver!r} is held by no one, so the calls its rules and flows send"
            f" for approval could never be approved (roles that exist: {known})"
        )
        findings.append(LintFinding(level="error", source=source, message=message))
    return findings


def check_approvers(
    policy: PolicyEngine,
    guardrails: GuardrailsConfig | None = None,
    guardrails_path: Path | None = None,
    jwt: JwtConfig | None = None,
) -> None:
    """Refuse a policy and guardrails pair whose approver roles no one can hold (a load and reload error)."""
    problems = [f"{f.source}: {f.message}" for f in approver_findings(policy, guardrails, guardrails_path, jwt)]
    if problems:
        raise PolicyError(problems)


def _contradictions_and_shadows(policy: PolicyEngine) -> list[LintFinding]:
    findings: list[LintFinding] = []
    rules = policy.rules
    for rule in rules:
        if rule.effect is Effect.DENY:
            continue
        for other in rules:
            if other.effect is not Effect.DENY or other.action != rule.action or other.condition is not None:
                continue
            same_holder = other.subject == rule.subject or other.subject in policy.roles_for(rule.subject)
            if not same_holder:
                continue
            if other.tool == rule.tool and rule.condition is None:
                findings.append(_error(rule, f"contradicted by the deny rule at {other.source}"))
            elif fnmatchcase(rule.tool, other.tool):
                findings.append(_warning(rule, f"never applies: shadowed by the deny rule at {other.source}"))
    return findings


def _error(rule: Rule, message: str) -> LintFinding:
    return LintFinding(level="error", source=rule.source, message=f"{rule.describe()}: {message}")


def _warning(rule: Rule, message: str) -> LintFinding:
    return LintFinding(level="warning", source=rule.source, message=f"{rule.describe()}: {message}")
