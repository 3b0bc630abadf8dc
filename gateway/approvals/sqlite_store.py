"""Approval requests on SQLite: every line of approval SQL lives here.

Writes are `Change`s the SQLite audit log commits with the record of each transition
(`approval.approve`, `approval.executing`, `approval.succeeded`, ...); a statement with
`expect_rows` is the compare-and-swap that makes a transition happen once. Reads open
their own read-only connection in a worker thread, so they see what every process has
committed. Times are `utc_now`'s fixed-width ISO form, so text order is time order.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio.to_thread

from gateway.approvals.requests import ApprovalRequest, ApprovalStatus
from gateway.approvals.store import Ballot, Revision
from gateway.audit.query import open_readonly
from gateway.canonical import canonical_json
from gateway.store.changes import Change, Statement
from gateway.store.sqlite.errors import sqlite_errors

DIALECT = "sqlite"
T = TypeVar("T")
_JSON_FIELDS = ("arguments", "reasons", "result", "roles", "revisions")
_TAKEABLE = (
    "status = 'executing' AND lease_owner IS NOT ?"
    " AND (lease_expires_at IS NULL OR lease_expires_at < ? OR lease_owner IN (SELECT value FROM json_each(?)))"
)
"""Another owner's run whose lease ran out (or that has none: claimed before leases), or whose owner is gone."""


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def insert_statement(request: ApprovalRequest) -> Statement:
    """The write creating `request` (the pipeline commits it with the record of the call that needed it)."""
    return Statement(
        "INSERT INTO approval_requests (id, created_at, status, subject, tool, arguments, arguments_digest,"
        " definition_hash, policy_version, approver_role, approvals_required, reasons, call_id, expires_at,"
        " tenant, roles) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            request.id,
            request.created_at,
            request.status.value,
            request.subject,
            request.tool,
            canonical_json(request.arguments),
            request.arguments_digest,
            request.definition_hash,
            request.policy_version,
            request.approver_role,
            request.approvals_required,
            canonical_json(request.reasons),
            request.call_id,
            request.expires_at,
            request.tenant,
            canonical_json(request.roles),
        ),
    )


