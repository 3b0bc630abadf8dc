"""What a plan would do, before anything runs: each step's decision as the caller, the guardrail
findings on its literal arguments, and the data flows between steps.

Each step is put through the gateway's dry-run pipeline (nothing executed, queued or recorded).
Arguments that reference earlier results are not known yet: the schema check and the guardrails
skip them, and a step whose policy condition reads one is "decided at run time".
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from gateway.calls import CallContext, Caller, DryRun
from gateway.outcomes import Decision, OutcomeCode
from gateway.planner.plan import Plan, Ref, Step, refs_in, without_refs
from gateway.planner.validate import dependencies
from gateway.snapshot import Snapshot

StepDecision = Literal["allow", "deny", "approval_required", "consent_required", "runtime", "invalid"]


class StepPreview(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    tool: str
    decision: StepDecision
    message: str
    rule: str | None = None
    approver: str | None = None
    quorum: int = 1
    findings: tuple[dict[str, Any], ...] = ()
    depends_on: tuple[str, ...] = ()
    deferred: tuple[str, ...] = ()
    """Arguments filled from earlier results at run time."""


class Flow(BaseModel):
    """Data from one step's output reaching another step's arguments."""

    model_config = ConfigDict(frozen=True)

    source: str
    target: str
    source_tool: str
    target_tool: str
    source_labels: tuple[str, ...] = ()
    target_labels: tuple[str, ...] = ()
    refs: tuple[str, ...] = ()


class Cover(BaseModel):
    """What a plan approval covers for one step: a step needing this approver under this rule."""

    model_config = ConfigDict(frozen=True)

    step: str
    tool: str
    rule: str | None
    approver: str | None


class PlanPreview(BaseModel):
    model_config = ConfigDict(frozen=True)

    plan_hash: str
    goal: str
    steps: tuple[StepPreview, ...]
    batches: tuple[tuple[str, ...], ...]
    """Steps that can run together, in order (each batch waits for the ones before it)."""
    flows: tuple[Flow, ...]
    warnings: tuple[str, ...] = ()

    @property
    def refused(self) -> list[StepPreview]:
        return [s for s in self.steps if s.decision in ("deny", "invalid")]

    @property
    def needs_approval(self) -> list[StepPreview]:
        return [s for s in self.steps if s.decision == "approval_required"]

    def covers(self) -> list[Cover]:
        return [Cover(step=s.id, tool=s.tool, rule=s.rule, approver=s.approver) for s in self.needs_approval]


class Previewer:
    def __init__(self, snapshot: Snapshot, dry_run: DryRun) -> None:
        self._snapshot = snapshot
        self._dry_run = dry_run

    async def preview(self, plan: Plan, caller: Caller) -> PlanPreview:
        steps = [await self._step(step, caller) for step in plan.steps]
        flows = self._flows(plan)
        return PlanPreview(
            plan_hash=plan.hash,
            goal=plan.goal,
            steps=tuple(steps),
            batches=batches(plan),
            flows=tuple(flows),
            warnings=tuple(self._flow_warnings(plan)),
        )

    async def _step(self, step: Step, caller: Caller) -> StepPreview:
        deferred = tuple(sorted({path.split(".")[1].split("[")[0] for path, _ in refs_in(step.arguments)}))
        common: dict[str, Any] = {
            "id": step.id,
            "tool": step.tool,
            "depends_on": tuple(sorted(dependencies(step))),
            "deferred": deferred,
        }
        call = CallContext.new(self._snapshot, caller, step.tool, without_refs(step.arguments), execute=False)
        call = call.evolve(deferred=frozenset(deferred))
        evaluated, outcome = await self._dry_run.evaluate(call)
        decision = evaluated.decision
        findings = tuple(
            f.model_dump(mode="json", exclude_none=True, exclude_defaults=True) for f in evaluated.findings
        )
        detail: dict[str, Any] = {
            **common,
            "findings": findings,
            "rule": decision.rule if decision else None,
            "approver": decision.approver if decision else None,
            "quorum": decision.quorum if decision else 1,
        }
        code = outcome.code
        if code in (OutcomeCode.UNKNOWN_TOOL, OutcomeCode.TOOL_DEFINITION_CHANGED):
            return StepPreview(decision="deny", message=outcome.message, **detail)
        if code in (OutcomeCode.INVALID_ARGUMENTS, OutcomeCode.ARGUMENTS_TOO_LARGE):
            return StepPreview(decision="invalid", message=outcome.message, **detail)
        if deferred and self._depends_on_deferred(step, caller, deferred):
            # The literal arguments alone cannot decide (a missing value fails a condition closed).
            message = (
                f"decided at run time: a policy condition reads {', '.join(deferred)}, filled from earlier results"
            )
            return StepPreview(decision="runtime", message=message, **detail)
        if code in (OutcomeCode.DENIED, OutcomeCode.GUARDRAIL_BLOCKED):
            return StepPreview(decision="deny", message=outcome.message, **detail)
        if code is OutcomeCode.APPROVAL_REQUIRED:
            return StepPreview(decision="approval_required", message=outcome.message, **detail)
        if code is OutcomeCode.CONSENT_REQUIRED:
            return StepPreview(decision="consent_required", message=outcome.message, **detail)
        if decision is not None and decision.decision is Decision.DENY:
            return StepPreview(decision="deny", message=outcome.message, **detail)
        return StepPreview(decision="allow", message="allowed" if outcome.ok else outcome.message, **detail)

    def _depends_on_deferred(self, step: Step, caller: Caller, deferred: tuple[str, ...]) -> bool:
        """Whether a rule that could apply to this call has a condition reading a deferred argument."""
        policy = self._snapshot.policy
        holders = {caller.subject or "", *policy.roles_for(caller.subject or "", caller.granted_roles)}
        for rule in policy.rules:
            if rule.subject not in holders or rule.action != "call" or not fnmatchcase(step.tool, rule.tool):
                continue
            if rule.condition is None:
                continue
            if any(ref[:1] == ("args",) and len(ref) > 1 and ref[1] in deferred for ref in rule.condition.references):
                return True
        return False

    def _labels(self, tool: str) -> tuple[str, ...]:
        return tuple(sorted(self._snapshot.guardrails.guard(tool).labels))

    def _flows(self, plan: Plan) -> list[Flow]:
        flows = []
        for step in plan.steps:
            by_source: dict[str, list[str]] = {}
            for _, text in refs_in(step.arguments):
                ref = Ref.parse(text)
                if ref is not None:
                    by_source.setdefault(ref.step, []).append(text)
            for source, refs in sorted(by_source.items()):
                origin = plan.step(source)
                flows.append(
                    Flow(
                        source=source,
                        target=step.id,
                        source_tool=origin.tool,
                        target_tool=step.tool,
                        source_labels=self._labels(origin.tool),
                        target_labels=self._labels(step.tool),
                        refs=tuple(refs),
                    )
                )
        return flows

    def _flow_warnings(self, plan: Plan) -> list[str]:
        warnings = []
        read = {label for step in plan.steps for label in self._labels(step.tool)}
        for rule in self._snapshot.guardrails.config.flows:
            if not set(rule.after) <= read:
                continue
            sinks = [s.id for s in plan.steps if rule.sink in self._labels(s.tool)]
            if sinks:
                effect = "hold them for approval" if rule.action == "require_approval" else "block them"
                warnings.append(
                    f"this plan reads {' and '.join(rule.after)} and calls {rule.sink} step(s) {', '.join(sinks)}:"
                    f" the flow rule will {effect} at run time once both are read"
                )
        return warnings


def batches(plan: Plan) -> tuple[tuple[str, ...], ...]:
    """The steps by depth in the graph: each batch can run together once the earlier ones are done."""
    depth: dict[str, int] = {}
    by_id = {s.id: s for s in plan.steps}

    def level(step_id: str) -> int:
        if step_id not in depth:
            needed = dependencies(by_id[step_id])
            depth[step_id] = 1 + max((level(d) for d in needed), default=-1)
        return depth[step_id]

    for step in plan.steps:
        level(step.id)
    out: dict[int, list[str]] = {}
    for step in plan.steps:
        out.setdefault(depth[step.id], []).append(step.id)
    return tuple(tuple(out[d]) for d in sorted(out))
