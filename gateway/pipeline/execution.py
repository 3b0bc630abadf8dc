"""Run the tool through its source, with the tool's timeout; failures become outcomes."""

from __future__ import annotations

from typing import ClassVar

import anyio

from gateway.catalog import Catalog
from gateway.config import GatewayConfig
from gateway.guardrails.addresses import AddressRefused
from gateway.outcomes import Outcome, OutcomeCode
from gateway.pipeline.context import CallContext, Continue, Finding, Stop
from gateway.sources.base import ToolContext, UpstreamError


class Execution:
    name: ClassVar[str] = "execution"
    executes: ClassVar[bool] = True

    def __init__(self, config: GatewayConfig, catalog: Catalog) -> None:
        self._config = config
        self._catalog = catalog

    async def __call__(self, call: CallContext) -> Continue | Stop:
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
            relay=call.relay,
            extra={"caller": call.caller, "approved": call.approved},
        )
        try:
            with anyio.fail_after(timeout):
                result = await source.call(definition, call.arguments, context)
        except TimeoutError:
            message = f"{definition.name} did not finish within {timeout:g} s"
            return Stop(call, Outcome.refuse(OutcomeCode.TIMEOUT, message, stage=self.name, timeout_seconds=timeout))
        except AddressRefused as exc:
            # An HTTP tool's connection (or a redirect) led to an address it may not reach.
            finding = {"rule": exc.rule, "message": str(exc), "stage": self.name, "action": "block"}
            outcome = Outcome.refuse(OutcomeCode.GUARDRAIL_BLOCKED, str(exc), stage=self.name, findings=[finding])
            return Stop(call.evolve(findings=(*call.findings, Finding(**finding))), outcome)
        except UpstreamError as exc:
            return Stop(call, Outcome.refuse(OutcomeCode.UPSTREAM_UNAVAILABLE, str(exc), stage=self.name))
        except Exception as exc:  # seam: a tool may raise anything; the gateway keeps serving
            message = f"{definition.name} failed: {type(exc).__name__}: {exc}"
            return Stop(call, Outcome.refuse(OutcomeCode.TOOL_FAILED, message, stage=self.name))
        if result.is_error:
            # The tool reported its own failure: the caller gets the tool's content with the code.
            text = next((block.get("text", "") for block in result.content if block.get("type") == "text"), "")
            outcome = Outcome(
                code=OutcomeCode.TOOL_FAILED,
                message=f"{definition.name} reported an error: {text[:500]}",
                stage=self.name,
                content=result.content,
                data={"tool_error": True, **result.meta},
            )
            return Stop(call.evolve(result=result), outcome)
        return Continue(call.evolve(result=result))
