"""The policy engine: Casbin's model and role graph, decided through a role index.

pycasbin's `enforce()` scans every policy line per call (about 8.5 us a line)
and re-parses its matcher each time, so a filtered `tools/list` of a few
hundred tools costs seconds at a thousand rules. Casbin loads and validates the
model and rules and resolves the role graph once per snapshot; decisions then
look only at the rules whose subject is the caller or one of its roles, which
is exactly the set the matcher `g(r.sub, p.sub)` can select. The result equals
Casbin's own (a test compares the two on random policies).

Three outcomes: deny beats approval, approval beats allow, and no matching rule
is a deny. `explain` answers the question behind a listing or a replay: which decisions
are possible when some conditions cannot be evaluated (no arguments yet, or an argument
the audit log holds only as a hash)?
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
    approver: str | None = None
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
        """The rule and where it is (the policy file's full path and line): for operators and the audit log."""
        if self.rule is None:
            return DEFAULT_DENY
        return f"{self.rule} ({self.rule_source})"

    @property
    def cited(self) -> str:
        """The rule and its id (`policy.csv:42`): what a caller is told, without the server's paths."""
        if self.rule is None:
            return DEFAULT_DENY
        return f"{self.rule} ({rule_id(self.rule_source)})" if self.rule_source else self.rule

    @classmethod
    def unlisted(cls, roles: tuple[str, ...] = ()) -> PolicyDecision:
        """The deny for a name the catalog does not have: policy was never asked (a replay skips it)."""
        return cls(decision=Decision.DENY, rule=UNLISTED, rule_source=UNLISTED_SOURCE, roles=roles)


DEFAULT_DENY = "no policy rule allows this (deny by default)"
UNLISTED = "no such tool"
UNLISTED_SOURCE = "catalog"
UNLISTED_REASON = f"{UNLISTED} ({UNLISTED_SOURCE})"
"""What the audit log's `rule` says for a call to a name no source lists."""
_RANK = {Effect.ALLOW: 1, Effect.APPROVE: 2, Effect.DENY: 3}
_DECISIONS = {Effect.DENY: Decision.DENY, Effect.APPROVE: Decision.APPROVAL_REQUIRED, Effect.ALLOW: Decision.ALLOW}
Unknowable = Callable[[Rule], str | None]
"""Why a rule's condition cannot be evaluated for this request (None: it can)."""


def rule_id(source: str) -> str:
    """`/srv/policies/policy.csv:42` -> `policy.csv:42`: a rule named without the server's directory layout."""
    file, colon, line = source.rpartition(":")
    return f"{Path(file).name}:{line}" if colon and line.isdigit() else Path(source).name


class Explanation(BaseModel):
    """The decisions a request could get while some conditions are unknown, and the rules behind them."""

    model_config = ConfigDict(frozen=True)

    decisions: tuple[Decision, ...]
    """Every decision still possible, strictest first; one when the unknown conditions cannot change it."""
    rules: tuple[RuleMatch, ...]
    """Every rule whose subject, object and action matched (an unknown condition: no value, not counted)."""
    unknown: tuple[str, ...] = ()
    """Why each unknown condition could not be evaluated."""
    decided: PolicyDecision | None = None
    """The decision and its rule, when only one is possible."""

    @property
    def conditional(self) -> bool:
        """Whether the decision depends on what the unknown conditions say."""
        return len(self.decisions) > 1


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
    def from_files(
        cls, model_path: Path, policy_path: Path, keys: tuple[str, str] = ("policy.model", "policy.rules")
    ) -> PolicyEngine:
        """The policy in two files; `keys` are the settings that name them, for a missing file's message."""
        missing = [
            f"{key}: file not found: {path}"
            for key, path in zip(keys, (model_path, policy_path), strict=True)
            if not path.exists()
        ]
        if missing:
            raise PolicyError(missing)
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
        for rule in self._applicable(subject, roles, tool, action):
            effect, match = _check(rule, context)
            matches.append(match)
            if effect is not None:
                found.setdefault(effect, rule)
        return _decided(found, roles, tuple(matches))

    def explain(
        self,
        subject: str,
        tool: str,
        action: str = "call",
        context: dict[str, Any] | None = None,
        granted: tuple[str, ...] = (),
        unknowable: Unknowable | None = None,
    ) -> Explanation:
        """Which decisions are possible when some conditions cannot be evaluated.

        Without `context` every condition is unknown (`tools list --as`: does the decision depend on
        the arguments?). With it, a condition is unknown when `unknowable` gives a reason (a replay: the
        argument it reads was stored hashed). An unknown condition may be true or false, so its rule may
        count or not; every other rule is decided as `decide` decides it.
        """
        roles = self.roles_for(subject, granted)
        found: dict[Effect, Rule] = {}
        optional: dict[Effect, Rule] = {}
        matches: list[RuleMatch] = []
        reasons: list[str] = []
        for rule in self._applicable(subject, roles, tool, action):
            why = None
            if rule.condition is not None:
                why = "no arguments yet" if context is None else (unknowable(rule) if unknowable else None)
            if why is None:
                effect, match = _check(rule, context)
                matches.append(match)
                if effect is not None:
                    found.setdefault(effect, rule)
                continue
            text = rule.condition.text if rule.condition else None
            base = _basis(rule)
            matches.append(RuleMatch(**base, condition=text, counted=False))
            optional.setdefault(rule.effect, rule)
            reasons.append(why)
        strictest = max(found, key=_RANK.__getitem__, default=None)
        possible = {strictest}
        for effect in optional:
            possible.add(effect if strictest is None or _RANK[effect] > _RANK[strictest] else strictest)
        decisions = tuple(
            decision
            for effect, decision in _DECISIONS.items()
            if effect in possible or (decision is Decision.DENY and None in possible)
        )
        decided = _decided(found, roles, tuple(matches)) if len(decisions) == 1 else None
        return Explanation(decisions=decisions, rules=tuple(matches), unknown=tuple(reasons), decided=decided)

    def _applicable(self, subject: str, roles: tuple[str, ...], tool: str, action: str) -> Iterable[Rule]:
        """The rules whose holder (the subject or one of its roles), object and action match."""
        for holder in (subject, *roles):
            for rule in self._by_subject.get(holder, ()):
                if rule.action == action and fnmatchcase(tool, rule.tool):
                    yield rule

    def casbin_enforce(
        self, subject: str, tool: str, action: str = "call", context: dict[str, Any] | None = None
    ) -> bool:
        """Plain Casbin's allow-and-deny verdict (approve rules count as neither); for checks, not the hot path."""
        return bool(self._enforcer.enforce(subject, tool, action, context or {}))


def _decided(found: dict[Effect, Rule], roles: tuple[str, ...], matches: tuple[RuleMatch, ...]) -> PolicyDecision:
    """The strictest effect found decides (deny, then approve, then allow); nothing found is a deny."""
    for effect, decision in _DECISIONS.items():
        if effect in found:
            rule = found[effect]
            return PolicyDecision(
                decision=decision,
                rule=rule.describe(),
                rule_source=rule.source,
                approver=rule.approver,
                quorum=rule.quorum,
                roles=roles,
                matches=matches,
            )
    return PolicyDecision(decision=Decision.DENY, roles=roles, matches=matches)


def _basis(rule: Rule) -> dict[str, Any]:
    return {"rule": rule.describe(), "source": rule.source, "effect": rule.effect.value, "approver": rule.approver}


def _check(rule: Rule, context: dict[str, Any] | None) -> tuple[Effect | None, RuleMatch]:
    """The effect `rule` contributes to this request (None: it drops out), and the explanation."""
    base = _basis(rule)
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
