"""The policy engine: Casbin's model and role graph, decided through a role index.

pycasbin's `enforce()` scans every policy line per call (about 8.5 us a line)
and re-parses its matcher each time, so a filtered `tools/list` of a few
hundred tools costs seconds at a thousand rules. Casbin loads and validates the
model and rules and resolves the role graph once per snapshot; decisions then
look only at the rules whose subject is the caller or one of its roles, which
is exactly the set the matcher `g(r.sub, p.sub)` can select. The result equals
Casbin's own (a test compares the two on random policies).

Three outcomes: deny beats approval, approval beats allow, and no matching rule
is a deny.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable
from fnmatch import fnmatchcase
from pathlib import Path

import casbin
from casbin.model import Model
from pydantic import BaseModel, ConfigDict

from gateway.outcomes import Decision, PolicyError
from gateway.policy.rules import Effect, GroupingRule, Rule, parse_policy_file

MATCHER = "g(r.sub, p.sub) && toolMatch(r.obj, p.obj) && r.act == p.act"
"""The one matcher the role index implements; a model with another is refused at load."""


class PolicyDecision(BaseModel):
    """A decision and why: the rule that decided it (None when nothing matched)."""

    model_config = ConfigDict(frozen=True)

    decision: Decision
    rule: str | None = None
    rule_source: str | None = None
    approver: str | None = None
    roles: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        if self.rule is None:
            return "no policy rule allows this (deny by default)"
        return f"{self.rule} ({self.rule_source})"


class PolicyEngine:
    """An immutable view of one policy version. Build a new one to change policy."""

    def __init__(self, rules: Iterable[Rule], groups: Iterable[GroupingRule], version: str) -> None:
        self.version = version
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.groups: tuple[GroupingRule, ...] = tuple(groups)
        self._enforcer = _casbin_enforcer(self.rules, self.groups)
        self._by_subject: dict[str, list[Rule]] = defaultdict(list)
        for rule in self.rules:
            self._by_subject[rule.subject].append(rule)
        members = {g.member for g in self.groups}
        self._roles: dict[str, tuple[str, ...]] = {
            member: tuple(self._enforcer.get_implicit_roles_for_user(member)) for member in members
        }

    @classmethod
    def from_files(cls, model_path: Path, policy_path: Path) -> PolicyEngine:
        model_text = _read(model_path)
        _check_model(model_path, model_text)
        rules, groups = parse_policy_file(policy_path)
        version = hashlib.sha256(model_text.encode() + b"\0" + _read(policy_path).encode()).hexdigest()
        return cls(rules, groups, version)

    def roles_for(self, subject: str) -> tuple[str, ...]:
        return self._roles.get(subject, ())

    def decide(self, subject: str, tool: str, action: str = "call") -> PolicyDecision:
        roles = self.roles_for(subject)
        found: dict[Effect, Rule] = {}
        for holder in (subject, *roles):
            for rule in self._by_subject.get(holder, ()):
                if rule.action == action and fnmatchcase(tool, rule.tool):
                    found.setdefault(rule.effect, rule)
        for effect, decision in (
            (Effect.DENY, Decision.DENY),
            (Effect.APPROVE, Decision.APPROVAL_REQUIRED),
            (Effect.ALLOW, Decision.ALLOW),
        ):
            if effect in found:
                rule = found[effect]
                return PolicyDecision(
                    decision=decision,
                    rule=rule.describe(),
                    rule_source=rule.source,
                    approver=rule.approver,
                    roles=roles,
                )
        return PolicyDecision(decision=Decision.DENY, roles=roles)

    def casbin_enforce(self, subject: str, tool: str, action: str = "call") -> bool:
        """Plain Casbin's allow-and-deny verdict (approve rules count as neither); for checks, not the hot path."""
        return bool(self._enforcer.enforce(subject, tool, action))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc


def _check_model(path: Path, text: str) -> None:
    model = Model()
    try:
        model.load_model_from_text(text)
    except Exception as exc:  # seam: pycasbin raises bare exceptions for any model problem
        raise PolicyError([f"{path}: invalid Casbin model: {exc}"]) from exc
    problems = []
    expected = {
        ("r", "r"): "sub, obj, act",
        ("p", "p"): "sub, obj, act, eft, approver",
        ("g", "g"): "_, _",
        ("e", "e"): "some(where (p.eft == allow)) && !some(where (p.eft == deny))",
    }
    for (section, key), value in expected.items():
        assertion = model.model.get(section, {}).get(key)
        if assertion is None or _squash(assertion.value) != _squash(value):
            problems.append(f"{path}: [{section}] {key} must be '{value}'")
    matcher = model.model.get("m", {}).get("m")
    if matcher is None or _squash(matcher.value) != _squash(MATCHER):
        problems.append(f"{path}: [matchers] m must be '{MATCHER}'")
    if problems:
        raise PolicyError(problems)


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text).replace("r_", "r.").replace("p_", "p.")


def _casbin_enforcer(rules: tuple[Rule, ...], groups: tuple[GroupingRule, ...]) -> casbin.Enforcer:
    model = Model()
    model.load_model_from_text(_MODEL_TEXT)
    enforcer = casbin.Enforcer(model)
    enforcer.add_function("toolMatch", fnmatchcase)
    if rules:
        enforcer.add_named_policies("p", [rule.as_casbin() for rule in rules])
    if groups:
        enforcer.add_named_grouping_policies("g", [[g.member, g.role] for g in groups])
    return enforcer


_MODEL_TEXT = f"""
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act, eft, approver

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = {MATCHER}
"""
