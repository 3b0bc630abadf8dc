"""The approval request record, bound to the exact call it would run.

A request is only ever created by the gateway, in the same transaction as the
audit record of the call that needed it (see `AuditStore.append`).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from gateway.audit.records import utc_now
from gateway.audit.store import Statement
from gateway.canonical import canonical_json, digest
from gateway.ids import new_id


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


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

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def insert(self) -> Statement:
        return Statement(
            "INSERT INTO approval_requests (id, created_at, status, subject, tool, arguments, arguments_digest,"
            " definition_hash, policy_version, approver_role, approvals_required, reasons, call_id, expires_at,"
            " tenant, roles) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.id,
                self.created_at,
                self.status.value,
                self.subject,
                self.tool,
                canonical_json(self.arguments),
                self.arguments_digest,
                self.definition_hash,
                self.policy_version,
                self.approver_role,
                self.approvals_required,
                canonical_json(self.reasons),
                self.call_id,
                self.expires_at,
                self.tenant,
                canonical_json(self.roles),
            ),
        )


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
    }
)


def list_requests(
    connection: sqlite3.Connection, status: ApprovalStatus | None = None, request_id: str | None = None
) -> list[ApprovalRequest]:
    clauses, params = [], []
    if status is not None:
        clauses.append("status = ?")
        params.append(status.value)
    if request_id is not None:
        clauses.append("id = ?")
        params.append(request_id)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    connection.row_factory = sqlite3.Row
    rows = connection.execute(f"SELECT * FROM approval_requests{where} ORDER BY created_at, id", params).fetchall()
    connection.row_factory = None
    return [_from_row(row) for row in rows]


def _from_row(row: sqlite3.Row) -> ApprovalRequest:
    data = dict(row)
    for field in ("arguments", "reasons", "result", "roles", "revisions"):
        if data.get(field) is not None:
            data[field] = json.loads(data[field])
    for field in ("roles", "revisions"):
        if data.get(field) is None:
            data[field] = []
    return ApprovalRequest.model_validate(data)


def decisions(connection: sqlite3.Connection, request_id: str) -> list[dict[str, Any]]:
    rows = connection.execute(
        "SELECT approver, decision, comment, ts FROM approval_decisions WHERE request_id = ? ORDER BY ts", (request_id,)
    ).fetchall()
    return [{"approver": a, "decision": d, "comment": c, "ts": t} for a, d, c, t in rows]
