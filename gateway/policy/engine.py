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
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import casbin
from casbin.model import Model
from pydantic import BaseModel, ConfigDict

from gateway.outcomes import Decision, PolicyError
from gateway.policy.conditions import Condition, ConditionError, parse_condition
from gateway.policy.rules import Effect, GroupingRule, Rule, parse_policy_file

MATCHER = "g(r.sub, p.sub) && toolMatch(r.obj, p.obj) && r.act == p.act && condMatch(p.cond, p.eft, r.ctx)"
"""The one matcher the role index implements; a model with another is refused at load."""


class RuleMatch(BaseModel):
    """A rule whose subject, object and action matched, and what its condition said."""

    model_config = ConfigDict(frozen=True)

    rule: str
    source: str
    effect: str
    condition: str | None = None
    condition_value: bool | None = None
    """True or False; None when there is no condition or it could not be evaluated."""
    condition_error: str | None = None
    counted: bool
    """Whether the rule took part in the decision (a false condition, or an error on an allow rule, drops it)."""


class PolicyDecision(BaseModel):
    """A decision and why: the rule that decided it (None when nothing matched)."""

    model_config = ConfigDict(frozen=True)

    decision: Decision
    rule: str | None = None
    rule_source: str | None = None
    approver: str | None = None
    quorum: int = 1
    roles: tuple[str, ...] = ()
    matches: tuple[RuleMatch, ...] = ()

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

    def roles_for(self, subject: str, granted: tuple[str, ...] = ()) -> tuple[str, ...]:
        """The subject's roles from the policy, plus roles granted by its credentials and what they inherit."""
        roles = self._roles.get(subject, ())
        if not granted:
            return roles
        merged = dict.fromkeys(roles)
        for role in granted:
            merged[role] = None
            merged.update(dict.fromkeys(self._enforcer.get_implicit_roles_for_user(role)))
        return tuple(merged)

    def decide(
        self,
        subject: str,
        tool: str,
        action: str = "call",
        context: dict[str, Any] | None = None,
        granted: tuple[str, ...] = (),
    ) -> PolicyDecision:
        """The decision for one request.

        With `context` (`{"args": ..., "subject": {...}}`) conditions are evaluated: a condition
        that cannot be evaluated drops an allow rule and makes a deny or approve rule deny. Without
        it (listing tools, before any arguments exist) conditional allow and approve rules count
        and conditional deny rules do not: the question is "could this caller call it at all?".
        """
        roles = self.roles_for(subject, granted)
        found: dict[Effect, Rule] = {}
        matches: list[RuleMatch] = []
        for holder in (subject, *roles):
            for rule in self._by_subject.get(holder, ()):
                if rule.action != action or not fnmatchcase(tool, rule.tool):
                    continue
                effect, match = _check(rule, context)
                matches.append(match)
                if effect is not None:
                    found.setdefault(effect, rule)
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
                    quorum=rule.quorum,
                    roles=roles,
                    matches=tuple(matches),
                )
        return PolicyDecision(decision=Decision.DENY, roles=roles, matches=tuple(matches))

    def casbin_enforce(
        self, subject: str, tool: str, action: str = "call", context: dict[str, Any] | None = None
    ) -> bool:
        """Plain Casbin's allow-and-deny verdict (approve rules count as neither); for checks, not the hot path."""
        return bool(self._enforcer.enforce(subject, tool, action, context or {}))


def _check(rule: Rule, context: dict[str, Any] | None) -> tuple[Effect | None, RuleMatch]:
    """The effect `rule` contributes to this request (None: it drops out), and the explanation."""
    base = {"rule": rule.describe(), "source": rule.source, "effect": rule.effect.value}
    if rule.condition is None:
        return rule.effect, RuleMatch(**base, counted=True)
    text = rule.condition.text
    if context is None:
        counted = rule.effect is not Effect.DENY
        return (rule.effect if counted else None), RuleMatch(**base, condition=text, counted=counted)
    try:
        value = rule.condition(context)
    except ConditionError as exc:
        # Fail closed: an allow rule drops out; a deny or approve rule denies.
        effect = None if rule.effect is Effect.ALLOW else Effect.DENY
        error = RuleMatch(**base, condition=text, condition_error=str(exc), counted=effect is not None)
        return effect, error
    return (rule.effect if value else None), RuleMatch(**base, condition=text, condition_value=value, counted=value)


def _condition_matcher() -> Callable[[str, str, dict[str, Any]], bool]:
    """Casbin's `condMatch(p.cond, p.eft, r.ctx)`: the same fail-closed rule as the engine."""
    parsed: dict[str, Condition] = {}

    def cond_match(text: str, effect: str, context: dict[str, Any]) -> bool:
        if not text:
            return True
        condition = parsed.get(text) or parsed.setdefault(text, parse_condition(text))
        try:
            return condition(context)
        except ConditionError:
            return effect == Effect.DENY.value

    return cond_match


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
        ("r", "r"): "sub, obj, act, ctx",
        ("p", "p"): "sub, obj, act, eft, approver, cond",
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
    enforcer.add_function("condMatch", _condition_matcher())
    if rules:
        enforcer.add_named_policies("p", [rule.as_casbin() for rule in rules])
    if groups:
        enforcer.add_named_grouping_policies("g", [[g.member, g.role] for g in groups])
    return enforcer


_MODEL_TEXT = f"""
[request_definition]
r = sub, obj, act, ctx

[policy_definition]
p = sub, obj, act, eft, approver, cond

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = {MATCHER}
"""
