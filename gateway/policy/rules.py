"""Parse and lint a Casbin policy CSV before Casbin sees it.

pycasbin loads a malformed line without complaint and then raises on every
`enforce()`, and it does not support quoting. So every line is checked here,
and a problem names the file and line.

Line forms::

    p, SUBJECT, TOOL_GLOB, ACTION, EFFECT[, APPROVER_ROLE]
    g, MEMBER, ROLE
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from gateway.outcomes import PolicyError

ACTIONS = frozenset({"call", "approve", "read", "get"})
"""`call` a tool, `approve` someone's request, `read` a resource, `get` a prompt."""


class Effect(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    APPROVE = "approve"
    """Allowed only once a person holding the rule's approver role approves."""


@dataclass(frozen=True, slots=True)
class Rule:
    subject: str
    tool: str
    action: str
    effect: Effect
    approver: str | None
    source: str
    """`file:line` the rule came from, shown when a decision is explained."""

    def as_casbin(self) -> list[str]:
        return [self.subject, self.tool, self.action, self.effect.value, self.approver or ""]

    def describe(self) -> str:
        text = f"p, {self.subject}, {self.tool}, {self.action}, {self.effect.value}"
        return text + (f", {self.approver}" if self.approver else "")


@dataclass(frozen=True, slots=True)
class GroupingRule:
    member: str
    role: str
    source: str


def parse_policy_file(path: Path) -> tuple[list[Rule], list[GroupingRule]]:
    """Return the rules and role links of a policy CSV; raise `PolicyError` listing every bad line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError([f"{path}: cannot read policy: {exc.strerror or exc}"]) from exc
    rules: list[Rule] = []
    groups: list[GroupingRule] = []
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{number}"
        if '"' in line:
            problems.append(f"{where}: quotes are not supported in policy lines")
            continue
        fields = [field.strip() for field in line.split(",")]
        if any(not field for field in fields):
            problems.append(f"{where}: empty field")
            continue
        kind, rest = fields[0], fields[1:]
        if kind == "g":
            if len(rest) != 2:
                problems.append(f"{where}: a role line is 'g, MEMBER, ROLE' (got {len(rest)} fields after 'g')")
                continue
            groups.append(GroupingRule(rest[0], rest[1], where))
        elif kind == "p":
            problem = _check_rule(rest)
            if problem:
                problems.append(f"{where}: {problem}")
                continue
            approver = rest[4] if len(rest) == 5 else None
            rules.append(Rule(rest[0], rest[1], rest[2], Effect(rest[3]), approver, where))
        else:
            problems.append(f"{where}: unknown line type {kind!r} (expected 'p' or 'g')")
    if problems:
        raise PolicyError(problems)
    return rules, groups


def _check_rule(fields: list[str]) -> str | None:
    if len(fields) not in (4, 5):
        return "a rule is 'p, SUBJECT, TOOL, ACTION, EFFECT[, APPROVER_ROLE]'"
    _, _, action, effect, *approver = fields
    if action not in ACTIONS:
        return f"unknown action {action!r} (expected one of {', '.join(sorted(ACTIONS))})"
    if effect not in Effect.__members__.values():
        return f"unknown effect {effect!r} (expected allow, deny or approve)"
    if effect == Effect.APPROVE and not approver:
        return "an 'approve' rule must name the approver role as its sixth field"
    if effect != Effect.APPROVE and approver:
        return "only 'approve' rules take an approver role"
    return None
