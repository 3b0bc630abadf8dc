"""The approval request record, bound to the exact call it would run.

A request is only ever created by the gateway, in the same transaction as the
audit record of the call that needed it (see `AuditStore.append`). How requests
are stored is the approval store's business (`approvals/store.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from gateway.audit.records import utc_now
from gateway.canonical import digest
from gateway.ids import new_id

if TYPE_CHECKING:
    from gateway.audit.store import Statement


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    """The gateway process running it stopped (or lost its lease) before it finished: it is never re-run."""


class ApprovalRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    created_at: str
    status: ApprovalStatus
    subject: str
    tool: str
    arguments: dict[str, Any]
    arguments_digest: str
    definition_hash: str
    policy_version: str
    approver_role: str | None
    approvals_required: int = 1
    reasons: list[str]
    call_id: str
    expires_at: str | None = None
    approved_at: str | None = None
    execute_by: str | None = None
    finished_at: str | None = None
    result: dict[str, Any] | None = None
    """The outcome of the executed call (code, message, content, structured)."""
    tenant: str | None = None
    roles: list[str] = []
    """Roles the requester's credentials granted (a JWT's), to run the call as they were."""
    revisions: list[dict[str, Any]] = []
    """Earlier arguments replaced by approve-with-edits: `{revision, arguments, edited_by, ts}`."""
    status_reason: str | None = None
    """Why it ended without running: the denial's reason, the cancellation's, the expiry's, the interruption's."""
    lease_owner: str | None = None
    """The gateway process that claimed it for execution (`host:pid:id`)."""
    lease_expires_at: str | None = None
    """Until when that process holds it; it renews the lease while the call runs."""

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def insert(self) -> Statement:
        """The write creating this request, committed with the audit record of the call that needed it."""
        # Imported here: the store builds requests from its rows, so it imports this module.
        from gateway.approvals.sqlite_store import insert_statement

        return insert_statement(self)


def later(seconds: float) -> str:
    """The time `seconds` from now, in the store's ISO form (expiry and execution windows)."""
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(timespec="microseconds").replace("+00:00", "Z")


def pending_request(
    *,
    subject: str,
    tool: str,
    arguments: dict[str, Any],
    definition_hash: str,
    policy_version: str,
    approver_role: str | None,
    reasons: list[str],
    call_id: str,
    approvals_required: int = 1,
    expires_at: str | None = None,
    tenant: str | None = None,
    roles: list[str] | None = None,
) -> ApprovalRequest:
    return ApprovalRequest(
        id=new_id(),
        created_at=utc_now(),
        status=ApprovalStatus.PENDING,
        subject=subject,
        tool=tool,
        arguments=arguments,
        arguments_digest=digest(arguments),
        definition_hash=definition_hash,
        policy_version=policy_version,
        approver_role=approver_role,
        approvals_required=approvals_required,
        reasons=reasons,
        call_id=call_id,
        expires_at=expires_at,
        tenant=tenant,
        roles=roles or [],
    )


TERMINAL = frozenset(
    {
        ApprovalStatus.DENIED,
        ApprovalStatus.EXPIRED,
        ApprovalStatus.CANCELLED,
        ApprovalStatus.SUCCEEDED,
        ApprovalStatus.FAILED,
        ApprovalStatus.INTERRUPTED,
    }
)


def describe(request: ApprovalRequest) -> str:
    """One sentence on where the request stands, for people and agents alike ("request X was denied: ...")."""
    because = f": {request.status_reason}" if request.status_reason else ""
    match request.status:
        case ApprovalStatus.PENDING:
            who = request.approver_role or "an approver"
            count = f" ({request.approvals_required} approvals needed)" if request.approvals_required > 1 else ""
            return f"request {request.id} is pending: it awaits approval by {who}{count}"
        case ApprovalStatus.APPROVED:
            return f"request {request.id} is approved: a running gateway will execute it shortly"
        case ApprovalStatus.EXECUTING:
            return f"request {request.id} is running"
        case ApprovalStatus.SUCCEEDED:
            return f"request {request.id} ran and succeeded"
        case ApprovalStatus.FAILED:
            code = (request.result or {}).get("code", "failed")
            message = (request.result or {}).get("message", "")
            return f"request {request.id} ran and failed ({code}){': ' + message if message else ''}"
        case ApprovalStatus.DENIED:
            return f"request {request.id} was denied{because}"
        case ApprovalStatus.EXPIRED:
            return f"request {request.id} expired{because}"
        case ApprovalStatus.CANCELLED:
            return f"request {request.id} was cancelled{because}"
        case ApprovalStatus.INTERRUPTED:
            return f"request {request.id} was interrupted{because}"
