"""The `Gateway`: one object that wires snapshot, pipeline and audit store.

Transports (MCP over stdio and HTTP) and the CLI go through these methods;
none of them reaches a tool source directly.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import BaseModel, ConfigDict

from gateway.audit import AuditRecord, AuditStore
from gateway.ids import new_id
from gateway.outcomes import Decision, Outcome
from gateway.pipeline import CallContext, Caller, Finding, build_pipeline
from gateway.snapshot import Snapshot
from gateway.sources.base import ToolDefinition


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
    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        config = snapshot.config
        self.audit = AuditStore(config.resolve(config.audit.path))
        self._pipeline = build_pipeline(snapshot, self.audit)
        self._dry_run = build_pipeline(snapshot, None)

    @classmethod
    def from_path(cls, path: Path | str) -> Gateway:
        return cls(Snapshot.from_path(path))

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    async def start(self) -> None:
        self.audit.open(self._snapshot.config.audit.salt)
        await self.audit.append(self._lifecycle("gateway.start"))

    async def stop(self) -> None:
        """Record the shutdown and close the audit store; stopping twice is harmless."""
        if not self.audit.running:
            return
        try:
            await self.audit.append(self._lifecycle("gateway.stop"))
        finally:
            await self.audit.close()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def visible_tools(self, subject: str | None) -> list[ToolDefinition]:
        """The tools `subject` may call or may request approval for; the others do not exist for them."""
        return [d for d in self._snapshot.catalog.definitions() if self.visible_tool(subject, d.name) is not None]

    def visible_tool(self, subject: str | None, name: str) -> ToolDefinition | None:
        """The definition `subject` was shown for `name`, or None if the tool does not exist for them."""
        entry = self._snapshot.catalog.get(name)
        if entry is None or not subject:
            return None
        if self._snapshot.policy.decide(subject, name).decision is Decision.DENY:
            return None
        return entry[0]

    def tool_input_schema(self, name: str) -> dict[str, Any] | None:
        entry = self._snapshot.catalog.get(name)
        return entry[0].input_schema if entry else None

    async def call_tool(self, caller: Caller, name: str, arguments: Any) -> Outcome:
        """Run one call through the audited pipeline."""
        return await self._pipeline.run(self._new_call(caller, name, arguments, execute=True))

    async def check(self, subject: str, name: str, arguments: Any) -> CheckReport:
        """The pipeline run without executing, recording or queueing anything."""
        caller = Caller(subject=subject, auth="cli", transport="cli")
        call, outcome = await self._dry_run.evaluate(self._new_call(caller, name, arguments, execute=False))
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
            policy_version=self._snapshot.policy.version,
        )

    def _new_call(self, caller: Caller, name: str, arguments: Any, *, execute: bool) -> CallContext:
        return CallContext(
            call_id=new_id(),
            caller=caller,
            tool_name=name,
            arguments=arguments,
            snapshot=self._snapshot,
            execute=execute,
        )

    def _lifecycle(self, event: str) -> AuditRecord:
        return AuditRecord(
            event=event,
            policy_version=self._snapshot.policy.version,
            detail={"snapshot": self._snapshot.version, "tools": len(self._snapshot.catalog)},
        )
