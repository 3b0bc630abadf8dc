"""The planner as a service: preview and run plans as a caller, read runs back, and account for runs
whose process is gone.

Every step runs through the `door` (the audited pipeline, as the caller); run state and its
history are written together through `audit`, as changes the `runs` store builds. Runs belong
to this process (`owner`) under a lease they renew themselves; a serving gateway marks runs
whose lease ran out, or whose process is provably gone, as interrupted: at its start, and
every third of a lease after (`watch_leases`). A run that is alive is never taken.
"""

from __future__ import annotations

import logging

import anyio

from gateway.audit import AuditRecord
from gateway.calls import Caller
from gateway.outcomes import AuditWriteError, Decision
from gateway.planner.executor import PlanExecutor, RunReport
from gateway.planner.plan import PLAN_TOOLS, Plan
from gateway.planner.preview import Cover, PlanPreview
from gateway.planner.runs import RunRecord
from gateway.ports import CurrentSnapshot, Door
from gateway.store.errors import StaleState
from gateway.store.owner import Owner
from gateway.store.protocols import AuditLog, PlanRunStore
from gateway.tool_api import ProgressReporter
from gateway.tool_types import ToolDefinition

logger = logging.getLogger(__name__)


class PlannerService:
    def __init__(self, current: CurrentSnapshot, door: Door, audit: AuditLog, runs: PlanRunStore, owner: Owner) -> None:
        self._current = current
        self._door = door
        self._audit = audit
        self._runs = runs
        self._owner = owner

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
        executor = PlanExecutor(
            self._audit, self._runs, self._owner.id, self._door.run_step, lambda: self._current.snapshot.policy.version
        )
        return await executor.run(plan, caller, covers=covers, approval_id=approval_id, progress=progress)

    async def record(self, run_id: str) -> RunRecord | None:
        return await self._runs.get(run_id)

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

    async def interrupt_expired(self) -> list[str]:
        """Mark the runs nobody runs any more as interrupted (never silently lost); the ids marked.

        A run is nobody's once its lease ran out, or at once when its process ran on this machine
        and is gone. Only a serving gateway does this; an administrative session (a CLI command)
        never does. Two gateways doing it at once mark each run once: the second finds it moved.
        """
        leases = await self._runs.running()
        owners = {lease.owner for lease in leases if lease.owner and lease.owner != self._owner.id}
        gone = sorted(owner for owner in owners if Owner(owner).gone())
        ids = await self._runs.expired(gone)
        if not ids:
            return []
        record = AuditRecord(
            event="plan.interrupted",
            policy_version=self._current.snapshot.policy.version,
            outcome="interrupted",
            detail={"runs": ids},
        )
        try:
            await self._audit.append(record, [self._runs.interrupt(ids, gone)])
        except StaleState:
            return []  # another gateway marked them first, or an owner renewed meanwhile: the next pass looks again
        return ids

    async def watch_leases(self) -> None:
        """Forever (a serving gateway's timer): every third of a lease, mark the runs nobody runs any more."""
        while True:
            await anyio.sleep(self._runs.lease_seconds / 3)
            try:
                await self.interrupt_expired()
            except AuditWriteError:
                logger.warning("could not look for interrupted plan runs; trying again", exc_info=True)
