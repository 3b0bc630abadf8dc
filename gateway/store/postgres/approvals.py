"""Approval requests on PostgreSQL, shared by every replica: every line of their SQL lives here.

The same changes as `approvals/sqlite_store.py`, in PostgreSQL's SQL: each is committed by the
PostgreSQL audit log with the record of its transition, and a statement with `expect_rows` is the
compare-and-swap that makes the transition happen once. The guard's `UPDATE` locks the request's
row, so two replicas deciding one request queue on it, and the second finds it no longer pending
(READ COMMITTED re-reads a row it waited for). Times are `timestamptz`, read back in `utc_now`'s
fixed-width ISO form, so callers see exactly what the SQLite store gives them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import anyio.to_thread
from psycopg import Connection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool

from gateway.approvals.requests import ApprovalRequest, ApprovalStatus
from gateway.approvals.store import Ballot, Revision
from gateway.canonical import canonical_json
from gateway.store.changes import Change, Statement
from gateway.store.postgres.errors import pg_errors
from gateway.store.postgres.notices import NOTICES

DIALECT = "postgresql"
T = TypeVar("T")
_JSON_FIELDS = ("arguments", "reasons", "result", "roles", "revisions")
_TIME_FIELDS = ("created_at", "expires_at", "approved_at", "execute_by", "finished_at", "lease_expires_at")
_TAKEABLE = (
    "status = 'executing' AND lease_owner IS DISTINCT FROM %s"
    " AND (lease_expires_at IS NULL OR lease_expires_at < %s OR lease_owner = ANY(%s::text[]))"
)
"""Another owner's run whose lease ran out (or that has none: claimed before leases), or whose owner is gone."""


def at(seconds: float) -> datetime:
    """The store's time for `seconds` since the epoch (`sqlite_store.iso` formats this same value)."""
    return datetime.fromtimestamp(seconds, UTC)


