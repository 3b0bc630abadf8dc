"""`policy lint`: mistakes a policy can load with, found before they hurt anyone.

Errors: rules naming tools or roles that do not exist, duplicate rules, contradictory
rules (the same request both allowed and denied by rules of one holder). Warnings:
allow-all wildcards, rules shadowed by an unconditional deny, roles nobody holds.
(Syntax errors and unknown condition fields are load errors: the policy does not load.)
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, ConfigDict

from gateway.policy.engine import PolicyEngine
from gateway.policy.rules import Effect, Rule

GLOB_CHARS = frozenset("*?[")


class LintFinding(BaseModel):
    model_config = ConfigDict(frozen=True)

    level: Literal["error", "warning"]
    source: str
    message: str


def lint(policy: PolicyEngine, tool_names: set[str], other_objects: set[str] | None = None) -> list[LintFinding]:
    """Findings for `policy` against the catalog's tool names (and resource/prompt objects)."""
    findings: list[LintFinding] = []
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
        if rule.effect is Effect.APPROVE and rule.approver != "consent" and rule.approver not in roles:
            findings.append(_error(rule, f"approver role {rule.approver!r} is given to no one"))
        if rule.effect is Effect.ALLOW and rule.tool == "*" and rule.condition is None:
            findings.append(_warning(rule, "allows every object: prefer naming the tools"))
    findings.extend(_contradictions_and_shadows(policy))
    return findings


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
