"""Govern what an upstream MCP server asks back through the gateway: elicitation and sampling.

While one of its tools runs, an upstream may ask the calling client's user a question
(`elicitation/create`) or its model for a completion (`sampling/createMessage`). Each such
request is decided like a call: policy must allow the caller `elicit` / `sample` on the tool
(`p, role:support, kb.*, elicit, allow`; deny by default), guardrails inspect it (forms asking
for secrets, URL targets, token and size ceilings, a per-call count, the argument detectors on
sampling messages), and one `relay.elicit` / `relay.sample` audit record names the upstream,
the call, the decision and the outcome, with the user's answers masked as arguments are.

A refusal goes back to the upstream as a JSON-RPC error (not a `decline`): the upstream learns
that the gateway, not the user, said no, and the user is never shown the request.
The gateway's own tools and the deployment's Python tools are its own code and are not governed here.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, TypeVar
from urllib.parse import urlsplit

from mcp import types

from gateway.audit import AuditRecord, redact_arguments
from gateway.calls import CallContext, Finding
from gateway.canonical import canonical_json, sha256_hex
from gateway.guardrails.config import SEVERITY, ElicitationSettings
from gateway.guardrails.detectors import GROUPS
from gateway.guardrails.engine import ToolGuard
from gateway.outcomes import AuditWriteError, Decision, OutcomeCode
from gateway.policy import PolicyDecision, PolicyEngine
from gateway.ports import AuditSink
from gateway.sources.base import ToolSource
from gateway.sources.mcp_upstream import McpUpstream
from gateway.tool_api import Relay

STAGE = "relay"
R = TypeVar("R")
REFUSED = types.INVALID_REQUEST
"""The JSON-RPC error code of a refused relayed request; `data.code` holds the gateway's code."""


@dataclass(frozen=True)
class RelayOffer:
    """What the gateway tells one upstream it supports, on the connection all callers share."""

    elicitation: bool = False
    sampling: bool = False


def relay_offer(policy: PolicyEngine, namespace: str) -> RelayOffer:
    """Declare a capability to an upstream only when some allow rule could let one of its tools use it."""

    def offered(action: str) -> bool:
        return any(
            rule.action == action and rule.effect.value == "allow" and fnmatchcase(namespace, rule.tool.split(".")[0])
            for rule in policy.rules
        )

    return RelayOffer(elicitation=offered("elicit"), sampling=offered("sample"))


def declare_relay_capabilities(policy: PolicyEngine, upstreams: Iterable[McpUpstream]) -> None:
    """Tell each upstream's next handshake what policy lets it use (a change reconnects it)."""
    for upstream in upstreams:
        offer = relay_offer(policy, upstream.namespace)
        upstream.offer(elicitation=offer.elicitation, sampling=offer.sampling)


def governed_relay(call: CallContext, source: ToolSource, audit: AuditSink | None) -> Relay | None:
    """The back channel a tool gets: governed for upstream MCP servers, the caller's own for in-process tools."""
    if source.kind != "mcp":
        return call.relay
    return GovernedRelay(call, str(getattr(source, "namespace", source.name)), audit)


class _Refusal(Exception):
    """A governance refusal, raised inside one request's checks and answered as a JSON-RPC error."""

    def __init__(self, code: OutcomeCode, message: str, findings: tuple[Finding, ...] = ()) -> None:
        super().__init__(message)
        self.code, self.message, self.findings = code, message, findings


