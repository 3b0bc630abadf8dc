"""Reads of the deployment's store, for the CLI and the auditors' tool, whichever backend keeps it.

`open_reads(config)` is the one place a command's reads pick their backend from `store.backend`:
the audit history through the `AuditReader` port (audit/reader.py), the approval requests through
`ApprovalReads` (the approval stores' own queries). A command reads on its own connection (SQLite)
or a small pool of its own (PostgreSQL): it never starts the writer, settles the salt or changes the
schema, and the SQLite default never loads psycopg. The reads are synchronous, like the commands
(which a test may invoke inside an event loop).

`StoreReads` is the SQLite implementation of the async read port `AuditReads` the built-in
`gateway.audit_query` tool uses (the PostgreSQL one is store/postgres/audit_reads.py): each query
opens its own read-only connection in a worker thread, so it sees what every process committed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

import anyio.to_thread

from gateway.audit.query import AuditQuery, open_readonly
from gateway.audit.reader import AuditReader, SqliteAuditReader
from gateway.store.errors import StoreUnavailable
from gateway.store.sqlite.errors import sqlite_errors

T = TypeVar("T")

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    from gateway.approvals.requests import ApprovalRequest, ApprovalStatus
    from gateway.approvals.store import Ballot
    from gateway.config import GatewayConfig


class StoreReads:
    def __init__(self, path: Path) -> None:
        self.path = path

    async def audit_records(self, query: AuditQuery) -> list[dict[str, Any]]:
        """Matching records; none while the database does not exist yet."""
        path = self.path

        def run() -> list[dict[str, Any]]:
            if not path.exists():
                return []
            with SqliteAuditReader(path) as reader:
                return reader.records(query)

        return await anyio.to_thread.run_sync(run)


class NoDatabase(StoreUnavailable):
    """The deployment's SQLite file does not exist: the gateway has not run yet (nothing to read)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"no gateway database at {path} (has the gateway run yet?)")
        self.path = path


class ApprovalReads(Protocol):
    """Approval requests as `approvals list|show` print them. Raises a `StoreError` when it cannot answer."""

    def requests(self, status: ApprovalStatus | None = None, request_id: str | None = None) -> list[ApprovalRequest]:
        """Requests in `status` and/or with `request_id`, oldest first."""
        ...

    def ballots(self, request_id: str) -> list[Ballot]:
        """The request's decisions in the order they were cast."""
        ...


class Reads:
    """What a command reads: the audit history (`audit`) and the approval requests (`approvals`).

    A context manager: leaving it closes the connection or pool the reads opened.
    """

    def __init__(
        self, audit: AuditReader, approvals: Callable[[], ApprovalReads], close: Callable[[], None] = lambda: None
    ) -> None:
        self.audit = audit
        self._approvals = approvals
        self._close = close

    @cached_property
    def approvals(self) -> ApprovalReads:
        """Built on first use: `audit query` need not load the approvals."""
        return self._approvals()

    def close(self) -> None:
        try:
            self.audit.close()
        finally:
            self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def open_reads(config: GatewayConfig) -> Reads:
    """The reads of the store `config` names. Raises `NoDatabase` when the SQLite file is missing, and a
    `StoreError` when the store cannot be reached (a PostgreSQL server down, a wrong DSN)."""
    if config.store.backend == "postgresql":
        return _postgres_reads(config)
    path = config.resolve(config.audit.path)
    if not path.exists():
        raise NoDatabase(path)

    return Reads(SqliteAuditReader(path), lambda: _SqliteApprovalReads(path))


def _postgres_reads(config: GatewayConfig) -> Reads:
    from gateway.store.postgres.audit_reads import PgAuditReads
    from gateway.store.postgres.connect import PoolSettings, open_pool

    settings = PoolSettings(
        min_size=1,
        max_size=2,
        connect_timeout=config.store.connect_timeout_seconds,
        wait_timeout=config.store.lock_timeout_seconds,
        application_name="portcullis-cli",
    )
    pool = open_pool(config.store.dsn or "", settings)
    return Reads(PgAuditReads(pool), lambda: _PgApprovalReads(pool), pool.close)


class _SqliteApprovalReads:
    """`ApprovalReads` with `approvals/sqlite_store.py`'s queries, each on a fresh read-only connection."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def requests(self, status: ApprovalStatus | None = None, request_id: str | None = None) -> list[ApprovalRequest]:
        from gateway.approvals.sqlite_store import select

        return self._read(lambda connection: select(connection, status, request_id))

    def ballots(self, request_id: str) -> list[Ballot]:
        from gateway.approvals.sqlite_store import ballots

        return self._read(lambda connection: ballots(connection, request_id))

    def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        with sqlite_errors(f"cannot read approval requests at {self.path}"):
            connection = open_readonly(self.path)
            try:
                return query(connection)
            finally:
                connection.close()


class _PgApprovalReads:
    """`ApprovalReads` with `store/postgres/approvals.py`'s queries, on a connection of `pool`."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def requests(self, status: ApprovalStatus | None = None, request_id: str | None = None) -> list[ApprovalRequest]:
        from gateway.store.postgres.approvals import select

        return self._read(lambda connection: select(connection, status, request_id))

    def ballots(self, request_id: str) -> list[Ballot]:
        from gateway.store.postgres.approvals import ballots

        return self._read(lambda connection: ballots(connection, request_id))

    def _read(self, query: Callable[[Any], T]) -> T:
        from gateway.store.postgres.errors import pg_errors

        with pg_errors("cannot read approval requests"), self._pool.connection() as connection:
            return query(connection)
