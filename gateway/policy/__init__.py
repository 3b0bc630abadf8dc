"""Authorization policy: Casbin model and rules, decided through a role index."""

from gateway.policy.engine import PolicyDecision, PolicyEngine
from gateway.policy.rules import Effect, GroupingRule, Rule, parse_policy_file

__all__ = ["Effect", "GroupingRule", "PolicyDecision", "PolicyEngine", "Rule", "parse_policy_file"]
