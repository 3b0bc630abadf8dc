from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from support import DEMO_TOOLS, DEMO_VIEW

from gateway.outcomes import Decision, PolicyError
from gateway.policy import Effect, PolicyEngine, Rule
from gateway.policy.conditions import parse_condition
from gateway.policy.rules import GroupingRule

REPO = Path(__file__).resolve().parents[3]
TOOLS = sorted(set(DEMO_TOOLS).union(*DEMO_VIEW.values()))


@pytest.fixture(scope="module")
def demo() -> PolicyEngine:
    return PolicyEngine.from_files(REPO / "policies" / "model.conf", REPO / "policies" / "policy.csv")


EXPECTED = DEMO_VIEW


@pytest.mark.parametrize("subject", sorted(EXPECTED))
def test_demo_subjects_may_call_exactly_their_roles_tools(demo: PolicyEngine, subject: str) -> None:
    permitted = {tool for tool in TOOLS if demo.decide(subject, tool).decision is not Decision.DENY}
    assert permitted == EXPECTED[subject]


def test_finance_refunds_need_a_managers_approval_and_managers_refund_directly(demo: PolicyEngine) -> None:
    def refund(amount: object) -> dict[str, object]:
        return {"args": {"amount": amount}, "subject": {"id": "bob", "tenant": "acme", "roles": []}}

    bob = demo.decide("bob", "payments.refund", "call", refund(500))
    assert bob.decision is Decision.APPROVAL_REQUIRED
    assert bob.approver == "role:manager"
    assert bob.rule == (
        "p, role:finance, payments.refund, call, approve, approver role:manager,"
        " when args.amount > 100 and args.amount <= 10000"
    )
    lines = (REPO / "policies" / "policy.csv").read_text().splitlines()
    assert bob.rule_source is not None and bob.rule_source.endswith(f"policy.csv:{lines.index(bob.rule) + 1}")
    assert demo.decide("bob", "payments.refund", "call", refund(100)).decision is Decision.ALLOW
    assert demo.decide("bob", "payments.refund", "call", refund(10_000.01)).decision is Decision.DENY
    assert demo.decide("bob", "payments.refund", "call", refund("a lot")).decision is Decision.DENY
    carol = {"args": {"amount": 50}, "subject": {"id": "carol", "tenant": "acme", "roles": []}}
    assert demo.decide("carol", "payments.refund", "call", carol).decision is Decision.ALLOW
    carol["args"] = {"amount": 6000}
    consent = demo.decide("carol", "payments.refund", "call", carol)
    assert (consent.decision, consent.approver) == (Decision.APPROVAL_REQUIRED, "consent")
    assert demo.decide("carol", "payments.refund", action="approve").decision is Decision.ALLOW
    assert demo.decide("bob", "payments.refund", action="approve").decision is Decision.DENY


def test_unknown_subjects_and_unmatched_tools_are_denied_by_default(demo: PolicyEngine) -> None:
    decision = demo.decide("nobody", "crm.find_customer")
    assert decision.decision is Decision.DENY
    assert decision.rule is None
    assert demo.decide("alice", "crm.delete_customer").decision is Decision.DENY


def engine(lines: list[tuple[Any, ...]], groups: list[tuple[str, str]]) -> PolicyEngine:
    rules = [
        Rule(s, t, a, Effect(e), ap, f"test:{i}", parse_condition(rest[0]) if rest and rest[0] else None)
        for i, (s, t, a, e, ap, *rest) in enumerate(lines)
    ]
    return PolicyEngine(rules, [GroupingRule(m, r, "test") for m, r in groups], version="test")


