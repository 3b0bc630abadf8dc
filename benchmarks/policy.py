"""Decision latency as policies grow: plain Casbin `enforce()` vs Portcullis's role index, in one run.

For 10, 1,000 and 10,000 rules (spread over roles; the caller holds 3 roles, one rule in
ten has a condition on the arguments): the median and p99 of one decision, both ways,
and the time to filter a `tools/list` of 1,000 tools for the caller.

    python benchmarks/policy.py [--samples 2000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

from gateway.outcomes import Decision
from gateway.policy import Effect, PolicyEngine, Rule
from gateway.policy.conditions import parse_condition
from gateway.policy.rules import GroupingRule

TOOLS = [f"ns{i}.tool{j}" for i in range(100) for j in range(10)]  # 1,000 tools
CONTEXT = {"args": {"amount": 50}, "subject": {"id": "user0", "tenant": "acme", "roles": []}}


def build(size: int, rng: random.Random) -> PolicyEngine:
    roles = max(1, size // 10)
    rules = []
    for index in range(size):
        condition = parse_condition("args.amount <= 100") if index % 10 == 0 else None
        effect = Effect.DENY if index % 17 == 0 else Effect.ALLOW
        tool = rng.choice(TOOLS) if index % 5 else f"ns{rng.randrange(100)}.*"
        rules.append(Rule(f"role:r{index % roles}", tool, "call", effect, None, f"bench:{index}", condition))
    groups = [GroupingRule("user0", f"role:r{r}", "bench") for r in rng.sample(range(roles), min(3, roles))]
    groups += [GroupingRule(f"user{u}", f"role:r{rng.randrange(roles)}", "bench") for u in range(1, 200)]
    return PolicyEngine(rules, groups, version=f"bench-{size}")


def timings(call: Callable[[], object], samples: int) -> tuple[float, float]:
    values = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        values.append(time.perf_counter() - started)
    values.sort()
    return statistics.median(values) * 1000, values[max(0, int(len(values) * 0.99) - 1)] * 1000


def main(samples: int) -> None:
    rng = random.Random(7)
    print(
        f"{'rules':>6}  {'casbin median':>13} {'p99':>8}  {'index median':>12} {'p99':>8}  {'speed-up':>8}"
        f"  {'list casbin':>11} {'list index':>10}"
    )
    for size in (10, 1_000, 10_000):
        policy = build(size, rng)
        tools = [rng.choice(TOOLS) for _ in range(samples)]
        cursor = iter(range(10**9))

        def fast(policy: Any = policy, tools: list[str] = tools, cursor: Iterator[int] = cursor) -> object:
            return policy.decide("user0", tools[next(cursor) % samples], "call", CONTEXT)

        def plain(policy: Any = policy, tools: list[str] = tools, cursor: Iterator[int] = cursor) -> object:
            return policy.casbin_enforce("user0", tools[next(cursor) % samples], "call", CONTEXT)

        plain_samples = max(20, min(samples, 20_000 // max(size // 10, 1)))
        casbin = timings(plain, plain_samples)
        index = timings(fast, samples)
        started = time.perf_counter()
        listed = [t for t in TOOLS if policy.decide("user0", t).decision is not Decision.DENY]
        list_index = (time.perf_counter() - started) * 1000
        casbin_tools = TOOLS if size <= 1_000 else TOOLS[:100]
        started = time.perf_counter()
        [t for t in casbin_tools if policy.casbin_enforce("user0", t, "call", CONTEXT)]
        list_casbin = (time.perf_counter() - started) * 1000 * len(TOOLS) / len(casbin_tools)
        estimate = "" if casbin_tools is TOOLS else "*"
        print(
            f"{size:>6}  {casbin[0]:>11.3f}ms {casbin[1]:>6.3f}ms  {index[0]:>10.4f}ms {index[1]:>6.4f}ms"
            f"  {casbin[0] / index[0]:>7.0f}x  {list_casbin:>9.0f}ms{estimate:1} {list_index:>8.1f}ms"
            f"   ({len(listed)} of {len(TOOLS)} tools visible)"
        )
    print("* extrapolated from 100 tools (plain Casbin at 10,000 rules takes too long for all 1,000)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2000)
    main(parser.parse_args().samples)
