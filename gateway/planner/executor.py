"""Run a checked plan: independent steps in parallel (up to the plan's limit), each through the
gateway's whole audited pipeline as the caller, with retries, `on_error` and compensations.

A step starts when every step it depends on has succeeded; if one of them did not, it is
skipped. A step that needs an approval the plan's approval does not cover pauses the plan:
nothing new starts, and the step's own approval request is pending.

The run is held under its process's lease, which the run renews itself (with every step
transition, and every third of a lease while a step takes long); a run that stops before
it finishes (the gateway stopped, a fault) says so at once (`interrupted`). If another
process took the run over (its lease ran out while this one was stalled), nothing new
starts and the rest of the history is recorded without touching the state it took over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict

from gateway.audit import AuditRecord
from gateway.audit.records import utc_now
from gateway.calls import Caller, PlanLink
from gateway.ids import new_id
from gateway.outcomes import AuditWriteError, Outcome, OutcomeCode
from gateway.planner.plan import Plan, Step, UnresolvedRef, resolve
from gateway.planner.preview import Cover
from gateway.planner.runs import RunStatus, StepRecord
from gateway.planner.validate import dependencies
from gateway.store.changes import Change
from gateway.store.errors import StaleState
from gateway.store.protocols import AuditLog, PlanRunStore
from gateway.tool_api import ProgressReporter

logger = logging.getLogger(__name__)

RETRYABLE = frozenset({OutcomeCode.TOOL_FAILED, OutcomeCode.TIMEOUT, OutcomeCode.UPSTREAM_UNAVAILABLE})
StepRunner = Callable[[Caller, str, str, Any, PlanLink, float | None], Awaitable[Outcome]]
"""(caller, call_id, tool, arguments, plan link, timeout) -> the outcome of one audited pipeline run."""
TAKEN_OVER = "taken over"
"""Why nothing new starts once another process marked the run interrupted."""


class StepReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    tool: str
    status: str
    attempts: int = 0
    code: str | None = None
    message: str | None = None
    result: Any = None
    audit_id: int | None = None
    approval_id: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: float | None = None


class RunReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str
    status: RunStatus
    goal: str
    plan_hash: str
    approval_id: str | None
    duration_ms: float
    steps: list[StepReport]
    compensations: list[StepReport] = []


class PlanExecutor:
    def __init__(
        self,
        audit: AuditLog,
        runs: PlanRunStore,
        owner: str,
        run_step: StepRunner,
        policy_version: Callable[[], str],
    ) -> None:
        self._audit = audit
        self._runs = runs
        self._owner = owner
        self._run_step = run_step
        self._policy_version = policy_version

    async def run(
        self,
        plan: Plan,
        caller: Caller,
        *,
        covers: tuple[Cover, ...] = (),
        approval_id: str | None = None,
        progress: ProgressReporter | None = None,
        run_id: str | None = None,
    ) -> RunReport:
        run = _Run(self, plan, caller, covers, approval_id, progress, run_id or new_id())
        return await run.execute()


class _Run:
    def __init__(
        self,
        executor: PlanExecutor,
        plan: Plan,
        caller: Caller,
        covers: tuple[Cover, ...],
        approval_id: str | None,
        progress: ProgressReporter | None,
        run_id: str,
    ) -> None:
        self.executor, self.plan, self.caller = executor, plan, caller
        self.covers, self.approval_id, self.progress, self.run_id = covers, approval_id, progress, run_id
        self.records = {s.id: StepRecord(step_id=s.id, tool=s.tool, status="pending") for s in plan.steps}
        self.reports: dict[str, StepReport] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.finished = {s.id: anyio.Event() for s in plan.steps}
        self.completed: list[str] = []
        self.stopping: str | None = None
        """Why no new step starts: abort, compensate, paused, taken over."""
        self.taken_over = False
        """Another process marked this run interrupted: records go on, state changes do not."""
        self.started = time.perf_counter()
        self.runs, self.owner = executor._runs, executor._owner

    async def _record(self, event: str, changes: Sequence[Change], durable: bool = True, **detail: Any) -> None:
        record = AuditRecord(
            event=event,
            subject=self.caller.subject,
            tenant=self.caller.tenant,
            session=self.caller.session,
            policy_version=self.executor._policy_version(),
            plan_run_id=self.run_id,
            detail=detail,
        )
        if not self.taken_over:
            try:
                await self.executor._audit.append(record, changes, durable=durable)
                return
            except StaleState:
                self._taken_over()
        # The run's state is the other process's now: keep the history of what this one did, change nothing.
        kept = record.model_copy(update={"detail": {**detail, "state": "unchanged: another process interrupted it"}})
        await self.executor._audit.append(kept, durable=durable)

    def _taken_over(self) -> None:
        logger.warning("plan run %s was interrupted by another process (its lease ran out)", self.run_id)
        self.taken_over = True
        self.stopping = TAKEN_OVER

    async def execute(self) -> RunReport:
        start = self.runs.start(
            self.run_id,
            owner=self.owner,
            subject=self.caller.subject or "",
            tenant=self.caller.tenant,
            session=self.caller.session,
            plan=self.plan.model_dump(mode="json"),
            plan_hash=self.plan.hash,
            approval_id=self.approval_id,
        )
        await self._record(
            "plan.started", [start], False, goal=self.plan.goal, plan_hash=self.plan.hash, steps=len(self.plan.steps)
        )
        try:
            async with anyio.create_task_group() as lease:
                lease.start_soon(self._keep_lease)
                timed_out, compensations = await self._steps()
                lease.cancel_scope.cancel()
        except BaseException:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self._abandon()
            raise
        status = self._status(timed_out, compensations)
        report = RunReport(
            run_id=self.run_id,
            status=status,
            goal=self.plan.goal,
            plan_hash=self.plan.hash,
            approval_id=self.approval_id,
            duration_ms=round((time.perf_counter() - self.started) * 1000, 3),
            steps=[self._report(s.id) for s in self.plan.steps],
            compensations=compensations,
        )
        result = report.model_dump(mode="json")
        with anyio.CancelScope(shield=True):
            finish = self.runs.finish(self.run_id, status, result, self.owner)
            await self._record("plan.finished", [finish], status=status)
        return report

    async def _keep_lease(self) -> None:
        """Renew the run's lease every third of it, so a long step never lets it run out."""
        every = self.runs.lease_seconds / 3
        while not self.taken_over:
            await anyio.sleep(every)
            try:
                await self.executor._audit.write([self.runs.renew(self.owner, self.run_id)])
            except StaleState:
                self._taken_over()
            except AuditWriteError:
                logger.warning("could not renew the lease of plan run %s; trying again", self.run_id, exc_info=True)

    async def _abandon(self) -> None:
        """The run stopped before it finished: say so now rather than when its lease runs out."""
        if self.taken_over:
            return
        reason = "the run stopped before it finished (the gateway stopped, or a fault)"
        try:
            interrupted = self.runs.finish(self.run_id, "interrupted", {"reason": reason}, self.owner)
            await self._record("plan.interrupted", [interrupted], runs=[self.run_id], reason=reason)
        except AuditWriteError:
            logger.exception("could not mark plan run %s interrupted; its lease will run out", self.run_id)

    async def _steps(self) -> tuple[bool, list[StepReport]]:
        """Run the steps (and the compensations, if a step asks for them): whether the deadline passed, and those."""
        timed_out = False
        with anyio.move_on_after(self.plan.limits.timeout_seconds) as scope:
            limiter = anyio.CapacityLimiter(self.plan.limits.max_parallel)
            async with anyio.create_task_group() as tasks:
                for step in self.plan.steps:
                    tasks.start_soon(self._step, step, limiter)
        if scope.cancelled_caught:
            timed_out = True
            with anyio.CancelScope(shield=True):
                for step_id, record in self.records.items():
                    if record.status in ("pending", "running"):
                        status = "failed" if record.status == "running" else "skipped"
                        message = f"the plan's deadline of {self.plan.limits.timeout_seconds:g} s passed"
                        await self._set(
                            step_id, status=status, outcome="timeout", message=message, finished_at=utc_now()
                        )
        compensations: list[StepReport] = []
        if self.stopping == "compensate":
            compensations = await self._compensate()
        return timed_out, compensations

    def _status(self, timed_out: bool, compensations: list[StepReport]) -> RunStatus:
        statuses = {r.status for r in self.records.values()}
        if self.taken_over:
            return "interrupted"
        if timed_out:
            return "timed_out"
        if "paused" in statuses:
            return "paused"
        if self.stopping == "compensate":
            return "compensated" if all(c.status == "succeeded" for c in compensations) else "compensation_failed"
        if statuses & {"failed", "skipped"}:
            return "failed"
        return "succeeded"

    async def _set(self, step_id: str, **changes: Any) -> None:
        record = self.records[step_id].model_copy(update=changes)
        self.records[step_id] = record
        # Step transitions are committed but not fsynced on their own: the step's outcome record and the
        # run's `plan.finished` are, and a durable commit makes every earlier one durable too (WAL order).
        # The call records are the truth; a machine crash can at worst leave a step `running`, until the
        # run's lease runs out and it is marked interrupted.
        change = self.runs.step(self.run_id, record, self.owner)
        await self._record("plan.step", [change], False, step=step_id, status=record.status)

    async def _step(self, step: Step, limiter: anyio.CapacityLimiter) -> None:
        try:
            await self._run(step, limiter)
        finally:
            self.finished[step.id].set()
            if self.progress is not None and self.records[step.id].status != "running":
                done = sum(r.status not in ("pending", "running") for r in self.records.values())
                await self.progress(done, len(self.plan.steps), f"step {step.id}: {self.records[step.id].status}")

    async def _run(self, step: Step, limiter: anyio.CapacityLimiter) -> None:
        needed = sorted(dependencies(step))
        for other in needed:
            await self.finished[other].wait()
        unmet = [other for other in needed if self.records[other].status != "succeeded"]
        if unmet:
            message = f"not run: it needs {', '.join(unmet)}, which did not succeed"
            await self._set(step.id, status="skipped", message=message, finished_at=utc_now())
            return
        async with limiter:
            if self.stopping is not None:
                await self._set(
                    step.id,
                    status="skipped",
                    message=f"not run: the plan stopped ({self.stopping})",
                    finished_at=utc_now(),
                )
                return
            try:
                arguments = resolve(step.arguments, self.outputs)
            except UnresolvedRef as exc:
                await self._set(
                    step.id, status="failed", outcome="invalid_arguments", message=str(exc), finished_at=utc_now()
                )
                self._on_error(step)
                return
            await self._attempts(step, arguments)

    async def _attempts(self, step: Step, arguments: Any) -> None:
        started = time.perf_counter()
        await self._set(step.id, status="running", started_at=utc_now())
        outcome: Outcome | None = None
        call_id = ""
        for attempt in range(1, step.retries + 2):
            call_id = new_id()
            link = PlanLink(run_id=self.run_id, step=step.id, approval_id=self.approval_id, covers=self.covers)
            outcome = await self.executor._run_step(
                self.caller, call_id, step.tool, arguments, link, step.timeout_seconds
            )
            if outcome.ok or outcome.code not in RETRYABLE or attempt > step.retries:
                break
            await anyio.sleep(0.1 * 2 ** (attempt - 1))
        assert outcome is not None
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        common = {
            "attempts": attempt,
            "call_id": call_id,
            "audit_id": outcome.audit_id,
            "outcome": outcome.code.value,
            "message": outcome.message,
            "finished_at": utc_now(),
        }
        if outcome.ok:
            text = "".join(b.get("text", "") for b in outcome.content if b.get("type") == "text")
            self.outputs[step.id] = {
                "result": outcome.structured if outcome.structured is not None else text,
                "content": outcome.content,
            }
            self.completed.append(step.id)
            await self._set(step.id, status="succeeded", **common)
        elif outcome.code in (OutcomeCode.APPROVAL_REQUIRED, OutcomeCode.CONSENT_REQUIRED):
            self.stopping = self.stopping or "paused"
            await self._set(step.id, status="paused", **common)
        else:
            await self._set(step.id, status="failed", **common)
            self._on_error(step)
        self.reports[step.id] = self._report(step.id, outcome, elapsed)

    def _on_error(self, step: Step) -> None:
        if step.on_error == "abort":
            self.stopping = self.stopping or "abort"
        elif step.on_error == "compensate":
            self.stopping = "compensate"

    async def _compensate(self) -> list[StepReport]:
        """Undo completed steps that declare a compensation, newest first; one failing does not stop the others."""
        reports = []
        for step_id in reversed(self.completed):
            step = self.plan.step(step_id)
            if step.compensate is None:
                continue
            started = time.perf_counter()
            name = f"{step_id}.compensate"
            try:
                arguments = resolve(step.compensate.arguments, self.outputs)
            except UnresolvedRef as exc:
                outcome = Outcome.refuse(OutcomeCode.INVALID_ARGUMENTS, str(exc), stage="planner")
            else:
                link = PlanLink(run_id=self.run_id, step=name, approval_id=self.approval_id, covers=self.covers)
                outcome = await self.executor._run_step(
                    self.caller, new_id(), step.compensate.tool, arguments, link, step.timeout_seconds
                )
            status = "compensated" if outcome.ok else "compensation_failed"
            await self._set(step_id, status=status, message=f"compensation {step.compensate.tool}: {outcome.message}")
            reports.append(
                StepReport(
                    id=name,
                    tool=step.compensate.tool,
                    status="succeeded" if outcome.ok else "failed",
                    attempts=1,
                    code=outcome.code.value,
                    message=outcome.message,
                    result=outcome.structured,
                    audit_id=outcome.audit_id,
                    duration_ms=round((time.perf_counter() - started) * 1000, 3),
                )
            )
        return reports

    def _report(self, step_id: str, outcome: Outcome | None = None, elapsed: float | None = None) -> StepReport:
        if outcome is None and step_id in self.reports:
            previous = self.reports[step_id]
            return previous.model_copy(update={"status": self.records[step_id].status})
        record = self.records[step_id]
        return StepReport(
            id=step_id,
            tool=record.tool,
            status=record.status,
            attempts=record.attempts,
            code=record.outcome,
            message=record.message,
            result=self.outputs.get(step_id, {}).get("result") if outcome is None or outcome.ok else None,
            audit_id=record.audit_id,
            approval_id=outcome.data.get("approval_id") if outcome is not None else None,
            started_at=record.started_at,
            finished_at=record.finished_at,
            duration_ms=elapsed,
        )
