"""Parse and lint a Casbin policy CSV before Casbin sees it.

pycasbin loads a malformed line without complaint and then raises on every
`enforce()`, and it does not support quoting. So every line is checked here,
and a problem names the file and line.

Line forms::

    p, SUBJECT, OBJECT_GLOB, ACTION, EFFECT[, approver ROLE][, quorum N][, when CONDITION]
    g, MEMBER, ROLE

`approver` and `quorum` apply to `approve` rules (the role that decides, and how
many distinct people of it must approve; 1 by default). `approver consent` means
the caller's user confirms the call themselves, through their client. `when` comes last: the
condition runs to the end of the line and may contain commas. The older form
`p, SUBJECT, OBJECT, ACTION, approve, ROLE` is accepted too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from gateway.outcomes import PolicyError
from gateway.policy.conditions import Condition, ConditionSyntaxError, parse_condition

_WHEN = re.compile(r",\s*when\s+")
ACTIONS = frozenset({"call", "approve", "read", "get", "elicit", "sample"})
"""`call` a tool, `approve` someone's request, `read` a resource, `get` a prompt; an upstream tool may
`elicit` (ask the caller's user) or `sample` (use the caller's model) while it runs."""
RELAY_ACTIONS = frozenset({"elicit", "sample"})


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
    condition: Condition | None = None
    quorum: int = 1

    def as_casbin(self) -> list[str]:
        return [
            self.subject,
            self.tool,
            self.action,
            self.effect.value,
            self.approver or "",
            self.condition.text if self.condition else "",
        ]

    def describe(self) -> str:
        text = f"p, {self.subject}, {self.tool}, {self.action}, {self.effect.value}"
        if self.approver:
            text += f", approver {self.approver}"
        if self.quorum != 1:
            text += f", quorum {self.quorum}"
        if self.condition:
            text += f", when {self.condition.text}"
        return text


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
        kind = line.split(",", 1)[0].strip()
        if kind == "g":
            fields = [field.strip() for field in line.split(",")]
            if '"' in line:
                problems.append(f"{where}: quotes are not supported in policy lines")
            elif any(not field for field in fields):
                problems.append(f"{where}: empty field")
            elif len(fields) != 3:
                problems.append(f"{where}: a role line is 'g, MEMBER, ROLE' (got {len(fields) - 1} fields after 'g')")
            else:
                groups.append(GroupingRule(fields[1], fields[2], where))
        elif kind == "p":
            try:
                rules.append(_parse_rule(line, where))
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
        else:
            problems.append(f"{where}: unknown line type {kind!r} (expected 'p' or 'g')")
    if problems:
        raise PolicyError(problems)
    return rules, groups


def _parse_rule(line: str, where: str) -> Rule:
    head, *rest = _WHEN.split(line, maxsplit=1)
    condition_text = rest[0] if rest else ""
    if '"' in head:
        raise ValueError("quotes are not supported in policy lines (only inside a 'when' condition)")
    fields = [field.strip() for field in head.split(",")]
    if any(not field for field in fields):
        raise ValueError("empty field")
    if len(fields) < 5:
        raise ValueError(
            "a rule is 'p, SUBJECT, OBJECT, ACTION, EFFECT[, approver ROLE][, quorum N][, when CONDITION]'"
        )
    _, subject, tool, action, effect, *clauses = fields
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r} (expected one of {', '.join(sorted(ACTIONS))})")
    if effect not in Effect.__members__.values():
        raise ValueError(f"unknown effect {effect!r} (expected allow, deny or approve)")
    approver: str | None = None
    quorum = 1
    for clause in clauses:
        word, _, value = clause.partition(" ")
        if word == "approver" and value.strip():
            approver = value.strip()
        elif word == "quorum":
            if not value.strip().isdigit() or int(value) < 1:
                raise ValueError(f"quorum must be a whole number of approvers, not {value.strip()!r}")
            quorum = int(value)
        elif not value and approver is None and effect == Effect.APPROVE and clause.startswith("role:"):
            approver = clause  # the older positional form
        else:
            raise ValueError(f"unknown clause {clause!r} (expected 'approver ROLE', 'quorum N' or 'when CONDITION')")
    if effect == Effect.APPROVE and action in RELAY_ACTIONS:
        raise ValueError(f"an {action!r} rule allows or denies; it cannot wait for an approval")
    if effect == Effect.APPROVE and not approver:
        raise ValueError("an 'approve' rule must name the approver role ('approver ROLE')")
    if effect != Effect.APPROVE and (approver or quorum != 1):
        raise ValueError("only 'approve' rules take an approver role and a quorum")
    condition = None
    if condition_text.strip():
        try:
            condition = parse_condition(condition_text.strip())
        except ConditionSyntaxError as exc:
            raise ValueError(f"invalid condition: {exc}") from exc
    return Rule(subject, tool, action, Effect(effect), approver, where, condition, quorum)
