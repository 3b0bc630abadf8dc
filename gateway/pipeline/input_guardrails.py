"""Check arguments against the tool's input schema (the MCP SDK does not)."""

from __future__ import annotations

from typing import Any, ClassVar

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from gateway.catalog import Catalog
from gateway.outcomes import Outcome, OutcomeCode
from gateway.pipeline.context import CallContext, Continue, Finding, Stop

MAX_REPORTED_ERRORS = 10


class InputGuardrails:
    name: ClassVar[str] = "input_guardrails"
    executes: ClassVar[bool] = False

    def __init__(self, catalog: Catalog) -> None:
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
        validator = self._validators.get(call.tool_name)
        if validator is None or isinstance(validator, SchemaError):
            # A tool whose schema is broken cannot be checked, so it is not called (fail closed).
            message = f"tool {call.tool_name} has an invalid input schema and cannot be called"
            return Stop(call, Outcome.refuse(OutcomeCode.TOOL_FAILED, message, stage=self.name))
        errors = sorted(validator.iter_errors(call.arguments), key=lambda e: list(e.absolute_path))
        if not errors:
            return Continue(call)
        problems: list[dict[str, Any]] = [
            {"path": _json_path(error.absolute_path), "message": error.message}
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


def _json_path(parts: Any) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path