CONDITIONS = [
    None,
    None,
    "args.amount <= 100",
    "args.amount > 50 and args.amount < 5000",
    'args.to endswith "@a.example"',
    'subject.tenant == "acme"',
    'not (args.priority in ["high", "urgent"])',
]
CONTEXTS: list[dict[str, Any]] = [
    {"args": {}, "subject": {"tenant": "acme"}},
    {"args": {"amount": 20, "to": "x@a.example"}, "subject": {"tenant": "acme"}},
    {"args": {"amount": 700, "priority": "high"}, "subject": {"tenant": "globex"}},
    {"args": {"amount": "lots", "to": 5}, "subject": {}},
    {"args": {"amount": 99999, "priority": "low", "to": "y@b.example"}, "subject": {"tenant": "acme"}},
]


def test_deny_beats_approval_beats_allow_through_inherited_roles() -> None:
    policy = engine(
        [
            ("role:base", "crm.*", "call", "allow", None),
            ("role:mid", "crm.update", "call", "approve", "role:boss"),
            ("role:top", "crm.delete", "call", "deny", None),
            ("role:base", "crm.delete", "call", "allow", None),
        ],
        [("u", "role:top"), ("role:top", "role:mid"), ("role:mid", "role:base")],
    )
    assert policy.decide("u", "crm.read").decision is Decision.ALLOW
    assert policy.decide("u", "crm.update").decision is Decision.APPROVAL_REQUIRED
    assert policy.decide("u", "crm.delete").decision is Decision.DENY
    assert policy.decide("u", "crm.delete").rule == "p, role:top, crm.delete, call, deny"


def test_the_role_index_decides_exactly_as_casbin_on_random_policies() -> None:
    """Allow/deny through the role index must equal plain Casbin's enforce() (zero differences).

    Rules carry random conditions and requests random contexts (fields missing, of the
    wrong type): Casbin evaluates them through `condMatch` in the model's matcher.
    Casbin ignores 'approve' rules, so each policy is compared twice: with approve
    rules read as deny (our ALLOW must equal Casbin's allow) and read as allow (our
    not-DENY must equal Casbin's allow).
    """
    rng = random.Random(20261128)
    subjects = [f"user{i}" for i in range(6)] + [f"role:r{i}" for i in range(6)]
    tools = ["crm.read", "crm.write", "crm.delete", "mail.send", "pay.refund", "pay.void"]
    globs = [*tools, "crm.*", "pay.*", "*", "*.send", "crm.?ead"]
    compared = 0
    for _ in range(60):
        lines = [
            (
                rng.choice(subjects),
                rng.choice(globs),
                rng.choice(["call", "approve"]),
                rng.choice(["allow", "allow", "deny", "approve"]),
                rng.choice(CONDITIONS),
            )
            for _ in range(rng.randint(1, 25))
        ]
        groups = [(rng.choice(subjects), f"role:r{rng.randrange(6)}") for _ in range(rng.randint(0, 10))]
        # Casbin has no 'approve' effect: approve rules are compared unconditioned (their
        # conditions are tested directly below).
        lines = [(s, t, a, e, None if e == "approve" else c) for s, t, a, e, c in lines]
        full = [(s, t, a, e, "role:r0" if e == "approve" else None, c) for s, t, a, e, c in lines]
        ours = engine(full, groups)
        as_deny = engine([(s, t, a, "deny" if e == "approve" else e, None, c) for s, t, a, e, c in lines], groups)
        as_allow = engine([(s, t, a, "allow" if e == "approve" else e, None, c) for s, t, a, e, c in lines], groups)
        for _ in range(60):
            subject, tool, action = rng.choice(subjects), rng.choice(tools), rng.choice(["call", "approve"])
            context = rng.choice(CONTEXTS)
            decision = ours.decide(subject, tool, action, context).decision
            assert (decision is Decision.ALLOW) == as_deny.casbin_enforce(subject, tool, action, context)
            assert (decision is not Decision.DENY) == as_allow.casbin_enforce(subject, tool, action, context)
            compared += 1
    assert compared == 3600


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("p, alice, crm.*, call", "a rule is"),
        ("p, alice, crm.*, execute, allow", "unknown action 'execute'"),
        ("p, alice, crm.*, call, permit", "unknown effect 'permit'"),
        ("p, alice, crm.*, call, approve", "must name the approver role"),
        ("p, alice, crm.*, call, allow, approver role:x", "only 'approve' rules take an approver"),
        ("p, alice, crm.*, call, allow, role:x", "unknown clause 'role:x'"),
        ("p, alice, crm.*, call, approve, approver role:x, quorum none", "quorum must be a whole number"),
        ("p, alice, crm.*, call, allow, when args.amount <", "invalid condition: condition ends early"),
        ("p, alice, crm.*, call, allow, when subject.name == 1", "unknown subject field 'name'"),
        ("g, alice", "a role line is"),
        ('p, "alice", crm.*, call, allow', "quotes are not supported"),
        ("x, alice, role:y", "unknown line type 'x'"),
        ("p, alice, , call, allow", "empty field"),
    ],
)
def test_a_malformed_policy_line_is_a_load_error_with_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    policy = tmp_path / "policy.csv"
    policy.write_text(f"# header\np, bob, crm.*, call, allow\n{line}\n")
    with pytest.raises(PolicyError) as raised:
        PolicyEngine.from_files(REPO / "policies" / "model.conf", policy)
    assert len(raised.value.problems) == 1
    assert raised.value.problems[0].startswith(f"{policy}:3: ")
    assert problem in raised.value.problems[0]


