"""The `Gateway`: one object that wires snapshot, pipeline and audit store.

Transports (MCP over stdio and HTTP) and the CLI go through these methods;
none of them reaches a tool source directly.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup
from mcp import types
from pydantic import BaseModel, ConfigDict

from gateway.approvals import ApprovalRequest
from gateway.approvals.service import ApprovalService
from gateway.audit import AuditRecord, AuditStore, open_readonly
from gateway.audit.checkpoints import Checkpoint, load_or_create_key, write_checkpoint
from gateway.config import GatewayConfig, load_config
from gateway.federation import Federation, Governed
from gateway.guardrails.flows import FlowTracker
from gateway.guardrails.rate_limits import RateLimiter
from gateway.ids import new_id
from gateway.outcomes import AuditWriteError, ConfigError, Decision, Outcome, OutcomeCode
from gateway.pipeline import CallContext, Caller, Finding, Pipeline, PlanLink, build_pipeline
from gateway.pipeline.relay import declare_relay_capabilities
from gateway.planner import PLAN_TOOLS, Cover, Plan, PlanExecutor, PlanPreview, Previewer, RunReport
from gateway.planner.runs import RunRecord, interrupt_running, read_run, running_ids
from gateway.policy.engine import RuleMatch
from gateway.snapshot import Snapshot, load_policy
from gateway.sources.base import ProgressReporter, Relay, SourceHealth, ToolDefinition
from gateway.sources.builtin import BuiltinSource
from gateway.sources.pins import changed_fields
from gateway.sources.registry import SourceSet

logger = logging.getLogger(__name__)

Listener = Callable[[], Awaitable[None]]


class CheckReport(BaseModel):
    """What `policy check` reports: the decision and why, without calling anything."""

    model_config = ConfigDict(frozen=True)

    subject: str
    tool: str
    decision: Decision
    rule: str | None
    rule_source: str | None
    approver: str | None
    quorum: int
    roles: tuple[str, ...]
    matches: tuple[RuleMatch, ...]
    """Every rule whose subject, object and action matched, with its condition's value."""
    findings: tuple[Finding, ...]
    outcome: str
    message: str
    policy_version: str