class SqliteApprovalStore:
    """`ApprovalStore` on the gateway's SQLite database (the audit log's)."""

    def __init__(self, path: Path, lease_seconds: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._lease_seconds = lease_seconds
        self._clock = clock

    @property
    def lease_seconds(self) -> float:
        return self._lease_seconds

    # --- changes, committed by the audit log with their records ----------------------

    def create(self, request: ApprovalRequest) -> Change:
        return Change.of(DIALECT, f"create approval request {request.id}", insert_statement(request))

    def decide(
        self,
        request_id: str,
        approver: str,
        decision: Literal["approve", "deny"],
        comment: str | None,
        *,
        window_seconds: float,
        revision: Revision | None = None,
    ) -> Change:
        now = self._now()
        statements = [
            # The compare-and-swap guard: the request must still be pending inside this transaction.
            Statement(
                "UPDATE approval_requests SET status = status WHERE id = ? AND status = 'pending'",
                (request_id,),
                expect_rows=1,
            )
        ]
        if revision is not None:
            statements += [
                Statement(
                    "UPDATE approval_requests SET arguments = ?, arguments_digest = ?, revisions = ? WHERE id = ?",
                    (
                        canonical_json(revision.arguments),
                        revision.arguments_digest,
                        canonical_json(revision.revisions),
                        request_id,
                    ),
                ),
                # Approvals given to the earlier arguments do not cover the new ones.
                Statement("DELETE FROM approval_decisions WHERE request_id = ?", (request_id,)),
            ]
        # One ballot per approver: a second one changes no row, and the whole decision is stale.
        statements.append(
            Statement(
                "INSERT OR IGNORE INTO approval_decisions (request_id, approver, decision, comment, ts)"
                " VALUES (?, ?, ?, ?, ?)",
                (request_id, approver, decision, comment, now),
                expect_rows=1,
            )
        )
        if decision == "deny":
            statements.append(
                Statement(
                    "UPDATE approval_requests SET status = 'denied', finished_at = ?, status_reason = ?"
                    " WHERE id = ? AND status = 'pending'",
                    (now, comment, request_id),
                    expect_rows=1,
                )
            )
        else:
            # Quorum in SQL, in the same transaction: two last approvals at once cannot both miss it.
            statements.append(
                Statement(
                    "UPDATE approval_requests SET status = 'approved', approved_at = ?, execute_by = ?"
                    " WHERE id = ? AND status = 'pending' AND approvals_required <= (SELECT COUNT(*)"
                    " FROM approval_decisions WHERE request_id = ? AND decision = 'approve')",
                    (now, iso(self._clock() + window_seconds), request_id, request_id),
                )
            )
        return Change.of(DIALECT, f"{decision} approval request {request_id}", *statements)

    def close(
        self, request_id: str, expected: frozenset[ApprovalStatus], status: ApprovalStatus, reason: str
    ) -> Change:
        states = json.dumps(sorted(s.value for s in expected))
        update = Statement(
            "UPDATE approval_requests SET status = ?, finished_at = ?, status_reason = ?"
            " WHERE id = ? AND status IN (SELECT value FROM json_each(?))",
            (status.value, self._now(), reason, request_id, states),
            expect_rows=1,
        )
        return Change.of(DIALECT, f"{status.value} approval request {request_id}", update)

    def claim(self, request_id: str, owner: str) -> Change:
        update = Statement(
            "UPDATE approval_requests SET status = 'executing', lease_owner = ?, lease_expires_at = ?"
            " WHERE id = ? AND status = 'approved' AND execute_by >= ?",
            (owner, self._expiry(), request_id, self._now()),
            expect_rows=1,
        )
        return Change.of(DIALECT, f"claim approval request {request_id}", update)

    def renew(self, request_id: str, owner: str) -> Change:
        update = Statement(
            "UPDATE approval_requests SET lease_expires_at = ?"
            " WHERE id = ? AND status = 'executing' AND lease_owner = ?",
            (self._expiry(), request_id, owner),
            expect_rows=1,
        )
        return Change.of(DIALECT, f"renew the lease of approval request {request_id}", update)

    def finish(self, request_id: str, owner: str, status: ApprovalStatus, result: dict[str, Any]) -> Change:
        update = Statement(
            "UPDATE approval_requests SET status = ?, result = ?, finished_at = ?, status_reason = NULL"
            " WHERE id = ? AND lease_owner = ? AND status IN ('executing', 'interrupted')",
            (status.value, canonical_json(result), self._now(), request_id, owner),
            expect_rows=1,
        )
        return Change.of(DIALECT, f"finish approval request {request_id}", update)

    def interrupt(
        self, request_id: str, reason: str, *, owner: str, gone: Sequence[str] = (), giving_up: bool = False
    ) -> Change:
        sql = (
            "UPDATE approval_requests SET status = 'interrupted', finished_at = ?, status_reason = ? WHERE id = ? AND "
        )
        now = self._now()
        if giving_up:
            update = Statement(
                sql + "status = 'executing' AND lease_owner = ?", (now, reason, request_id, owner), expect_rows=1
            )
        else:
            update = Statement(
                sql + _TAKEABLE, (now, reason, request_id, owner, now, json.dumps(list(gone))), expect_rows=1
            )
        return Change.of(DIALECT, f"interrupt approval request {request_id}", update)

    # --- reads ---------------------------------------------------------------------

    async def get(self, request_id: str) -> ApprovalRequest | None:
        found = await self._read(lambda c: select(c, request_id=request_id))
        return found[0] if found else None

    async def find(self, status: ApprovalStatus | None = None) -> list[ApprovalRequest]:
        return await self._read(lambda c: select(c, status))

    async def ballots(self, request_id: str) -> list[Ballot]:
        return await self._read(lambda c: ballots(c, request_id))

    # --- helpers -------------------------------------------------------------------

    def _now(self) -> str:
        return iso(self._clock())

    def _expiry(self) -> str:
        return iso(self._clock() + self._lease_seconds)

    async def _read(self, query: Callable[[sqlite3.Connection], list[T]]) -> list[T]:
        """`query` on a fresh read-only connection; nothing when the database does not exist yet."""
        path = self.path

        def run() -> list[T]:
            if not path.exists():
                return []
            with sqlite_errors("cannot read approval requests"):
                connection = open_readonly(path)
                try:
                    return query(connection)
                finally:
                    connection.close()

        return await anyio.to_thread.run_sync(run)


def select(
    connection: sqlite3.Connection, status: ApprovalStatus | None = None, request_id: str | None = None
) -> list[ApprovalRequest]:
    """Requests in `status` and/or with `request_id`, oldest first (for the CLI's synchronous reads too)."""
    clauses, params = [], []
    if status is not None:
        clauses.append("status = ?")
        params.append(status.value)
    if request_id is not None:
        clauses.append("id = ?")
        params.append(request_id)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    connection.row_factory = sqlite3.Row
    rows = connection.execute(f"SELECT * FROM approval_requests {where} ORDER BY created_at, id", params).fetchall()
    return [_from_row(row) for row in rows]


def ballots(connection: sqlite3.Connection, request_id: str) -> list[Ballot]:
    query = "SELECT approver, decision, comment, ts FROM approval_decisions WHERE request_id = ? ORDER BY ts"
    return [Ballot(*row) for row in connection.execute(query, (request_id,))]


def _from_row(row: sqlite3.Row) -> ApprovalRequest:
    data = dict(row)
    for field in _JSON_FIELDS:
        if data.get(field) is not None:
            data[field] = json.loads(data[field])
    for field in ("roles", "revisions"):
        if data.get(field) is None:
            data[field] = []
    return ApprovalRequest.model_validate(data)
