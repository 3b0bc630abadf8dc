"""Check the arguments: the tool's input schema (the MCP SDK does not), then the guardrails' detectors
and the session's flow labels.

A `block` finding refuses the call, and its audit record keeps the arguments
with every match masked; `redact` replaces the match and the call goes on with
the redacted arguments; `require_approval` sends the call to the approval queue
with the finding as its reason; `flag` only records. An upstream resource,
prompt or completion request has no input schema; its arguments (the URI, the
prompt's arguments) are scanned under the rules matching its policy object.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from gateway.calls import CallContext, Continue, Finding, Stop
from gateway.canonical import canonical_json, sha256_hex
from gateway.catalog import Catalog
from gateway.guardrails import Guardrails
from gateway.guardrails.engine import Flagged, ScanReport
from gateway.guardrails.flows import flow_key
from gateway.outcomes import Decision, Outcome, OutcomeCode
from gateway.pipeline.plan_review import COVERS, PLAN_RUN
from gateway.store.errors import StoreError
from gateway.store.protocols import FlowLabels

MAX_REPORTED_ERRORS = 10


class InputGuardrails:
    name: ClassVar[str] = "input_guardrails"
    executes: ClassVar[bool] = False

    def __init__(self, catalog: Catalog, guardrails: Guardrails, flows: FlowLabels) -> None:
        self._guardrails = guardrails
        self._flows = flows
        self._validators: dict[str, Validator | SchemaError] = {}
        for definition in catalog.definitions():
            # The schema's own `$schema` decides the dialect (upstreams often declare draft-07).
            dialect = validator_for(definition.input_schema, default=Draft202012Validator)
            try:
                dialect.check_schema(definition.input_schema)
                self._validators[definition.name] = dialect(definition.input_schema)
            except SchemaError as exc:
                self._validators[definition.name] = exc

    async def __call__(self, call: CallContext) -> Continue | Stop:
        if call.request is None:
            validator = self._validators.get(call.tool_name)
            if validator is None or isinstance(validator, SchemaError):
                # A tool whose schema is broken cannot be checked, so it is not called (fail closed).
                message = f"tool {call.tool_name} has an invalid input schema and cannot be called"
                return Stop(call, Outcome.refuse(OutcomeCode.TOOL_FAILED, message, stage=self.name))
            errors = sorted(validator.iter_errors(_as_sent(call)), key=lambda e: list(e.absolute_path))
            if call.deferred:
                errors = [e for e in errors if not _about_deferred(e, call.deferred)]
            if errors:
                return self._invalid(call, errors)
        guard = self._guardrails.guard(call.tool_name)
        report = await self._guardrails.scan(guard, "arguments", call.arguments)
        findings = [_finding(f, self.name) for f in report.findings]
        try:
            findings.extend(await self._flow_findings(call, guard.labels))
        except StoreError as exc:  # what the session has read is unknown: refuse (fail closed)
            return Stop(call, exc.refusal(self.name, "its session's flow labels could not be read"))
        call = call.evolve(findings=(*call.findings, *findings))
        actions = {f.action for f in findings}
        if "block" in actions:
            return Stop(call.evolve(arguments=report.masked), blocked(findings, self.name, "arguments"))
        if report.value is not call.arguments:
            call = _with_arguments(call, report)
        if "require_approval" in actions:
            call = self._escalate(call, [f for f in findings if f.action == "require_approval"])
        return Continue(call)

    async def _flow_findings(self, call: CallContext, labels: frozenset[str]) -> list[Finding]:
        session = flow_key(call.caller)
        if session is None or not labels:
            return []
        findings = []
        for rule in self._guardrails.config.flows:
            if rule.sink not in labels:
                continue
            links = await self._flows.reads(session, rule.after)
            if links is None:
                continue
            message = (
                f"this session has read {' and '.join(rule.after)} (calls {', '.join(links)}),"
                f" and {call.tool_name} is an {rule.sink}"
            )
            rule_id = f"flows.{'+'.join(rule.after)}->{rule.sink}"
            findings.append(
                Finding(rule=rule_id, message=message, stage=self.name, action=rule.action, links=tuple(links))
            )
        return findings

    def _escalate(self, call: CallContext, reasons: list[Finding]) -> CallContext:
        decision = call.decision
        if decision is None or decision.decision is not Decision.ALLOW:
            return call  # policy already asks for approval (its approver decides) or refused
        rules = ", ".join(sorted({f.rule for f in reasons}))
        escalated = decision.model_copy(
            update={
                "decision": Decision.APPROVAL_REQUIRED,
                "approver": self._guardrails.config.approver,
                "quorum": 1,
                "rule": f"{decision.rule}; approval required by guardrail {rules}",
            }
        )
        return call.evolve(decision=escalated)

    def _invalid(self, call: CallContext, errors: list[Any]) -> Stop:
        problems: list[dict[str, Any]] = [
            {"path": _json_path(error.absolute_path), "message": _message(error)}
            for error in errors[:MAX_REPORTED_ERRORS]
        ]
        findings = tuple(
            Finding(rule="schema", message=p["message"], stage=self.name, path=p["path"]) for p in problems
        )
        message = "arguments do not match the input schema: " + "; ".join(
            f"{p['path']}: {p['message']}" for p in problems
        )
        return Stop(
            call.evolve(findings=(*call.findings, *findings)),
            Outcome.refuse(OutcomeCode.INVALID_ARGUMENTS, message, stage=self.name, errors=problems),
        )


def blocked(findings: list[Finding], stage: str, where: str) -> Outcome:
    """The refusal for a blocking finding: what was found and where, never the value itself."""
    blocking = [f for f in findings if f.action == "block"]
    summary = "; ".join(f"{f.path or '$'}: {f.message} ({f.rule})" for f in blocking[:MAX_REPORTED_ERRORS])
    return Outcome.refuse(
        OutcomeCode.GUARDRAIL_BLOCKED,
        f"a guardrail blocked the call's {where}: {summary}",
        stage=stage,
        findings=[f.model_dump(mode="json", exclude_none=True, exclude_defaults=True) for f in blocking],
    )


def _as_sent(call: CallContext) -> Any:
    """The arguments as the caller sent them: an approved plan run also carries what its approval covers,
    which the gateway added when it asked for the approval (and which no caller may send)."""
    arguments = call.arguments
    if call.approved is not None and call.tool_name == PLAN_RUN and isinstance(arguments, dict):
        return {key: value for key, value in arguments.items() if key != COVERS}
    return arguments


def _message(error: Any) -> str:
    """jsonschema's message, except that a pattern is shown as written (its message repeats every backslash)."""
    if error.validator == "pattern" and isinstance(error.instance, str):
        return f"{error.instance!r} does not match the pattern {error.validator_value}"
    return str(error.message)


def _about_deferred(error: Any, deferred: frozenset[str]) -> bool:
    """A schema error about an argument that is filled at run time (its value, or its absence)."""
    path = list(error.absolute_path)
    if path and path[0] in deferred:
        return True
    if error.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", error.message)
        return bool(missing) and missing[0] in deferred
    return False


def _finding(flagged: Flagged, stage: str) -> Finding:
    return Finding(rule=flagged.rule, message=flagged.message, stage=stage, path=flagged.path, action=flagged.action)


def _with_arguments(call: CallContext, report: ScanReport) -> CallContext:
    """Redacted arguments replace the originals, and the digest (what an approval binds to) follows them."""
    return call.evolve(arguments=report.value, arguments_digest=sha256_hex(canonical_json(report.value)))


def _json_path(parts: Any) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path