class Gateway:
    """The one door to every tool: owns the sources, the current snapshot and the audit store."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self._stamps = _stamps(self._watched())  # before reading: a change during loading is seen later
        self.policy = load_policy(config)
        self.sources = SourceSet(config, on_change=self._sources_changed, builtin=[BuiltinSource(self)])
        self.audit = AuditStore(
            config.resolve(config.audit.path),
            config.audit.write_timeout_seconds,
            config.resolve(config.audit.salt_file),
        )
        self.approvals = ApprovalService(self)
        self.flows = FlowTracker()
        self.rate_limiter = RateLimiter()
        self._listeners: list[Listener] = []
        self._reported: set[tuple[str, str]] = set()
        self._stack: AsyncExitStack | None = None
        self._tasks: TaskGroup | None = None
        self._install(Snapshot.build(config, self.policy, self.sources.sources))

    @classmethod
    def from_path(cls, path: Path | str) -> Gateway:
        return cls(load_config(path))

    @property
    def snapshot(self) -> Snapshot:
        return self._current[0]

    def _install(self, snapshot: Snapshot) -> None:
        declare_relay_capabilities(snapshot.policy, self.sources.upstreams())  # elicit/sample rules
        # One reference holds the snapshot and the pipelines built for it: a call takes it once.
        self._current: tuple[Snapshot, Pipeline, Pipeline] = (
            snapshot,
            build_pipeline(snapshot, self.audit, self.flows, self.rate_limiter),
            build_pipeline(snapshot, None, self.flows, self.rate_limiter),
        )

    def on_tools_changed(self, listener: Listener) -> None:
        """Call `listener` after the catalog changed (an upstream's tools, a quarantine)."""
        self._listeners.append(listener)

    async def start(self) -> None:
        stack = AsyncExitStack()
        try:
            self.audit.open(self.config.audit.salt)
            stack.push_async_callback(self.audit.close)
            await self.audit.append(self._lifecycle("gateway.start"))
            await self._interrupt_plan_runs()
            await stack.enter_async_context(self.sources)
            await self._refresh()
            tasks = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tasks.cancel_scope.cancel)
            self._tasks = tasks
            tasks.start_soon(self._work_the_queue)
            if self.config.audit.checkpoint_seconds > 0:
                tasks.start_soon(self._checkpoints)
            if self.config.policy.watch_seconds > 0:
                tasks.start_soon(self._watch)
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
            await self.audit.append(self._lifecycle("gateway.stop"))
            await self.checkpoint()

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

    async def checkpoint(self) -> Checkpoint | None:
        """Sign the audit chain's head into the log and the checkpoint file (see audit/checkpoints.py)."""
        audit = self.config.audit
        try:
            key = load_or_create_key(self.config.resolve(audit.checkpoint_key))
            return await write_checkpoint(self.audit, key, self.config.resolve(audit.checkpoint_file))
        except (OSError, ValueError, AuditWriteError):
            logger.exception("could not write an audit checkpoint")
            return None

    async def _checkpoints(self) -> None:
        while True:
            await anyio.sleep(self.config.audit.checkpoint_seconds)
            await self.checkpoint()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # --- the approval queue ---------------------------------------------------

    async def _work_the_queue(self) -> None:
        """Run approved requests (exactly once: the claim is a compare-and-swap) and expire stale ones."""
        while True:
            try:
                await self.approvals.sweep()
                await self.approvals.run_approved(spawn=self._tasks.start_soon if self._tasks else None)
            except Exception:  # the queue must outlive a bad request or a busy database
                logger.exception("approval queue pass failed")
            await anyio.sleep(self.config.approvals.poll_seconds)

    async def run_approved(self, request: ApprovalRequest) -> Outcome:
        """Run an approved request as its requester, through the whole pipeline (policy and guardrails again)."""
        snapshot, pipeline, _ = self._current
        caller = Caller(
            subject=request.subject,
            tenant=request.tenant,
            granted_roles=tuple(request.roles),
            auth="approval",
            transport="approval-queue",
        )
        call = self._new_call(snapshot, caller, request.tool, request.arguments, execute=True)
        return await pipeline.run(call.evolve(approved=request))

    async def _quick_path(self, outcome: Outcome, progress: ProgressReporter | None) -> Outcome:
        """Wait a little for the decision and the run, so an approved call answers in the same call."""
        approval_id = outcome.data.get("approval_id")
        if outcome.code is not OutcomeCode.APPROVAL_REQUIRED or not approval_id:
            return outcome
        if self._tasks is not None and self.config.approvals.webhook is not None:
            self._tasks.start_soon(self.approvals.notify, approval_id)  # never on the call's path
        request = await self.approvals.wait(approval_id, self.config.approvals.wait_seconds, progress)
        if request is None:
            return outcome
        return self.approvals.outcome_of(request).model_copy(update={"audit_id": outcome.audit_id})

    # --- hot reload -------------------------------------------------------

    def _watched(self) -> list[Path]:
        config = self.config
        files = [config.resolve(config.policy.model), config.resolve(config.policy.rules)]
        files.append(config.resolve(config.tools.lock))
        if config.guardrails is not None:
            files.append(config.resolve(config.guardrails))
        if config.file is not None:
            files.append(config.file)
        return files

    async def _watch(self) -> None:
        """Poll the policy, lock and config files; reload when one changes."""
        while True:
            await anyio.sleep(self.config.policy.watch_seconds)
            if _stamps(self._watched()) != self._stamps:
                await self.reload()

    async def reload(self) -> bool:
        """Validate the changed files in full, then swap policy and config in one step.

        A change that fails validation leaves everything in force, and is logged and audited.
        Changes to tool sources (Python, HTTP, OpenAPI, upstreams) need a restart: the rest
        of such a change is applied and the record says what was not.
        """
        old = self.snapshot
        self._stamps = _stamps(self._watched())
        try:
            if self.config.file is None:
                raise ConfigError(["this gateway was not loaded from a file"])
            config = load_config(self.config.file)
            kept = _sources_of(self.config)
            pending = _sources_of(config) != kept
            if pending:
                config = config.model_copy(
                    update={"tools": config.tools.model_copy(update=kept["tools"]), "upstreams": kept["upstreams"]}
                )
            policy = load_policy(config)
            snapshot = Snapshot.build(config, policy, self.sources.sources)
        except ConfigError as exc:
            logger.error("reload refused; the running policy stays in force:\n  %s", "\n  ".join(exc.problems))
            await self._record_reload("policy.reload_failed", old, None, {"problems": exc.problems})
            return False
        self.config, self.policy = config, policy
        self._install(snapshot)
        detail: dict[str, Any] = {"previous_policy_version": old.policy.version}
        if pending:
            detail["needs_restart"] = "tool sources changed; restart the gateway to apply them"
            logger.warning("tool source changes need a restart; the rest of the change is applied")
        await self._record_reload("policy.reload", old, snapshot, detail)
        await self._refresh()
        for listener in list(self._listeners):
            try:
                await listener()
            except Exception:
                logger.exception("tools-changed listener failed")
        return True

    async def _record_reload(self, event: str, old: Snapshot, new: Snapshot | None, detail: dict[str, Any]) -> None:
        record = AuditRecord(
            event=event,
            policy_version=(new or old).policy.version,
            outcome="applied" if new else "refused",
            detail={**detail, "snapshot": (new or old).version},
        )
        try:
            await self.audit.append(record)
        except AuditWriteError:
            logger.exception("could not record the %s", event)

    def health(self) -> list[SourceHealth]:
        return self.sources.health()

    async def _sources_changed(self) -> None:
        await self._refresh()
        for listener in list(self._listeners):
            try:
                await listener()
            except Exception:  # a listener (a client session that went away) must not stop the others
                logger.exception("tools-changed listener failed")

    async def _refresh(self) -> None:
        """Rebuild the catalog from the sources' current tools; record new quarantines."""
        snapshot = Snapshot.build(self.config, self.policy, self.sources.sources)
        self._install(snapshot)
        for verdict, definition, source in snapshot.catalog.quarantined.values():
            key = (verdict.tool, verdict.live_hash)
            if key in self._reported:
                continue
            pin = snapshot.catalog.lock.tools.get(verdict.tool)
            record = AuditRecord(
                event="tool.quarantined",
                tool=verdict.tool,
                definition_hash=verdict.live_hash,
                outcome=str(verdict.status),
                policy_version=self.policy.version,
                detail={
                    "source": source.name,
                    "pinned_hash": verdict.pinned_hash,
                    "live_hash": verdict.live_hash,
                    "changed": changed_fields(pin, definition) if pin else [],
                    "findings": list(verdict.findings),
                },
            )
            try:
                await self.audit.append(record)
            except AuditWriteError:
                logger.exception("could not record the quarantine of %s", verdict.tool)
                continue
            self._reported.add(key)

    # --- resources and prompts of upstreams --------------------------------

    @property
    def federation(self) -> Federation:
        return Federation(self.sources.upstreams())

    def _permitted(self, subject: str | None, obj: str, action: str, granted: tuple[str, ...] = ()) -> bool:
        if not subject:
            return False
        return self.snapshot.policy.decide(subject, obj, action, granted=granted).decision is not Decision.DENY

    def visible_resources(self, caller: Caller) -> list[types.Resource]:
        return [
            resource
            for route, resource in self.federation.resources()
            if self._permitted(caller.subject, route.policy_object, "read", caller.granted_roles)
        ]

    def visible_resource_templates(self, caller: Caller) -> list[types.ResourceTemplate]:
        return [
            template
            for upstream, template in self.federation.resource_templates()
            if self._permitted(
                caller.subject, f"{upstream.namespace}.{template.uri_template}", "read", caller.granted_roles
            )
        ]

    def visible_prompts(self, caller: Caller) -> list[types.Prompt]:
        return [
            prompt
            for route, prompt in self.federation.prompts()
            if self._permitted(caller.subject, route.policy_object, "get", caller.granted_roles)
        ]

    async def read_resource(self, caller: Caller, uri: str) -> tuple[Outcome, types.ReadResourceResult | None]:
        outcome, answer = await self._request(caller, self.federation.read(uri))
        return outcome, answer if isinstance(answer, types.ReadResourceResult) else None

    async def get_prompt(
        self, caller: Caller, name: str, arguments: dict[str, str] | None
    ) -> tuple[Outcome, types.GetPromptResult | None]:
        outcome, answer = await self._request(caller, self.federation.get(name, arguments))
        return outcome, answer if isinstance(answer, types.GetPromptResult) else None

    async def complete(
        self,
        caller: Caller,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: dict[str, str],
        context: dict[str, str] | None,
    ) -> tuple[Outcome, types.CompleteResult | None]:
        """Completion for an upstream prompt's (policy `get`) or resource template's (policy `read`) argument."""
        outcome, answer = await self._request(caller, self.federation.complete(ref, argument, context))
        return outcome, answer if isinstance(answer, types.CompleteResult) else None

    async def _request(self, caller: Caller, governed: Governed) -> tuple[Outcome, BaseModel | None]:
        """An upstream request through the audited pipeline, like a tool call; the answer only if it is ok."""
        snapshot, pipeline, _ = self._current
        call = self._new_call(snapshot, caller, governed.target, governed.arguments, execute=True)
        call, outcome = await pipeline.settle(call.evolve(request=governed.request))
        return outcome, call.answer if outcome.ok else None

    # --- tools ----------------------------------------------------------

    def visible_tools(self, subject: str | None, granted: tuple[str, ...] = ()) -> list[ToolDefinition]:
        """The tools `subject` may call or may request approval for; the others do not exist for them."""
        snapshot = self.snapshot
        return [
            d for d in snapshot.catalog.definitions() if snapshot.visible_tool(subject, d.name, granted) is not None
        ]

    def visible_tool(self, subject: str | None, name: str, granted: tuple[str, ...] = ()) -> ToolDefinition | None:
        """The definition `subject` was shown for `name`, or None if the tool does not exist for them."""
        return self.snapshot.visible_tool(subject, name, granted)

    def tool_input_schema(self, name: str) -> dict[str, Any] | None:
        entry = self.snapshot.catalog.get(name)
        return entry[0].input_schema if entry else None

    async def call_tool(
        self,
        caller: Caller,
        name: str,
        arguments: Any,
        progress: ProgressReporter | None = None,
        relay: Relay | None = None,
        consent: bool | None = None,
    ) -> Outcome:
        """Run one call through the audited pipeline."""
        snapshot, pipeline, _ = self._current
        call = self._new_call(snapshot, caller, name, arguments, execute=True, progress=progress)
        outcome = await pipeline.run(call.evolve(relay=relay, consent=consent))
        return await self._quick_path(outcome, progress)

    async def check(self, subject: str, name: str, arguments: Any, granted: tuple[str, ...] = ()) -> CheckReport:
        """The pipeline run without executing, recording or queueing anything."""
        snapshot, _, dry_run = self._current
        caller = Caller(
            subject=subject,
            tenant=self.config.identity.default_tenant,
            granted_roles=granted,
            auth="cli",
            transport="cli",
        )
        call, outcome = await dry_run.evaluate(self._new_call(snapshot, caller, name, arguments, execute=False))
        decision = call.decision
        return CheckReport(
            subject=subject,
            tool=name,
            decision=decision.decision if decision else Decision.DENY,
            rule=decision.rule if decision else None,
            rule_source=decision.rule_source if decision else None,
            approver=decision.approver if decision else None,
            quorum=decision.quorum if decision else 1,
            roles=call.roles,
            matches=decision.matches if decision else (),
            findings=call.findings,
            outcome=outcome.code.value,
            message=outcome.message,
            policy_version=snapshot.policy.version,
        )

    # --- the planner ----------------------------------------------------------

    def plan_tool(self, caller: Caller, tool: str) -> ToolDefinition | None:
        """The caller's view of a tool a plan step names (the planner's own tools are never steps)."""
        if tool in PLAN_TOOLS:
            return None
        return self.snapshot.visible_tool(caller.subject, tool, caller.granted_roles)

    async def preview_plan(self, plan: Plan, caller: Caller) -> PlanPreview:
        """What the plan would do as `caller`: every step through the dry-run pipeline."""
        snapshot, _, dry_run = self._current
        return await Previewer(snapshot, dry_run).preview(plan, caller)

    async def run_plan(
        self,
        plan: Plan,
        caller: Caller,
        *,
        covers: tuple[Cover, ...] = (),
        approval_id: str | None = None,
        progress: ProgressReporter | None = None,
    ) -> RunReport:
        """Run a reviewed plan, each step through the audited pipeline (use `gateway.plan_run` to get here)."""
        executor = PlanExecutor(self.audit, self._run_step, lambda: self.snapshot.policy.version)
        return await executor.run(plan, caller, covers=covers, approval_id=approval_id, progress=progress)

    async def _run_step(
        self, caller: Caller, call_id: str, tool: str, arguments: Any, link: PlanLink, timeout: float | None
    ) -> Outcome:
        snapshot, pipeline, _ = self._current
        call = self._new_call(snapshot, caller, tool, arguments, execute=True)
        return await pipeline.run(call.evolve(call_id=call_id, plan=link, timeout_seconds=timeout))

    async def plan_run_record(self, run_id: str) -> RunRecord | None:
        def read() -> RunRecord | None:
            connection = open_readonly(self.audit.path)
            try:
                return read_run(connection, run_id)
            finally:
                connection.close()

        return await anyio.to_thread.run_sync(read)

    def may_see_plan_run(self, caller: Caller, owner: str) -> bool:
        """Its owner, and subjects whose policy allows `read` on `gateway.plan_runs` (auditors)."""
        return caller.subject == owner or self._permitted(
            caller.subject, "gateway.plan_runs", "read", caller.granted_roles
        )

    async def _interrupt_plan_runs(self) -> None:
        """Runs left `running` by a gateway that stopped are shown as interrupted, never silently lost."""
        statements = interrupt_running()

        def running() -> list[str]:
            connection = open_readonly(self.audit.path)
            try:
                return running_ids(connection)
            finally:
                connection.close()

        left = await anyio.to_thread.run_sync(running)
        if left:
            record = AuditRecord(
                event="plan.interrupted",
                policy_version=self.snapshot.policy.version,
                outcome="interrupted",
                detail={"runs": left},
            )
            await self.audit.append(record, statements)

    @staticmethod
    def _new_call(
        snapshot: Snapshot,
        caller: Caller,
        name: str,
        arguments: Any,
        *,
        execute: bool,
        progress: ProgressReporter | None = None,
    ) -> CallContext:
        return CallContext(
            call_id=new_id(),
            caller=caller,
            tool_name=name,
            arguments=arguments,
            snapshot=snapshot,
            execute=execute,
            progress=progress,
        )

    def _lifecycle(self, event: str) -> AuditRecord:
        snapshot = self.snapshot
        return AuditRecord(
            event=event,
            policy_version=snapshot.policy.version,
            detail={"snapshot": snapshot.version, "tools": len(snapshot.catalog)},
        )


def _stamps(paths: list[Path]) -> list[tuple[float, int] | None]:
    stamps: list[tuple[float, int] | None] = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            stamps.append(None)
        else:
            stamps.append((stat.st_mtime, stat.st_size))
    return stamps


def _sources_of(config: GatewayConfig) -> dict[str, Any]:
    tools = config.tools
    return {
        "tools": {"python": tools.python, "http": tools.http, "http_files": tools.http_files, "openapi": tools.openapi},
        "upstreams": config.upstreams,
    }