class GovernedRelay:
    """The caller's relay, wrapped with the call it belongs to: decide, inspect, cap, audit, then ask."""

    def __init__(self, call: CallContext, upstream: str, audit: AuditSink | None) -> None:
        self._call = call
        self._upstream = upstream
        self._audit = audit
        self._settings = call.snapshot.guardrails.config.relay
        self._samples = 0
        """Sampling requests this call has made (the per-call cap counts refused ones too)."""

    # --- elicitation ------------------------------------------------------

    async def elicit(self, params: types.ElicitRequestParams) -> types.ElicitResult | types.ErrorData:
        detail: dict[str, Any] = {"upstream": self._upstream, "mode": params.mode, "message": params.message[:500]}
        decision = self._decide("elicit")
        try:
            self._allowed(decision, "elicit")
            if isinstance(params, types.ElicitRequestURLParams):
                detail["url_host"] = urlsplit(params.url).hostname
                _check_url(params.url, self._settings.elicitation.allow_url_hosts)
            else:
                detail["fields"] = sorted((params.requested_schema.get("properties") or {}).keys())
                _check_form(params, self._settings.elicitation)
        except _Refusal as refusal:
            return await self._refuse("relay.elicit", decision, refusal, detail)
        reply = await self._inner("elicit", params)
        if isinstance(reply, types.ErrorData):
            return await self._failed("relay.elicit", decision, reply, detail)
        detail["action"] = reply.action
        if reply.content is not None:
            keys = self._call.snapshot.config.audit
            salt = self._audit.salt if self._audit is not None else ""
            detail["answers"] = redact_arguments(reply.content, keys.secret_keys, salt, keys.personal_keys)
        return await self._record("relay.elicit", decision, "relayed", None, (), detail, reply)

    # --- sampling ---------------------------------------------------------

    async def sample(
        self, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData:
        self._samples += 1
        limits = self._settings.sampling
        body = {"systemPrompt": params.system_prompt, "messages": [m.model_dump(mode="json") for m in params.messages]}
        size = len(canonical_json(body).encode())
        detail: dict[str, Any] = {
            "upstream": self._upstream,
            "request": self._samples,
            "max_tokens": params.max_tokens,
            "message_bytes": size,
            "messages_digest": sha256_hex(canonical_json(body)),
        }
        decision = self._decide("sample")
        findings: tuple[Finding, ...] = ()
        try:
            self._allowed(decision, "sample")
            if self._samples > limits.max_requests_per_call:
                raise _Refusal(
                    OutcomeCode.RATE_LIMITED,
                    f"this call already made {limits.max_requests_per_call} sampling requests (the per-call limit)",
                )
            if params.max_tokens > limits.max_tokens:
                raise _Refusal(
                    OutcomeCode.ARGUMENTS_TOO_LARGE,
                    f"maxTokens {params.max_tokens} is above the ceiling of {limits.max_tokens}",
                )
            if size > limits.max_message_bytes:
                raise _Refusal(
                    OutcomeCode.ARGUMENTS_TOO_LARGE,
                    f"the messages take {size} bytes, above the limit of {limits.max_message_bytes}",
                )
            params, findings = await self._scan(params, body)
        except _Refusal as refusal:
            return await self._refuse("relay.sample", decision, refusal, detail)
        reply = await self._inner("sample", params)
        if isinstance(reply, types.ErrorData):
            return await self._failed("relay.sample", decision, reply, detail)
        answer = canonical_json(reply.model_dump(mode="json", by_alias=True, exclude_none=True))
        detail.update(model=reply.model, stop_reason=reply.stop_reason, result_bytes=len(answer.encode()))
        return await self._record("relay.sample", decision, "relayed", None, findings, detail, reply)

    async def _scan(
        self, params: types.CreateMessageRequestParams, body: dict[str, Any]
    ) -> tuple[types.CreateMessageRequestParams, tuple[Finding, ...]]:
        """The tool's argument detectors plus `relay.sampling.detectors` on the messages; redact or refuse."""
        guardrails = self._call.snapshot.guardrails
        actions = dict(guardrails.guard(self._call.tool_name).arguments)
        for name, action in self._settings.sampling.detectors.items():
            for member in GROUPS.get(name, (name,)):
                if member not in actions or SEVERITY[action] > SEVERITY[actions[member]]:
                    actions[member] = action
        unknown = sorted(set(actions) - set(guardrails.detectors))
        if unknown:
            raise _Refusal(OutcomeCode.GUARDRAIL_BLOCKED, f"unknown detectors in relay.sampling: {unknown}")
        report = await guardrails.scan(ToolGuard(arguments=actions), "arguments", body)
        findings = tuple(
            Finding(rule=f.rule, message=f.message, stage=STAGE, path=f.path, action=f.action) for f in report.findings
        )
        if report.verdict in ("block", "require_approval"):
            rules = ", ".join(sorted({f.rule for f in findings}))
            raise _Refusal(OutcomeCode.GUARDRAIL_BLOCKED, f"the sampling messages were blocked ({rules})", findings)
        if report.verdict == "redact":
            redacted = report.value
            params = params.model_copy(
                update={
                    "system_prompt": redacted["systemPrompt"],
                    "messages": [types.SamplingMessage.model_validate(m) for m in redacted["messages"]],
                }
            )
        return params, findings

    # --- shared -----------------------------------------------------------

    def _decide(self, action: str) -> PolicyDecision:
        call = self._call
        context = {
            "args": call.arguments,
            "subject": {"id": call.caller.subject, "tenant": call.caller.tenant, "roles": list(call.roles)},
        }
        subject = call.caller.subject or ""
        return call.snapshot.policy.decide(subject, call.tool_name, action, context, call.caller.granted_roles)

    def _allowed(self, decision: PolicyDecision, action: str) -> None:
        if decision.decision is not Decision.ALLOW:
            message = f"policy does not let {self._upstream} {action} through {self._call.tool_name}: {decision.cited}"
            raise _Refusal(OutcomeCode.DENIED, message)

    async def _inner(self, action: str, params: Any) -> Any:
        relay = self._call.relay
        if relay is None:
            return types.ErrorData(code=REFUSED, message="the calling client's connection has no back channel")
        return await (relay.elicit(params) if action == "elicit" else relay.sample(params))

    async def _refuse(
        self, event: str, decision: PolicyDecision, refusal: _Refusal, detail: dict[str, Any]
    ) -> types.ErrorData:
        error = types.ErrorData(
            code=REFUSED, message=f"portcullis refused this request: {refusal.message}", data={"code": refusal.code}
        )
        result = await self._record(
            event, decision, refusal.code.value, refusal.message, refusal.findings, detail, error
        )
        return result if isinstance(result, types.ErrorData) else error

    async def _failed(
        self, event: str, decision: PolicyDecision, error: types.ErrorData, detail: dict[str, Any]
    ) -> types.ErrorData:
        result = await self._record(
            event, decision, "failed", error.message, (), {**detail, "error": error.code}, error
        )
        return result if isinstance(result, types.ErrorData) else error

    async def _record(
        self,
        event: str,
        decision: PolicyDecision,
        outcome: str,
        message: str | None,
        findings: tuple[Finding, ...],
        detail: dict[str, Any],
        reply: R,
    ) -> R | types.ErrorData:
        """Record the request; an answer whose record cannot be written is withheld from the upstream."""
        if self._audit is None:
            return reply
        call = self._call
        record = AuditRecord(
            event=event,
            call_id=call.call_id,
            **call.caller.audit_fields(),
            roles=call.roles,
            tool=call.tool_name,
            decision=decision.decision.value,
            rule=decision.reason,
            policy_version=call.snapshot.policy.version,
            findings=tuple(f.model_dump(mode="json") for f in findings),
            outcome=outcome,
            message=message,
            stage=STAGE,
            detail=detail,
        )
        try:
            await self._audit.append(record)
        except AuditWriteError:
            return types.ErrorData(
                code=types.INTERNAL_ERROR,
                message="the gateway could not record this request, so its answer is withheld",
                data={"code": OutcomeCode.AUDIT_UNAVAILABLE},
            )
        return reply


def _check_url(url: str, allowed: tuple[str, ...]) -> None:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not host or not any(fnmatchcase(host, pattern.lower()) for pattern in allowed):
        message = f"URL elicitation to {host or url[:80]!r} is not allowed (relay.elicitation.allow_url_hosts)"
        raise _Refusal(OutcomeCode.GUARDRAIL_BLOCKED, message)


def _check_form(params: types.ElicitRequestFormParams, settings: ElicitationSettings) -> None:
    if not settings.block_sensitive_fields:
        return
    texts = [("message", params.message)]
    for name, field in (params.requested_schema.get("properties") or {}).items():
        texts.append((f"field {name}", str(name)))
        if isinstance(field, dict):
            texts.extend((f"field {name}", str(field.get(key) or "")) for key in ("title", "description"))
    asked = sorted({where for where, text in texts if _asks_for(_words(text), settings.sensitive_words)})
    if asked:
        finding = Finding(
            rule="relay.sensitive_elicitation",
            message=f"the form asks for a secret or credential ({', '.join(asked)})",
            stage=STAGE,
            action="block",
        )
        raise _Refusal(OutcomeCode.GUARDRAIL_BLOCKED, finding.message, (finding,))


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[\W_]+")


def _words(text: str) -> str:
    """`secretAccessKey`, `secret_access_key` and `Secret-Access  KEY` all become `secret access key`."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")  # zero-width and other invisibles
    text = _CAMEL.sub(" ", text)
    return " " + " ".join(_SEPARATORS.sub(" ", text).lower().split()) + " "


def _asks_for(text: str, words: tuple[str, ...]) -> bool:
    """Long words match inside identifiers too (`cloudsecretkey`); short ones (`pin`, `cvv`) only as words."""
    squashed = text.replace(" ", "")
    for word in words:
        phrase = _words(word).strip()
        joined = phrase.replace(" ", "")
        if len(joined) >= 5 and joined in squashed:
            return True
        if len(joined) < 5 and (f" {phrase} " in text or f" {phrase}s " in text):
            return True
    return False
