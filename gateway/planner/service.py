"""The planner as a service: preview and run plans as a caller, read runs back, and account for runs
a stopped gateway left running.

Every step runs through the `door` (the audited pipeline, as the caller); run state and its
history are written together through `audit`, and read back through `reads`.
"""

from __future__ import annotations

from gateway.audit import AuditRecord
from gateway.calls import Caller
from gateway.outcomes import Decision
from gateway.planner.executor import PlanExecutor, RunReport
from gateway.planner.plan import PLAN_TOOLS, Plan
from gateway.planner.preview import Cover, PlanPreview
from gateway.planner.runs import RunRecord, interrupt_running
from gateway.ports import AuditSink, CurrentSnapshot, Door, PlanRunReads
from gateway.tool_api import ProgressReporter
from gateway.tool_types import ToolDefinition


class PlannerService:
    def __init__(self, current: CurrentSnapshot, door: Door, audit: AuditSink, reads: PlanRunReads) -> None:
        self._current = current
        self._door = door
        self._audit = audit
        self._reads = reads

    def plan_tool(self, caller: Caller, tool: str) -> ToolDefinition | None:
        """The caller's view of a tool a plan step names (the planner's own tools are never steps)."""
        if tool in PLAN_TOOLS:
            return None
        return self._current.snapshot.visible_tool(caller.subject, tool, caller.granted_roles)

    def visible_tools(self, caller: Caller) -> list[ToolDefinition]:
        """The tools a plan drafted for `caller` may use."""
        snapshot = self._current.snapshot
        return [
            definition
            for definition in snapshot.catalog.definitions()
            if definition.name not in PLAN_TOOLS
            and snapshot.visible_tool(caller.subject, definition.name, caller.granted_roles) is not None
        ]

    async def preview(self, plan: Plan, caller: Caller) -> PlanPreview:
        """What the plan would do as `caller`: every step through the dry-run pipeline."""
        return await self._door.preview_plan(plan, caller)

    async def run(
        self,
        plan: Plan,
        caller: Caller,
        *,
        covers: tuple[Cover, ...] = (),
        approval_id: str | None = None,
        progress: ProgressReporter | None = None,
    ) -> RunReport:
        """Run a reviewed plan, each step through the audited pipeline (`gateway.plan_run` gets here)."""
        executor = PlanExecutor(self._audit, self._door.run_step, lambda: self._current.snapshot.policy.version)
        return await executor.run(plan, caller, covers=covers, approval_id=approval_id, progress=progress)

    async def record(self, run_id: str) -> RunRecord | None:
        return await self._reads.plan_run(run_id)

    def may_see(self, caller: Caller, owner: str) -> bool:
        """Its owner, and subjects whose policy allows `read` on `gateway.plan_runs` (auditors)."""
        if caller.subject == owner:
            return True
        if not caller.subject:
            return False
        decision = self._current.snapshot.policy.decide(
            caller.subject, "gateway.plan_runs", "read", granted=caller.granted_roles
        )
        return decision.decision is not Decision.DENY

    async def interrupt_left_running(self) -> None:
        """Runs left `running` by a gateway that stopped are shown as interrupted, never silently lost.

        Only a serving gateway does this at its start; an administrative session (a CLI command) never does.
        """
        statements = interrupt_running()
        left = await self._reads.running_plan_runs()
        if left:
            record = AuditRecord(
                event="plan.interrupted",
                policy_version=self._current.snapshot.policy.version,
                outcome="interrupted",
                detail={"runs": left},
            )
            await self._audit.append(record, statements)
