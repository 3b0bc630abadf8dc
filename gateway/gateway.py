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

from pydantic import BaseModel, ConfigDict

from gateway.audit import AuditRecord, AuditStore
from gateway.config import GatewayConfig, load_config
from gateway.ids import new_id
from gateway.outcomes import AuditWriteError, Decision, Outcome
from gateway.pipeline import CallContext, Caller, Finding, Pipeline, build_pipeline
from gateway.snapshot import Snapshot, load_policy
from gateway.sources.base import ProgressReporter, SourceHealth, ToolDefinition
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
    roles: tuple[str, ...]
    findings: tuple[Finding, ...]
    outcome: str
    message: str
    policy_version: str


class Gateway:
    """The one door to every tool: owns the sources, the current snapshot and the audit store."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.policy = load_policy(config)
        self.sources = SourceSet(config, on_change=self._sources_changed)
        self.audit = AuditStore(config.resolve(config.audit.path))
        self._listeners: list[Listener] = []
        self._reported: set[tuple[str, str]] = set()
        self._stack: AsyncExitStack | None = None
        self._install(Snapshot.build(config, self.policy, self.sources.sources))

    @classmethod
    def from_path(cls, path: Path | str) -> Gateway:
        return cls(load_config(path))

    @property
    def snapshot(self) -> Snapshot:
        return self._current[0]

    def _install(self, snapshot: Snapshot) -> None:
        # One reference holds the snapshot and the pipelines built for it: a call takes it once.
        self._current: tuple[Snapshot, Pipeline, Pipeline] = (
            snapshot,
            build_pipeline(snapshot, self.audit),
            build_pipeline(snapshot, None),
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
            await stack.enter_async_context(self.sources)
            await self._refresh()
        except BaseException:
            # Unwind before re-raising: leaving the sources' task group with the error in
            # flight would wrap a plain ConfigError into an ExceptionGroup.
            await stack.aclose()
            raise
        self._stack = stack

    async def stop(self) -> None:
        """Record the shutdown, close the sources and the audit store; stopping twice is harmless."""
        if self._stack is None:
            return
        stack, self._stack = self._stack, None
        async with stack:
            await self.audit.append(self._lifecycle("gateway.stop"))

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

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
                outcome=verdict.status.value,
                policy_version=self.policy.version,
                detail={
                    "source": source.name,
                    "pinned_hash": verdict.pinned_hash,
                    "live_hash": verdict.live_hash,
                    "changed": changed_fields(pin, definition) if pin else [],
                },
            )
            try:
                await self.audit.append(record)
            except AuditWriteError:
                logger.exception("could not record the quarantine of %s", verdict.tool)
                continue
            self._reported.add(key)

    def visible_tools(self, subject: str | None) -> list[ToolDefinition]:
        """The tools `subject` may call or may request approval for; the others do not exist for them."""
        snapshot = self.snapshot
        return [d for d in snapshot.catalog.definitions() if _visible(snapshot, subject, d.name) is not None]

    def visible_tool(self, subject: str | None, name: str) -> ToolDefinition | None:
        """The definition `subject` was shown for `name`, or None if the tool does not exist for them."""
        return _visible(self.snapshot, subject, name)

    def tool_input_schema(self, name: str) -> dict[str, Any] | None:
        entry = self.snapshot.catalog.get(name)
        return entry[0].input_schema if entry else None

    async def call_tool(
        self, caller: Caller, name: str, arguments: Any, progress: ProgressReporter | None = None
    ) -> Outcome:
        """Run one call through the audited pipeline."""
        snapshot, pipeline, _ = self._current
        return await pipeline.run(self._new_call(snapshot, caller, name, arguments, execute=True, progress=progress))

    async def check(self, subject: str, name: str, arguments: Any) -> CheckReport:
        """The pipeline run without executing, recording or queueing anything."""
        snapshot, _, dry_run = self._current
        caller = Caller(subject=subject, auth="cli", transport="cli")
        call, outcome = await dry_run.evaluate(self._new_call(snapshot, caller, name, arguments, execute=False))
        decision = call.decision
        return CheckReport(
            subject=subject,
            tool=name,
            decision=decision.decision if decision else Decision.DENY,
            rule=decision.rule if decision else None,
            rule_source=decision.rule_source if decision else None,
            approver=decision.approver if decision else None,
            roles=call.roles,
            findings=call.findings,
            outcome=outcome.code.value,
            message=outcome.message,
            policy_version=snapshot.policy.version,
        )

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


def _visible(snapshot: Snapshot, subject: str | None, name: str) -> ToolDefinition | None:
    entry = snapshot.catalog.get(name)
    if entry is None or not subject:
        return None
    if snapshot.policy.decide(subject, name).decision is Decision.DENY:
        return None
    return entry[0]
