"""Read-only queries on the gateway's SQLite database, off the event loop.

One implementation of the read ports (`ports.ApprovalReads`, `PlanRunReads`,
`AuditReads`): each query opens its own read-only connection in a worker thread,
so it sees what any process sharing the database has committed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from gateway.approvals.requests import ApprovalRequest, ApprovalStatus, list_requests
from gateway.audit import AuditQuery, open_readonly, query_records
from gateway.planner.runs import RunRecord, read_run, running_ids

T = TypeVar("T")


class StoreReads:
    def __init__(self, path: Path) -> None:
        self.path = path

    async def approval(self, request_id: str) -> ApprovalRequest | None:
        found = await self._read(lambda c: list_requests(c, request_id=request_id), list[ApprovalRequest]())
        return found[0] if found else None

    async def approvals(self, status: ApprovalStatus | None) -> list[ApprovalRequest]:
        return await self._read(lambda c: list_requests(c, status), list[ApprovalRequest]())

    async def plan_run(self, run_id: str) -> RunRecord | None:
        return await self._read(lambda c: read_run(c, run_id), None)

    async def running_plan_runs(self) -> list[str]:
        return await self._read(running_ids, list[str]())

    async def audit_records(self, query: AuditQuery) -> list[dict[str, Any]]:
        return await self._read(lambda c: query_records(c, query), list[dict[str, Any]]())

    async def _read(self, query: Callable[[sqlite3.Connection], T], missing: T) -> T:
        """`query` on a fresh read-only connection; `missing` when the database does not exist yet."""
        path = self.path

        def run() -> T:
            if not path.exists():
                return missing
            connection = open_readonly(path)
            try:
                return query(connection)
            finally:
                connection.close()

        return await anyio.to_thread.run_sync(run)
