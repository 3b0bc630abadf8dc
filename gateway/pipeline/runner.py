"""The audited pipeline: the one way a call reaches a tool.

Audit is the onion layer around the stages, not a stage that can be skipped:
the intent is committed before the execution stage runs (if it cannot be, the
tool does not run) and the outcome after, whatever happened in between. Any
exception in a stage becomes a recorded refusal. A tool's own error result is
turned into its `tool_failed` outcome only here, after the output guardrails
scanned it like any other result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import assert_never

from gateway.audit import AuditRecord, redact_arguments
from gateway.calls import CallContext, Continue, Stage, Stop
from gateway.canonical import canonical_json, sha256_hex
from gateway.outcomes import AuditWriteError, Decision, Outcome, OutcomeCode
from gateway.pipeline.execution import reported_error
from gateway.ports import AuditSink

logger = logging.getLogger(__name__)


class Pipeline:
    def __init__(
        self,
        stages: Sequence[Stage],
        audit: AuditSink | None,
        secret_keys: tuple[str, ...],
        personal_keys: tuple[str, ...] = (),
    ) -> None:
        self.stages = tuple(stages)
        self._audit = audit
        self._secret_keys = secret_keys
        self._personal_keys = personal_keys

    async def run(self, call: CallContext) -> Outcome:
        """Run every stage in travel order and record the call (unless it is a dry run)."""
        return (await self.settle(call))[1]

    async def settle(self, call: CallContext) -> tuple[CallContext, Outcome]:
        """`run`, also returning the final context (a request's `answer`, to be delivered only if the outcome is ok)."""
        started = time.perf_counter()
        call, outcome = await self.evaluate(call)
        if not call.execute or self._audit is None:
            return call, outcome
        event = call.request.event if call.request else "tool.call"
        record = self._record(call, outcome, event, (time.perf_counter() - started) * 1000)
        try:
            seq = await self._audit.append(record, call.statements)
        except AuditWriteError as exc:
            logger.error("audit write failed for call %s: %s", call.call_id, exc)
            return call, _audit_unavailable(call, outcome)
        return call, outcome.model_copy(update={"audit_id": seq})

    async def evaluate(self, call: CallContext) -> tuple[CallContext, Outcome]:
        """Run the stages without recording the outcome; a dry run (`execute=False`) executes nothing."""
        for stage in self.stages:
            if stage.executes and call.execute and self._audit is not None:
                try:
                    # Not fsynced on its own: the outcome record's durable commit covers it (see append).
                    intent = f"{call.request.kind}.intent" if call.request else "tool.intent"
                    await self._audit.append(self._record(call, None, intent, None), durable=False)
                except AuditWriteError as exc:
                    message = f"the call was not run because its audit record could not be written: {exc}"
                    return call, Outcome.refuse(OutcomeCode.AUDIT_UNAVAILABLE, message, stage="audit")
            try:
                step = await stage(call)
            except Exception as exc:  # fail closed: a stage that cannot decide refuses
                logger.exception("stage %s failed for call %s", stage.name, call.call_id)
                message = f"{stage.name} failed: {type(exc).__name__}; the call was refused"
                return call, Outcome.refuse(OutcomeCode.INTERNAL_ERROR, message, stage=stage.name)
            match step:
                case Continue():
                    call = step.call
                case Stop():
                    return step.call, step.outcome
                case _:
                    assert_never(step)
        result = call.result
        if result is None:
            return call, Outcome(code=OutcomeCode.OK, message="ok")
        if result.is_error:
            return call, reported_error(call, result)
        return call, Outcome(
            code=OutcomeCode.OK, message="ok", content=result.content, structured=result.structured, meta=result.meta
        )

    def _record(self, call: CallContext, outcome: Outcome | None, event: str, latency_ms: float | None) -> AuditRecord:
        decision = call.decision
        result_digest = result_bytes = None
        if outcome is not None and outcome.ok and call.answer is not None:
            text = canonical_json(call.answer.model_dump(mode="json"))
            result_digest, result_bytes = sha256_hex(text), len(text.encode())
        elif outcome is not None and outcome.ok and call.result is not None:
            text = canonical_json({"content": call.result.content, "structured": call.result.structured})
            result_digest, result_bytes = sha256_hex(text), len(text.encode())
        if call.arguments_digest is not None:
            salt = self._audit.salt if self._audit else ""
            arguments = redact_arguments(call.arguments, self._secret_keys, salt, self._personal_keys)
        else:
            arguments = {"omitted": "refused before the arguments were admitted", "bytes": call.arguments_bytes}
        # model_construct: every field comes from validated state; skipping validation halves the cost.
        return AuditRecord.model_construct(
            event=event,
            call_id=call.call_id,
            **call.caller.audit_fields(),
            roles=call.roles,
            tool=call.tool_name,
            definition_hash=call.tool.definition_hash if call.tool else None,
            arguments=arguments,
            arguments_digest=call.arguments_digest,
            decision=(decision.decision if decision else Decision.DENY).value,
            rule=decision.reason if decision else None,
            policy_version=call.snapshot.policy.version,
            findings=tuple(f.model_dump(mode="json") for f in call.findings),
            outcome=outcome.code.value if outcome else "started",
            message=outcome.message if outcome else None,
            stage=outcome.stage if outcome else None,
            latency_ms=round(latency_ms, 3) if latency_ms is not None else None,
            result_digest=result_digest,
            result_bytes=result_bytes,
            approval_id=call.approval_id,
            plan_run_id=call.plan.run_id if call.plan else None,
            plan_step=call.plan.step if call.plan else None,
        )


def _audit_unavailable(call: CallContext, outcome: Outcome) -> Outcome:
    if (call.result is not None or call.answer is not None) and outcome.ok:
        message = "the tool ran but its outcome could not be recorded, so its result is withheld"
    else:
        message = "the call's audit record could not be written, so it was refused"
    return Outcome.refuse(OutcomeCode.AUDIT_UNAVAILABLE, message, stage="audit")
