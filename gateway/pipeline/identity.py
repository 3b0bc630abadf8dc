"""Resolve the caller's roles; a caller without a subject goes no further."""

from __future__ import annotations

from typing import ClassVar

from gateway.calls import CallContext, Continue, Stop
from gateway.outcomes import Outcome, OutcomeCode
from gateway.policy import PolicyEngine


class Identity:
    name: ClassVar[str] = "identity"
    executes: ClassVar[bool] = False

    def __init__(self, policy: PolicyEngine) -> None:
        self._policy = policy

    async def __call__(self, call: CallContext) -> Continue | Stop:
        subject = call.caller.subject
        if not subject:
            return Stop(call, Outcome.refuse(OutcomeCode.UNAUTHENTICATED, "no authenticated caller", stage=self.name))
        return Continue(call.evolve(roles=self._policy.roles_for(subject, call.caller.granted_roles)))
