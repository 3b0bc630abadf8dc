"""The approval request record, bound to the exact call it would run.

A request is only ever created by the gateway, in the same transaction as the
audit record of the call that needed it (see `AuditStore.append`).
"""

from __future__ import annotations

import json
import sqlite3
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

    def insert(self) -> Statement:
        return Statement(
            "INSERT INTO approval_requests (id, created_at, status, subject, tool, arguments, arguments_digest,"
            " definition_hash, policy_version, approver_role, approvals_required, reasons, call_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            ),
        )


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
    )


def list_requests(connection: sqlite3.Connection, status: ApprovalStatus | None = None) -> list[ApprovalRequest]:
    sql = "SELECT * FROM approval_requests"
    params: tuple[Any, ...] = ()
    if status is not None:
        sql += " WHERE status = ?"
        params = (status.value,)
    connection.row_factory = sqlite3.Row
    rows = connection.execute(sql + " ORDER BY created_at, id", params).fetchall()
    return [
        ApprovalRequest.model_validate(
            {**dict(row), "arguments": json.loads(row["arguments"]), "reasons": json.loads(row["reasons"])}
        )
        for row in rows
    ]
