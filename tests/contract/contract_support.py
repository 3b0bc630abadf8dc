"""The implementations under contract, and what the tests need to drive them.

A new backend (PostgreSQL, for replicas) is one more class like `SQLiteBackend` (and, for
rate limits and flow labels, like `MemoryBuckets` and `memory_flow_labels`), named in a
fixture's params in conftest.py. The tests use nothing but the store protocols.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import anyio.to_thread
import psycopg
from pg import PostgresServer
from psycopg_pool import ConnectionPool

from gateway.audit import AuditStore, chain_hash
from gateway.audit.schema import GENESIS_HASH
from gateway.guardrails.flows import FlowTracker
from gateway.guardrails.rate_limits import MemoryRateBuckets
from gateway.store.postgres.audit_log import APPEND_LOCK, PgAuditLog
from gateway.store.postgres.connect import PoolSettings, open_pool
from gateway.store.postgres.migrate import migrate
from gateway.store.postgres.plan_runs import PgPlanRuns
from gateway.store.protocols import AuditLog, FlowLabels, PlanRunStore, RateBuckets
from gateway.store.sqlite.plan_runs import SQLitePlanRuns

WRITE_TIMEOUT = 0.3
"""How long a writer waits for another's lock in these tests before the store reports itself busy."""


class Clock:
    """Time the test moves: leases run out when the test says so, not after a sleep."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Backend(Protocol):
    name: str

    def open_log(self) -> AbstractAsyncContextManager[AuditLog]:
        """A writer on the shared database, as one gateway process has (open several: several processes)."""
        ...

    def plan_runs(self, clock: Callable[[], float], lease_seconds: float = 30.0) -> PlanRunStore: ...

    def corrupt(self) -> None:
        """Replace the database with garbage (no log is open)."""
        ...

    def hold_write_lock(self) -> AbstractAsyncContextManager[None]:
        """Another process holds the write lock for as long as the block runs."""
        ...


class SQLiteBackend:
    name = "sqlite"

    def __init__(self, folder: Path) -> None:
        self.path = folder / "audit" / "audit.db"

    @asynccontextmanager
    async def open_log(self) -> AsyncIterator[AuditLog]:
        store = AuditStore(self.path, WRITE_TIMEOUT)
        store.open()
        try:
            yield store
        finally:
            await store.close()

    def plan_runs(self, clock: Callable[[], float], lease_seconds: float = 30.0) -> PlanRunStore:
        return SQLitePlanRuns(self.path, lease_seconds, clock)

    def corrupt(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("-wal", "-shm"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
        self.path.write_bytes(b"this is not a database; " * 512)

    @asynccontextmanager
    async def hold_write_lock(self) -> AsyncIterator[None]:
        with _exclusive(self.path):
            yield


class PostgresBackend:
    """A database of the test's own on the worker's server, migrated; each log is a process with its own pool."""

    name = "postgresql"
    settings = PoolSettings(min_size=1, max_size=4, connect_timeout=2.0, wait_timeout=2.0)

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.dsn = server.dsn(server.create_database())
        self._pools: list[ConnectionPool] = []
        self._shared = self._pool()  # the plan-run stores' (reads see every process's commits)
        migrate(self._shared)

    @classmethod
    @contextmanager
    def on(cls, server: PostgresServer) -> Iterator[PostgresBackend]:
        backend = cls(server)
        try:
            yield backend
        finally:
            for pool in backend._pools:
                pool.close()

    def _pool(self) -> ConnectionPool:
        pool = open_pool(self.dsn, self.settings)
        self._pools.append(pool)
        return pool

    @asynccontextmanager
    async def open_log(self) -> AsyncIterator[AuditLog]:
        log = PgAuditLog(await anyio.to_thread.run_sync(self._pool), write_timeout_seconds=WRITE_TIMEOUT)
        await anyio.to_thread.run_sync(log.open, "contract-test-salt")
        try:
            yield log
        finally:
            await log.close()

    def plan_runs(self, clock: Callable[[], float], lease_seconds: float = 30.0) -> PlanRunStore:
        return PgPlanRuns(self._shared, lease_seconds, clock)

    def corrupt(self) -> None:
        """Overwrite the files of the schema's tables and indexes with garbage, as a damaged disk would.

        Nothing has read them since they were created, so the server has no good copy cached: the next
        read of each finds the garbage (`invalid page`, SQLSTATE XX001). `schema_migrations` is left
        alone, so the schema still looks current and the damage is the data's.
        """
        query = (
            "SELECT pg_relation_filepath(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i') AND c.relname NOT LIKE 'schema_migrations%'"
        )
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            paths = [row[0] for row in connection.execute(query)]
        assert paths
        for path in paths:
            (self.server.root / "data" / path).write_bytes((b"this is not a database; " * 342)[:8192])

    @asynccontextmanager
    async def hold_write_lock(self) -> AsyncIterator[None]:
        """Another process's append in progress: it holds the lock every append takes."""
        blocker = await anyio.to_thread.run_sync(lambda: psycopg.connect(self.dsn, autocommit=True))
        try:
            await anyio.to_thread.run_sync(blocker.execute, "SELECT pg_advisory_lock(%s)", (APPEND_LOCK,))
            yield
        finally:
            await anyio.to_thread.run_sync(blocker.close)


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    blocker = sqlite3.connect(path, timeout=5, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


class SharedBuckets(Protocol):
    def open(self) -> RateBuckets:
        """A handle on the buckets, as one process has (open several: several processes)."""
        ...


class MemoryBuckets:
    """In-memory buckets belong to one process: every handle is the same buckets."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._buckets = MemoryRateBuckets(clock)

    def open(self) -> RateBuckets:
        return self._buckets


FlowLabelsFactory = Callable[[int, int], FlowLabels]
"""Builds a `FlowLabels` keeping at most (sessions, links per label)."""


def memory_flow_labels(sessions: int, links: int) -> FlowLabels:
    return FlowTracker(max_sessions=sessions, max_links=links)


Verified = Callable[[AuditLog], Awaitable[list[dict[str, Any]]]]


async def verified(log: AuditLog) -> list[dict[str, Any]]:
    """Read the whole chain through the protocol, check every link, and return the record bodies in order."""
    bodies: list[dict[str, Any]] = []
    previous, after = GENESIS_HASH, 0
    while entries := await log.chain(after, 500):
        for entry in entries:
            assert entry.seq == after + 1, f"record {after + 1} is missing"
            assert entry.prev_hash == previous, f"record {entry.seq} does not link to the one before"
            assert entry.hash == chain_hash(entry.prev_hash, entry.body), f"record {entry.seq} was altered"
            body = json.loads(entry.body)
            assert body["seq"] == entry.seq
            bodies.append(body)
            previous, after = entry.hash, entry.seq
    assert await log.head() == (after, previous)
    return bodies
