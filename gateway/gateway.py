"""The `Gateway`: the wiring, the lifecycle, and the one door every call goes through.

It builds the parts (the audit store, the sources, the snapshot holder, the services) and
hands each the ports it needs; the transports and the CLI go through its door methods,
and none of them reaches a tool source directly.

A gateway runs in one of two modes. A `server` (`portcullis serve`) also works for others:
the approval queue's worker, the pass that marks plan runs nobody runs any more as interrupted,
the checkpoint timer and the file watcher. An `admin` session (every other CLI command)
does none of these: it runs its own calls, and never another user's approved request.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import anyio
from anyio.abc import TaskGroup

from gateway.approvals.requests import ApprovalRequest
from gateway.approvals.service import ApprovalService
from gateway.approvals.worker import ApprovalWorker
from gateway.audit import AuditRecord
from gateway.audit.checkpoints import Checkpoint
from gateway.calls import CallContext, Caller, CheckReport, Governed, PlanLink
from gateway.checkpointer import Checkpointer
from gateway.config import GatewayConfig, load_config
from gateway.guardrails.rate_limits import RateLimiter
from gateway.outcomes import AuditWriteError, Outcome, OutcomeCode
from gateway.pipeline.assembly import assemble
from gateway.planner.plan import Plan
from gateway.planner.preview import PlanPreview, Previewer
from gateway.planner.service import PlannerService
from gateway.policy import PolicyEngine
from gateway.ports import Listener
from gateway.resources import GovernedResources
from gateway.snapshot import Snapshot, load_policy
from gateway.snapshot_holder import SnapshotHolder, file_stamps
from gateway.sources.builtin import BuiltinSource
from gateway.sources.registry import SourceSet
from gateway.store.owner import Owner
from gateway.store.stores import build_stores
from gateway.tool_api import ProgressReporter, Relay
from gateway.tool_types import SourceHealth, ToolDefinition

__all__ = ["CheckReport", "Gateway", "Mode"]

logger = logging.getLogger(__name__)
Mode = Literal["server", "admin"]


class Gateway:
    """The one door to every tool: owns the sources, the snapshot holder and the audit store."""

    def __init__(self, config: GatewayConfig, mode: Mode = "server") -> None:
        if mode not in ("server", "admin"):
            raise ValueError(f"unknown gateway mode {mode!r}: server or admin")
        self.mode = mode
        stamps = file_stamps(config)  # before reading: a change during loading is seen later
        policy = load_policy(config)
        self.stores = build_stores(config)
        self.audit = self.stores.audit
        self.owner = Owner.new()  # whose leases this process holds (plan runs, approved requests it executes)
        self.approvals = ApprovalService(self, self, self.audit, self.stores.approvals, str(self.owner))
        self.planner = PlannerService(self, self, self.audit, self.stores.plan_runs, self.owner)
        self.resources = GovernedResources(self, self, lambda: self.sources.upstreams())
        builtin = BuiltinSource(self, self.approvals, self.planner, self.stores.reads)
        self.sources = SourceSet(config, on_change=self._sources_changed, builtin=[builtin])
        # Outlive every snapshot: a session's reads, the rate buckets (in memory, or shared by replicas).
        flows, limiter = self.stores.flow_labels, RateLimiter(self.stores.rate_buckets)
        self._snapshots = SnapshotHolder(
            Snapshot.build(config, policy, self.sources.sources),
            self.sources,
            self.audit,
            lambda snapshot: assemble(snapshot, self.audit, flows, limiter, self.stores.approvals),
            stamps,
        )
        self._checkpoints = Checkpointer(
            self, self.audit, self.stores.checkpoint_turn, create_key=self.stores.backend == "sqlite"
        )
        self._stack: AsyncExitStack | None = None
        self._tasks: TaskGroup | None = None

    @classmethod
    def from_path(cls, path: Path | str, mode: Mode = "server") -> Gateway:
        return cls(load_config(path), mode)

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshots.snapshot

    @property
    def config(self) -> GatewayConfig:
        return self.snapshot.config

    @property
    def policy(self) -> PolicyEngine:
        return self.snapshot.policy

    # --- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        stack = AsyncExitStack()
        serving = self.mode == "server"
        try:
            await self.stores.open(self.config.audit.salt)
            stack.push_async_callback(self.stores.close)
            await self.audit.append(self._lifecycle("gateway.start"))
            if serving:
                await self.planner.interrupt_expired()
            await stack.enter_async_context(self.sources)
            await self._snapshots.refresh()
            tasks = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tasks.cancel_scope.cancel)
            self._tasks = tasks
            if serving:
                tasks.start_soon(ApprovalWorker(self.approvals.executor).run, tasks.start_soon)
                tasks.start_soon(self.planner.watch_leases)
                if self.stores.watch is not None:  # other replicas' approval decisions, heard as they commit
                    tasks.start_soon(self.stores.watch, self.approvals.changed_elsewhere)
                if self.config.audit.checkpoint_seconds > 0:
                    tasks.start_soon(self._checkpoints.run)
                if self.config.policy.watch_seconds > 0:
                    tasks.start_soon(self._snapshots.watch)
        except BaseException:
            # Unwind before re-raising: leaving the sources' task group with the error in
            # flight would wrap a plain ConfigError into an ExceptionGroup.
            await stack.aclose()
            raise
        self._stack = stack

    async def stop(self) -> None:
        """Record the shutdown, sign a checkpoint, close the sources and the audit store; twice is harmless."""
        if self._stack is None:
            return
        stack, self._stack = self._stack, None
        async with stack:
            await self.approvals.drain()  # approved calls it is running finish (for a while) before it stops
            await self.audit.append(self._lifecycle("gateway.stop"))
            await self.checkpoint()
        self._tasks = None

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def checkpoint(self) -> Checkpoint | None:
        """Sign the audit chain's head into the log and the checkpoint file (see audit/checkpoints.py)."""
        return await self._checkpoints.checkpoint()

    async def reload(self) -> bool:
        """Validate the changed files and swap policy and config in one step (see snapshot_holder.py)."""
        return await self._snapshots.reload()

    def on_tools_changed(self, listener: Listener) -> None:
        """Call `listener` after the catalog changed (an upstream's tools, a quarantine)."""
        self._snapshots.on_tools_changed(listener)

    async def _sources_changed(self) -> None:
        await self._snapshots.sources_changed()

    def health(self) -> list[SourceHealth]:
        return self.sources.health()

    def record_auth_failure(self, method: str, reason: str) -> None:
        """Audit a refused credential, off the request's path (the credential itself is never recorded)."""
        if self._tasks is None:
            return
        record = AuditRecord(
            event="auth.failed", auth=method, outcome=OutcomeCode.UNAUTHENTICATED.value, message=reason
        )

        async def append() -> None:
            try:
                await self.audit.append(record)
            except AuditWriteError:
                logger.exception("could not record an authentication failure")

        self._tasks.start_soon(append)

    def _lifecycle(self, event: str) -> AuditRecord:
        snapshot = self.snapshot
        detail = {"snapshot": snapshot.version, "tools": len(snapshot.catalog), "mode": self.mode}
        return AuditRecord(event=event, policy_version=snapshot.policy.version, detail=detail)

    # --- the door -----------------------------------------------------------------

    async def call_tool(
        self,
        caller: Caller,
        name: str,
        arguments: Any,
        progress: ProgressReporter | None = None,
        relay: Relay | None = None,
        consent: bool | None = None,
        wait: float | None = None,
    ) -> Outcome:
        """Run one call through the audited pipeline (answered at once if a quick approval lets it).

        A call that needs approval waits `wait` seconds for the decision and the run before it
        answers 'pending' (None: `approvals.wait_seconds`; the CLI passes its `--wait`).
        """
        current = self._snapshots.current
        call = CallContext.new(current.snapshot, caller, name, arguments, progress=progress)
        outcome = await current.pipeline.run(call.evolve(relay=relay, consent=consent))
        spawn = self._tasks.start_soon if self._tasks is not None else None
        return await self.approvals.quick_answer(outcome, progress, spawn, wait)

    async def run_approved(self, request: ApprovalRequest) -> Outcome:
        """Run an approved request as its requester, through the whole pipeline (policy and guardrails again)."""
        current = self._snapshots.current
        caller = Caller(
            subject=request.subject,
            tenant=request.tenant,
            granted_roles=tuple(request.roles),
            auth="approval",
            transport="approval-queue",
        )
        call = CallContext.new(current.snapshot, caller, request.tool, request.arguments)
        return await current.pipeline.run(call.evolve(approved=request))

    async def run_step(
        self, caller: Caller, call_id: str, tool: str, arguments: Any, link: PlanLink, timeout: float | None
    ) -> Outcome:
        current = self._snapshots.current
        call = CallContext.new(current.snapshot, caller, tool, arguments)
        return await current.pipeline.run(call.evolve(call_id=call_id, plan=link, timeout_seconds=timeout))

    async def request(self, caller: Caller, governed: Governed) -> tuple[Outcome, Any]:
        """An upstream request through the audited pipeline, like a tool call; the answer only if it is ok."""
        current = self._snapshots.current
        call = CallContext.new(current.snapshot, caller, governed.target, governed.arguments)
        call, outcome = await current.pipeline.settle(call.evolve(request=governed.request))
        return outcome, call.answer if outcome.ok else None

    async def check(self, subject: str, name: str, arguments: Any, granted: tuple[str, ...] = ()) -> CheckReport:
        """The pipeline run without executing, recording or queueing anything."""
        current = self._snapshots.current
        snapshot = current.snapshot
        tenant = snapshot.config.identity.default_tenant
        caller = Caller(subject=subject, tenant=tenant, granted_roles=granted, auth="cli", transport="cli")
        call, outcome = await current.dry_run.evaluate(
            CallContext.new(snapshot, caller, name, arguments, execute=False)
        )
        return CheckReport.of(call, outcome)

    async def preview_plan(self, plan: Plan, caller: Caller) -> PlanPreview:
        """What the plan would do as `caller`: every step through the dry-run pipeline."""
        current = self._snapshots.current
        return await Previewer(current.snapshot, current.dry_run).preview(plan, caller)

    # --- what the MCP layer lists (resources and prompts: `self.resources`) ----------

    def visible_tools(self, subject: str | None, granted: tuple[str, ...] = ()) -> list[ToolDefinition]:
        """The tools `subject` may call or may request approval for; the others do not exist for them."""
        snapshot = self.snapshot
        listed = snapshot.catalog.definitions()
        return [d for d in listed if snapshot.visible_tool(subject, d.name, granted) is not None]

    def visible_tool(self, subject: str | None, name: str, granted: tuple[str, ...] = ()) -> ToolDefinition | None:
        """The definition `subject` was shown for `name`, or None if the tool does not exist for them."""
        return self.snapshot.visible_tool(subject, name, granted)

    def tool_input_schema(self, name: str) -> dict[str, Any] | None:
        entry = self.snapshot.catalog.get(name)
        return entry[0].input_schema if entry else None

    def capability_needs(self) -> dict[str, frozenset[str]]:
        return {name: need for up in self.sources.upstreams() for name, need in up.capability_needs.items()}