def test_a_model_with_another_matcher_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "model.conf"
    model.write_text((REPO / "policies" / "model.conf").read_text().replace("r.act == p.act", "true"))
    with pytest.raises(PolicyError) as raised:
        PolicyEngine.from_files(model, REPO / "policies" / "policy.csv")
    assert "[matchers] m must be" in raised.value.problems[0]


def test_a_condition_that_cannot_be_evaluated_never_allows_and_always_denies() -> None:
    policy = engine(
        [
            ("u", "pay.refund", "call", "allow", None, "args.amount <= 100"),
            ("u", "pay.void", "call", "approve", "role:boss", "args.amount <= 100"),
            ("u", "pay.void", "call", "allow", None, None),
            ("u", "pay.*", "call", "deny", None, 'args.currency != "EUR"'),
        ],
        [],
    )

    def context(**args: object) -> dict[str, Any]:
        return {"args": args, "subject": {"id": "u", "tenant": None, "roles": []}}

    assert policy.decide("u", "pay.refund", "call", context(amount=5, currency="EUR")).decision is Decision.ALLOW
    # amount missing: the allow rule does not match (and nothing else allows)
    assert policy.decide("u", "pay.refund", "call", context(currency="EUR")).decision is Decision.DENY
    # currency missing: the deny rule's condition cannot be evaluated, so it denies
    denied = policy.decide("u", "pay.refund", "call", context(amount=5))
    assert denied.decision is Decision.DENY and denied.rule is not None and "deny" in denied.rule
    # a wrong type is an error too, not a false comparison
    assert policy.decide("u", "pay.refund", "call", context(amount="5", currency="EUR")).decision is Decision.DENY
    # an approve rule whose condition errs denies: a failed check must not skip the approval
    assert policy.decide("u", "pay.void", "call", context(amount="x", currency="EUR")).decision is Decision.DENY
    assert (
        policy.decide("u", "pay.void", "call", context(amount=5, currency="EUR")).decision is Decision.APPROVAL_REQUIRED
    )


def test_without_arguments_conditional_rules_decide_visibility_optimistically() -> None:
    policy = engine(
        [("u", "a.*", "call", "allow", None, "args.n < 1"), ("u", "a.b", "call", "deny", None, "args.n > 5")], []
    )
    assert policy.decide("u", "a.b").decision is Decision.ALLOW
    assert policy.decide("u", "a.c").decision is Decision.ALLOW
    assert policy.decide("v", "a.b").decision is Decision.DENY
