"""The planner's MCP tools: validate, preview, run, status, draft. Each is a gateway tool under policy.

`gateway.plan_run` reaches this module only after the plan-review stage has checked the plan and,
when steps need it, the plan's approval has been granted (the approval queue then runs it).
"""

from __future__ import annotations

import json
from typing import Any

from mcp import types

from gateway.calls import ActingFor, Caller
from gateway.planner.plan import Plan
from gateway.planner.preview import Cover, PlanPreview
from gateway.planner.service import PlannerService
from gateway.planner.validate import validate
from gateway.tool_api import ToolContext
from gateway.tool_types import ToolDefinition, ToolResult, ToolTable, table_definitions

_PLAN = {"type": "object", "description": "A plan document (see `portcullis plan schema`)."}
_READ = {"readOnlyHint": True, "destructiveHint": False, "idempotentHint": True, "openWorldHint": False}
_RUN = {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": False, "openWorldHint": True}
DEFINITIONS: ToolTable = {
    "gateway.plan_validate": (
        "Check a plan's shape, references, graph, tools and limits; problems come with their JSON path.",
        {"plan": _PLAN},
        ["plan"],
        _READ,
    ),
    "gateway.plan_preview": (
        "Show what a plan would do, as you, before anything runs: each step's decision (allow, deny,"
        " approval required, decided at run time), guardrail findings, data flows between steps, and the"
        " batches that run in parallel.",
        {"plan": _PLAN},
        ["plan"],
        _READ,
    ),
    "gateway.plan_run": (
        "Run a plan: each step through the gateway's policy, guardrails, approval and audit as you;"
        " independent steps in parallel. A plan with a denied step is refused whole; one whose steps need"
        " approval waits for one approval of the whole plan.",
        {"plan": _PLAN},
        ["plan"],
        _RUN,
    ),
    "gateway.plan_status": (
        "The status of one of your plan runs, step by step.",
        {"run_id": {"type": "string", "minLength": 1}},
        ["run_id"],
        _READ,
    ),
    "gateway.plan_draft": (
        "Ask your own model (through MCP sampling) to write a plan for a request, using only the tools you"
        " may use; the draft is validated and previewed, never run.",
        {"request": {"type": "string", "minLength": 1, "maxLength": 4000}},
        ["request"],
        _READ,
    ),
}


def definitions(source: str) -> list[ToolDefinition]:
    return table_definitions(DEFINITIONS, source, {"gateway.plan_run": 3600})


class PlannerTools:
    def __init__(self, planner: PlannerService) -> None:
        self._planner = planner

    async def call(self, acting: ActingFor, name: str, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        caller = acting.caller
        if name == "gateway.plan_status":
            return await self._status(caller, arguments["run_id"])
        if name == "gateway.plan_draft":
            return await self._draft(caller, arguments["request"], context)
        plan, problems = validate(arguments["plan"], lambda tool: self._planner.plan_tool(caller, tool))
        if plan is None:
            body = {"valid": False, "problems": [p.model_dump() for p in problems]}
            text = "the plan is not valid:\n" + "\n".join(f"  {p.path}: {p.message}" for p in problems)
            return ToolResult(content=[{"type": "text", "text": text}], structured=body, is_error=True)
        if name == "gateway.plan_validate":
            return _result(
                {"valid": True, "problems": [], "plan_hash": plan.hash}, f"the plan is valid ({plan.hash[:12]})"
            )
        if name == "gateway.plan_preview":
            preview = await self._planner.preview(plan, caller)
            return _result(preview.model_dump(mode="json"), render_preview(preview))
        approved = acting.approved
        # What the plan's approval covers: added by the plan review when it asked for the approval (not in the
        # schema agents see, and refused from a caller), so present only when the approved request runs.
        covers = tuple(Cover.model_validate(c) for c in arguments.get("approval_covers", ())) if approved else ()
        report = await self._planner.run(
            plan, caller, covers=covers, approval_id=approved.id if approved else None, progress=context.progress
        )
        body = report.model_dump(mode="json")
        text = json.dumps(body, indent=1)
        return ToolResult(
            content=[{"type": "text", "text": text}], structured=body, is_error=report.status != "succeeded"
        )

    async def _status(self, caller: Caller, run_id: str) -> ToolResult:
        run = await self._planner.record(run_id)
        if run is None or not self._planner.may_see(caller, run.subject):
            return ToolResult(content=[{"type": "text", "text": f"no plan run {run_id}"}], is_error=True)
        body = run.model_dump(mode="json")
        steps = ", ".join(f"{s.step_id}: {s.status}" for s in run.steps)
        return _result(body, f"plan run {run_id} is {run.status} ({steps})")

    async def _draft(self, caller: Caller, request: str, context: ToolContext) -> ToolResult:
        if context.relay is None:
            return _error("drafting needs MCP sampling, and this connection cannot ask your client's model")
        tools = [
            {"name": d.name, "description": d.description, "input_schema": d.input_schema}
            for d in self._planner.visible_tools(caller)
        ]
        prompt = (
            "Write a Portcullis plan (JSON only, no prose) for this request, using only these tools.\n"
            f"Request: {request}\n"
            f"Tools: {json.dumps(tools)}\n"
            f"Plan JSON Schema: {json.dumps(Plan.model_json_schema())}\n"
            'Reference an earlier step\'s result as {"$ref": "STEP.result.path"}; never put results inside strings.'
        )
        params = types.CreateMessageRequestParams(
            messages=[types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))],
            max_tokens=4000,
            system_prompt="You write plans for a tool gateway. Answer with one JSON object.",
        )
        reply = await context.relay.sample(params)
        if isinstance(reply, types.ErrorData):
            return _error(f"the client's model could not be asked: {reply.message}")
        text = reply.content.text if isinstance(reply.content, types.TextContent) else ""
        try:
            draft = json.loads(text[text.find("{") : text.rfind("}") + 1])
        except ValueError:
            return _error("the model's answer was not a JSON plan")
        plan, problems = validate(draft, lambda tool: self._planner.plan_tool(caller, tool))
        body: dict[str, Any] = {
            "draft": draft,
            "valid": plan is not None,
            "problems": [p.model_dump() for p in problems],
        }
        if plan is None:
            return _result(body, "the draft is not a valid plan; fix it before running it")
        preview = await self._planner.preview(plan, caller)
        body["preview"] = preview.model_dump(mode="json")
        return _result(body, "draft plan (not run):\n" + render_preview(preview))


def render_preview(preview: PlanPreview) -> str:
    lines = [f"plan {preview.plan_hash[:12]}: {preview.goal}".rstrip(": ")]
    for step in preview.steps:
        extra = f" — {step.message}" if step.decision != "allow" else ""
        lines.append(f"  {step.id:<14} {step.tool:<24} {step.decision}{extra}")
        for finding in step.findings:
            lines.append(f"      finding {finding.get('rule')}: {finding.get('message')}")
    lines.append("  batches: " + " | ".join(", ".join(batch) for batch in preview.batches))
    for flow in preview.flows:
        labels = (
            f" [{', '.join(flow.source_labels)} -> {', '.join(flow.target_labels)}]"
            if flow.source_labels or flow.target_labels
            else ""
        )
        lines.append(f"  flow {flow.source} ({flow.source_tool}) -> {flow.target} ({flow.target_tool}){labels}")
    lines.extend(f"  warning: {w}" for w in preview.warnings)
    return "\n".join(lines)


def _result(structured: dict[str, Any], text: str) -> ToolResult:
    return ToolResult(content=[{"type": "text", "text": text}], structured=structured)


def _error(text: str) -> ToolResult:
    return ToolResult(content=[{"type": "text", "text": text}], is_error=True)