def iso(moment: datetime) -> str:
    """`moment` in `utc_now`'s form: what the SQLite store keeps as text, and so what callers see."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parsed(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def insert_statement(request: ApprovalRequest) -> Statement:
    """The write creating `request` (the pipeline commits it with the record of the call that needed it)."""
    return Statement(
        "INSERT INTO approval_requests (id, created_at, status, subject, tool, arguments, arguments_digest,"
        " definition_hash, policy_version, approver_role, approvals_required, reasons, call_id, expires_at,"
        " tenant, roles) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            request.id,
            _parsed(request.created_at),
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
            _parsed(request.expires_at),
            request.tenant,
            canonical_json(request.roles),
        ),
    )


def _announce(request_id: str) -> Statement:
    """Tell every replica listening that `request_id` moved; PostgreSQL delivers it only if the change commits."""
    return Statement("SELECT pg_notify(%s, %s)", (NOTICES, request_id))


class PgApprovalStore:
    """`ApprovalStore` in one PostgreSQL database: every process with a handle on it sees every request."""

    def __init__(
        self, pool: ConnectionPool, lease_seconds: float = 30.0, clock: Callable[[], float] = time.time
    ) -> None:
        self._pool = pool
        self._lease_seconds = lease_seconds
        self._clock = clock

    @property
    def lease_seconds(self) -> float:
        return self._lease_seconds

    # --- changes, committed by the audit log with their records ----------------------

    def create(self, request: ApprovalRequest) -> Change:
        return Change.of(
            DIALECT, f"create approval request {request.id}", insert_statement(request), _announce(request.id)
        )

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
            # The compare-and-swap guard: it locks the row, so a concurrent decision waits, then finds it moved.
            Statement(
                "UPDATE approval_requests SET status = status WHERE id = %s AND status = 'pending'",
                (request_id,),
                expect_rows=1,
            )
        ]
        if revision is not None:
            statements += [
                Statement(
                    "UPDATE approval_requests SET arguments = %s, arguments_digest = %s, revisions = %s WHERE id = %s",
                    (
                        canonical_json(revision.arguments),
                        revision.arguments_digest,
                        canonical_json(revision.revisions),
                        request_id,
                    ),
                ),
                # Approvals given to the earlier arguments do not cover the new ones.
                Statement("DELETE FROM approval_decisions WHERE request_id = %s", (request_id,)),
            ]
        # One ballot per approver: a second one inserts no row, and the whole decision is stale.
        statements.append(
            Statement(
                "INSERT INTO approval_decisions (request_id, approver, decision, comment, ts)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (request_id, approver) DO NOTHING",
                (request_id, approver, decision, comment, now),
                expect_rows=1,
            )
        )
        if decision == "deny":
            statements.append(
                Statement(
                    "UPDATE approval_requests SET status = 'denied', finished_at = %s, status_reason = %s"
                    " WHERE id = %s AND status = 'pending'",
                    (now, comment, request_id),
                    expect_rows=1,
                )
            )
        else:
            # Quorum in SQL, in the same transaction: a statement of its own sees every ballot committed
            # before it (READ COMMITTED), so two last approvals at once cannot both miss it.
            statements.append(
                Statement(
                    "UPDATE approval_requests SET status = 'approved', approved_at = %s, execute_by = %s"
                    " WHERE id = %s AND status = 'pending' AND approvals_required <= (SELECT COUNT(*)"
                    " FROM approval_decisions WHERE request_id = %s AND decision = 'approve')",
                    (now, at(self._clock() + window_seconds), request_id, request_id),
                )
            )
        return Change.of(DIALECT, f"{decision} approval request {request_id}", *statements, _announce(request_id))

    def close(
        self, request_id: str, expected: frozenset[ApprovalStatus], status: ApprovalStatus, reason: str
    ) -> Change:
        update = Statement(
            "UPDATE approval_requests SET status = %s, finished_at = %s, status_reason = %s"
            " WHERE id = %s AND status = ANY(%s::text[])",
            (status.value, self._now(), reason, request_id, sorted(s.value for s in expected)),
            expect_rows=1,
        )
        return Change.of(DIALECT, f"{status.value} approval request {request_id}", update, _announce(request_id))

    def claim(self, request_id: str, owner: str) -> Change:
        update = Statement(
            "UPDATE approval_requests SET status = 'executing', lease_owner = %s, lease_expires_at = %s"
            " WHERE id = %s AND status = 'approved' AND execute_by >= %s",
            (owner, self._expiry(), request_id, self._now()),
            expect_rows=1,
        )
        return Change.of(DIALECT, f"claim approval request {request_id}", update, _announce(request_id))

    def renew(self, request_id: str, owner: str) -> Change:
        update = Statement(
            "UPDATE approval_requests SET lease_expires_at = %s"
            " WHERE id = %s AND status = 'executing' AND lease_owner = %s",
            (self._expiry(), request_id, owner),
            expect_rows=1,
        )
        return Change.of(DIALECT, f"renew the lease of approval request {request_id}", update)

    def finish(self, request_id: str, owner: str, status: ApprovalStatus, result: dict[str, Any]) -> Change:
        update = Statement(
            "UPDATE approval_requests SET status = %s, result = %s, finished_at = %s, status_reason = NULL"
            " WHERE id = %s AND lease_owner = %s AND status IN ('executing', 'interrupted')",
            (status.value, canonical_json(result), self._now(), request_id, owner),
            expect_rows=1,
        )
        return Change.of(DIALECT, f"finish approval request {request_id}", update, _announce(request_id))

    def interrupt(
        self, request_id: str, reason: str, *, owner: str, gone: Sequence[str] = (), giving_up: bool = False
    ) -> Change:
        sql = (
            "UPDATE approval_requests SET status = 'interrupted', finished_at = %s, status_reason = %s"
            " WHERE id = %s AND "
        )
        now = self._now()
        if giving_up:
            update = Statement(
                sql + "status = 'executing' AND lease_owner = %s", (now, reason, request_id, owner), expect_rows=1
            )
        else:
            update = Statement(sql + _TAKEABLE, (now, reason, request_id, owner, now, list(gone)), expect_rows=1)
        return Change.of(DIALECT, f"interrupt approval request {request_id}", update, _announce(request_id))

    # --- reads ---------------------------------------------------------------------

    async def get(self, request_id: str) -> ApprovalRequest | None:
        found = await self._read(lambda c: select(c, request_id=request_id))
        return found[0] if found else None

    async def find(self, status: ApprovalStatus | None = None) -> list[ApprovalRequest]:
        return await self._read(lambda c: select(c, status))

    async def ballots(self, request_id: str) -> list[Ballot]:
        return await self._read(lambda c: ballots(c, request_id))

    # --- helpers -------------------------------------------------------------------

    def _now(self) -> datetime:
        return at(self._clock())

    def _expiry(self) -> datetime:
        return at(self._clock() + self._lease_seconds)

    async def _read(self, query: Callable[[Connection[Any]], list[T]]) -> list[T]:
        """`query` on a pooled connection in a worker thread: it sees what every process has committed."""
        pool = self._pool

        def run() -> list[T]:
            with pg_errors("cannot read approval requests"), pool.connection() as connection:
                return query(connection)

        return await anyio.to_thread.run_sync(run)


def select(
    connection: Connection[Any], status: ApprovalStatus | None = None, request_id: str | None = None
) -> list[ApprovalRequest]:
    """Requests in `status` and/or with `request_id`, oldest first."""
    clauses, params = [], []
    if status is not None:
        clauses.append("status = %s")
        params.append(status.value)
    if request_id is not None:
        clauses.append("id = %s")
        params.append(request_id)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    with connection.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(f"SELECT * FROM approval_requests {where} ORDER BY created_at, id", params).fetchall()
    return [_from_row(row) for row in rows]


def ballots(connection: Connection[Any], request_id: str) -> list[Ballot]:
    """The request's ballots in the order they were cast."""
    query = "SELECT approver, decision, comment, ts FROM approval_decisions WHERE request_id = %s ORDER BY ts, n"
    rows = connection.execute(query, (request_id,)).fetchall()
    return [Ballot(approver, decision, comment, iso(ts)) for approver, decision, comment, ts in rows]


def _from_row(row: DictRow) -> ApprovalRequest:
    data = dict(row)
    for field in _JSON_FIELDS:
        if data.get(field) is not None:
            data[field] = json.loads(data[field])
    for field in ("roles", "revisions"):
        if data.get(field) is None:
            data[field] = []
    for field in _TIME_FIELDS:
        if data.get(field) is not None:
            data[field] = iso(data[field])
    return ApprovalRequest.model_validate(data)
