"""Rate limits: token buckets per subject and tool, checked before any policy work is spent."""

from __future__ import annotations

from typing import ClassVar

from gateway.calls import CallContext, Continue, Finding, Stop
from gateway.guardrails.config import RateLimit
from gateway.guardrails.rate_limits import RateLimiter
from gateway.outcomes import Outcome, OutcomeCode


class RateLimits:
    name: ClassVar[str] = "rate_limits"
    executes: ClassVar[bool] = False

    def __init__(self, limits: tuple[RateLimit, ...], limiter: RateLimiter) -> None:
        self._limits = limits
        self._limiter = limiter

    async def __call__(self, call: CallContext) -> Continue | Stop:
        if not self._limits:
            return Continue(call)
        exceeded = self._limiter.take(self._limits, call.caller.subject or "", call.tool_name, consume=call.execute)
        if exceeded is None:
            return Continue(call)
        limit, wait = exceeded
        retry_after = round(wait, 3)
        message = (
            f"rate limit reached for {call.tool_name}: {limit.rate:g} calls per {limit.per_seconds:g} s;"
            f" retry after {retry_after:g} s"
        )
        finding = Finding(rule="rate_limits", message=message, stage=self.name, action="block")
        return Stop(
            call.evolve(findings=(*call.findings, finding)),
            Outcome.refuse(OutcomeCode.RATE_LIMITED, message, stage=self.name, retry_after=retry_after),
        )
