"""Run the tool through its source (or a request's upstream fetch), with its timeout; failures become outcomes.

A tool's own error result is not an outcome yet: it goes on to the output
guardrails like any result, and `reported_error` makes it `tool_failed` after.
"""

from __future__ import annotations

from typing import ClassVar

import anyio

from gateway.calls import ActingFor, ActsForCaller, CallContext, Continue, Finding, Request, Stop
from gateway.catalog import Catalog
from gateway.config import GatewayConfig
from gateway.guardrails.addresses import AddressRefused
from gateway.outcomes import Outcome, OutcomeCode, UpstreamError
from gateway.pipeline.output_guardrails import FINDINGS_META_KEY
from gateway.pipeline.relay import governed_relay
from gateway.ports import AuditSink
from gateway.tool_api import ToolContext
from gateway.tool_types import ToolResult


class Execution:
    name: ClassVar[str] = "execution"
    executes: ClassVar[bool] = True

    def __init__(self, config: GatewayConfig, catalog: Catalog, audit: AuditSink | None = None) -> None:
        self._config = config
        self._catalog = catalog
        self._audit = audit
        """Where relayed elicitation and sampling requests are recorded (see pipeline/relay.py)."""

    async def __call__(self, call: CallContext) -> Continue | Stop:
        if call.request is not None:
            return await self._fetch(call, call.request)
        entry = self._catalog.get(call.tool_name)
        if entry is None or not call.execute:
            return Continue(call)
        definition, source = entry
        timeout = self._config.tool_timeout(definition.name, definition.timeout_seconds)
        if call.timeout_seconds is not None:
            timeout = min(timeout, call.timeout_seconds)
        context = ToolContext(
            subject=call.caller.subject or "",
            roles=call.roles,
            settings={},
            root=self._config.root,
            call_id=call.call_id,
            progress=call.progress,
            relay=governed_relay(call, source, self._audit),
        )
        try:
            with anyio.fail_after(timeout):
                if isinstance(source, ActsForCaller):  # the gateway's own tools act for the caller
                    acting = ActingFor(call.caller, call.approved)
                    result = await source.call_for(acting, definition, call.arguments, context)
                else:
                    result = await source.call(definition, call.arguments, context)
        except TimeoutError:
            message = f"{definition.name} did not finish within {timeout:g} s"
            return Stop(call, Outcome.refuse(OutcomeCode.TIMEOUT, message, stage=self.name, timeout_seconds=timeout))
        except AddressRefused as exc:
            # An HTTP tool's connection (or a redirect) led to an address it may not reach.
            finding = Finding(rule=exc.rule, message=str(exc), stage=self.name, action="block")
            shown = finding.model_dump(include={"rule", "message", "stage", "action"})
            outcome = Outcome.refuse(OutcomeCode.GUARDRAIL_BLOCKED, str(exc), stage=self.name, findings=[shown])
            return Stop(call.evolve(findings=(*call.findings, finding)), outcome)
        except UpstreamError as exc:
            return Stop(call, Outcome.refuse(OutcomeCode.UPSTREAM_UNAVAILABLE, str(exc), stage=self.name))
        except Exception as exc:  # seam: a tool may raise anything; the gateway keeps serving
            message = f"{definition.name} failed: {type(exc).__name__}: {exc}"
            return Stop(call, Outcome.refuse(OutcomeCode.TOOL_FAILED, message, stage=self.name))
        return Continue(call.evolve(result=result))

    async def _fetch(self, call: CallContext, request: Request) -> Continue | Stop:
        if request.fetch is None or not call.execute:
            return Continue(call)
        timeout = request.timeout_seconds or self._config.tools.timeout_seconds
        if call.timeout_seconds is not None:
            timeout = min(timeout, call.timeout_seconds)
        try:
            with anyio.fail_after(timeout):
                answer = await request.fetch(call.arguments)
        except TimeoutError:
            message = f"{call.tool_name} did not answer within {timeout:g} s"
            return Stop(call, Outcome.refuse(OutcomeCode.TIMEOUT, message, stage=self.name, timeout_seconds=timeout))
        except UpstreamError as exc:
            return Stop(call, Outcome.refuse(OutcomeCode.UPSTREAM_UNAVAILABLE, str(exc), stage=self.name))
        return Continue(call.evolve(answer=answer))


def reported_error(call: CallContext, result: ToolResult) -> Outcome:
    """The `tool_failed` outcome of a tool that reported its own failure, from its result as the output
    guardrails left it: the caller gets the tool's (scanned) content, and the message quotes the scanned
    text, or only names the notice when the guardrails annotated it (the content carries it beside the text)."""
    annotated = sorted({f.rule for f in call.findings if f.action == "annotate"})
    if annotated:
        detail = f"its text carries a guardrail notice ({', '.join(annotated)}); see the content"
    else:
        # Not annotated: no notice was put in front, so the first text block is the tool's own (scanned).
        detail = next((str(b.get("text", "")) for b in result.content if b.get("type") == "text"), "")[:500]
    meta = {key: value for key, value in result.meta.items() if key != FINDINGS_META_KEY}
    return Outcome(
        code=OutcomeCode.TOOL_FAILED,
        message=f"{call.tool_name} reported an error: {detail}",
        stage=Execution.name,
        content=result.content,
        data={"tool_error": True, **meta},
        meta={FINDINGS_META_KEY: result.meta[FINDINGS_META_KEY]} if FINDINGS_META_KEY in result.meta else {},
    )
