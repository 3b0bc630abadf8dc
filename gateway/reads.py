"""Read-only queries on the gateway's SQLite database, off the event loop.

One implementation of the read port `AuditReads` (approval requests are read through
the approval store, approvals/store.py, and plan runs through theirs, store/sqlite/plan_runs.py):
each query opens its own read-only connection in a worker thread, so it sees what any
process sharing the database has committed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from gateway.audit import AuditQuery, open_readonly, query_records

T = TypeVar("T")


class StoreReads:
    def __init__(self, path: Path) -> None:
        self.path = path

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
