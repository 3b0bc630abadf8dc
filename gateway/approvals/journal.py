"""How an approval transition is written: its audit record, committed with the store's change, and who is told.

Deciding (approvals/service.py) and executing (approvals/execution.py) both move requests;
this is the one place that says what their records contain, commits each change with its
record, and wakes this process's waiters once a change is in.
"""

from __future__ import annotations

from typing import Any

from gateway.approvals.requests import ApprovalRequest
from gateway.approvals.wakeups import Wakeups
from gateway.audit import AuditRecord
from gateway.calls import Caller
from gateway.ports import CurrentSnapshot
from gateway.store.changes import Change
from gateway.store.errors import StaleState
from gateway.store.protocols import AuditLog

QUEUE = "queue"
"""The wake-up key of the queue worker: something may be ready to run."""


class Journal:
    def __init__(self, current: CurrentSnapshot, audit: AuditLog, wakeups: Wakeups) -> None:
        self._current = current
        self.audit = audit
        self.wakeups = wakeups

    def record(
        self,
        event: str,
        request: ApprovalRequest,
        actor: Caller | None = None,
        comment: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> AuditRecord:
        """The audit record of `event` on `request`, by `actor` (None: the gateway itself)."""
        policy = self._current.snapshot.policy
        return AuditRecord(
            event=event,
            call_id=request.call_id,
            subject=actor.subject if actor else None,
            roles=tuple(policy.roles_for(actor.subject or "", actor.granted_roles)) if actor else (),
            auth=actor.auth if actor else "gateway",
            tool=request.tool,
            definition_hash=request.definition_hash,
            arguments_digest=request.arguments_digest,
            policy_version=policy.version,
            approval_id=request.id,
            outcome=event.split(".", 1)[1],
            message=comment,
            detail={"requester": request.subject, **(detail or {})},
        )

    async def commit(self, record: AuditRecord, change: Change) -> bool:
        """Commit `change` with `record`; False (nothing written) if the request had moved on meanwhile."""
        try:
            await self.audit.append(record, [change])
        except StaleState:
            return False
        return True

    def changed(self, request_id: str, *, queue: bool = False) -> None:
        """Wake this process's waiters on the request, and with `queue` the worker (it may be ready to run)."""
        self.wakeups.notify(request_id)
        if queue:
            self.wakeups.notify(QUEUE)
