"""Casbin authorization: allow, deny or approval required, deny by default.

A tool the caller may not call does not exist for them: the refusal is the same
`unknown_tool` an unknown name gets, while the audit log records the real
decision and the rule behind it. An upstream resource, prompt or completion
request is decided on its policy object and action (`read`, `get`); any deny
makes it look unknown, as it always has.
"""

from __future__ import annotations

from typing import ClassVar

from gateway.calls import CallContext, Continue, Request, Stop
from gateway.catalog import Catalog
from gateway.outcomes import Decision, Outcome, OutcomeCode
from gateway.policy import PolicyDecision, PolicyEngine


class Authorization:
    name: ClassVar[str] = "authorization"
    executes: ClassVar[bool] = False

    def __init__(self, policy: PolicyEngine, catalog: Catalog) -> None:
        self._policy = policy
        self._catalog = catalog
        # Conditions see the arguments the tool will get: schema defaults fill what the caller left out
        # (else `args.x == ...` on an omitted optional argument could not be evaluated and would deny).
        self._defaults = {
            d.name: {
                name: prop["default"]
                for name, prop in (d.input_schema.get("properties") or {}).items()
                if isinstance(prop, dict) and "default" in prop
            }
            for d in catalog.definitions()
        }

    async def __call__(self, call: CallContext) -> Continue | Stop:
        if call.request is not None:
            return self._request(call, call.request)
        subject = call.caller.subject or ""
        entry = self._catalog.get(call.tool_name)
        quarantined = self._catalog.quarantined.get(call.tool_name)
        if entry is None and quarantined is None:
            # Not a policy decision: the audit record says so (a replay skips it).
            decision = PolicyDecision.unlisted(call.roles)
            return Stop(call.evolve(decision=decision), unknown_tool(call.tool_name, self.name))
        granted = call.caller.granted_roles
        if self._policy.decide(subject, call.tool_name, granted=granted).decision is Decision.DENY:
            # Not even conditionally callable: the tool does not exist for this caller.
            denied = PolicyDecision(decision=Decision.DENY, roles=call.roles)
            return Stop(call.evolve(decision=denied), unknown_tool(call.tool_name, self.name))
        arguments = call.arguments
        defaults = self._defaults.get(call.tool_name)
        if defaults and isinstance(arguments, dict):
            arguments = {**defaults, **arguments}
        decision = self._policy.decide(subject, call.tool_name, "call", _context(call, arguments), granted)
        call = call.evolve(tool=entry[0] if entry else None, decision=decision)
        if decision.decision is Decision.DENY:
            # The caller is told the rule and its id, never the server's paths (the audit log has them).
            message = f"policy denies this call to {call.tool_name}: {decision.cited}"
            return Stop(call, Outcome.refuse(OutcomeCode.DENIED, message, stage=self.name, rule=decision.rule))
        if quarantined is not None:
            verdict = quarantined[0]
            if verdict.findings:
                rules = ", ".join(sorted({f["rule"] for f in verdict.findings}))
                message = f"{call.tool_name} is quarantined: the guardrails flagged its definition ({rules})"
            elif verdict.pinned_hash:
                message = f"{call.tool_name} is quarantined: its definition differs from the pinned one"
            else:
                message = f"{call.tool_name} is quarantined: its definition has not been pinned"
            outcome = Outcome.refuse(
                OutcomeCode.TOOL_DEFINITION_CHANGED,
                message
                + (
                    " (an operator must review it: portcullis tools diff / tools pin)"
                    if not verdict.findings
                    else " (an operator must review it and list it under definitions.exempt in guardrails.yaml)"
                ),
                stage=self.name,
                pinned_hash=verdict.pinned_hash,
                live_hash=verdict.live_hash,
                findings=list(verdict.findings),
            )
            return Stop(call.evolve(tool=quarantined[1]), outcome)
        return Continue(call)

    def _request(self, call: CallContext, request: Request) -> Continue | Stop:
        subject = call.caller.subject or ""
        decision = PolicyDecision(decision=Decision.DENY, roles=call.roles)
        if request.fetch is not None:
            context = _context(call, call.arguments)
            decision = self._policy.decide(subject, call.tool_name, request.action, context, call.caller.granted_roles)
        call = call.evolve(decision=decision)
        if decision.decision is Decision.DENY:
            message = f"Unknown {request.kind}: {request.shown}"
            return Stop(call, Outcome.refuse(request.unknown, message, stage=self.name))
        return Continue(call)


def _context(call: CallContext, arguments: object) -> dict[str, object]:
    """What a rule's condition sees: the arguments and the subject."""
    subject = {"id": call.caller.subject or "", "tenant": call.caller.tenant, "roles": list(call.roles)}
    return {"args": arguments, "subject": subject}


def unknown_tool(name: str, stage: str) -> Outcome:
    return Outcome.refuse(OutcomeCode.UNKNOWN_TOOL, f"Unknown tool: {name}", stage=stage)
