"""Rate limits: token buckets per subject and tool, checked before any policy work is spent.

A bucket store that cannot answer refuses the call (fail closed), never lets it through uncounted.
"""

from __future__ import annotations

from typing import ClassVar

from gateway.calls import CallContext, Continue, Finding, Stop
from gateway.guardrails.config import RateLimit
from gateway.guardrails.rate_limits import RateLimiter
from gateway.outcomes import Outcome, OutcomeCode
from gateway.store.errors import StoreError


class RateLimits:
    name: ClassVar[str] = "rate_limits"
    executes: ClassVar[bool] = False

    def __init__(self, limits: tuple[RateLimit, ...], limiter: RateLimiter) -> None:
        self._limits = limits
        self._limiter = limiter

    async def __call__(self, call: CallContext) -> Continue | Stop:
        if not self._limits:
            return Continue(call)
        try:
            exceeded = await self._limiter.take(
                self._limits, call.caller.subject or "", call.tool_name, consume=call.execute
            )
        except StoreError as exc:
            return Stop(call, exc.refusal(self.name, "its rate limits could not be checked"))
        if exceeded is None:
            return Continue(call)
        limit, wait = exceeded
        retry_after = round(wait, 3)
        ran_out, message = _ran_out(limit)
        message = f"rate limit reached for {call.tool_name}: {message}; retry after {retry_after:g} s"
        finding = Finding(rule="rate_limits", message=message, stage=self.name, action="block")
        return Stop(
            call.evolve(findings=(*call.findings, finding)),
            Outcome.refuse(OutcomeCode.RATE_LIMITED, message, stage=self.name, retry_after=retry_after, limit=ran_out),
        )


def _ran_out(limit: RateLimit) -> tuple[str, str]:
    """Which limit ran out, and how to say it. A bucket holds `burst` calls (the rate's own count when no
    burst is set) and refills at the sustained rate: an empty bucket with a burst of its own is a spent burst."""
    rate = f"{limit.rate:g} calls per {limit.per_seconds:g} s"
    if limit.burst is not None and limit.burst != max(1, round(limit.rate)):
        return "burst", f"the burst of {limit.burst} call(s) is used up (it refills at {rate})"
    return "rate", rate
