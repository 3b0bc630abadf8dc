"""The PostgreSQL implementations under contract: approvals, rate-limit buckets and flow labels.

Each handle gets a pool of its own, as each replica has: what one records, another must see,
and a quota two handles share is one quota. A database of the test's own is migrated with the
project's migrations, as `portcullis db init` does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from psycopg_pool import ConnectionPool

from gateway.store.postgres.audit_log import PgAuditLog
from gateway.store.postgres.connect import PoolSettings, open_pool
from gateway.store.postgres.flow_labels import PgFlowLabels
from gateway.store.postgres.migrate import migrate
from gateway.store.postgres.rate_buckets import PgRateBuckets
from gateway.store.protocols import FlowLabels, RateBuckets

SMALL = PoolSettings(min_size=1, max_size=4, connect_timeout=2.0, wait_timeout=2.0)
"""A handle's pool in these tests: a few connections, and faults reported within seconds."""


def migrated_pool(dsn: str, settings: PoolSettings = SMALL) -> ConnectionPool:
    pool = open_pool(dsn, settings)
    migrate(pool)
    return pool


class Pools:
    """The pools a test opened (one per simulated process), all closed at its end."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._pools: list[ConnectionPool] = []
        self._lock = threading.Lock()
        self.first = self.new()  # migrates the database once

    def new(self) -> ConnectionPool:
        pool = open_pool(self.dsn, SMALL)
        with self._lock:
            first = not self._pools
            self._pools.append(pool)
        if first:
            migrate(pool)
        return pool

    def close(self) -> None:
        with self._lock:
            pools, self._pools = self._pools, []
        for pool in pools:
            pool.close()


class PgBuckets:
    """`SharedBuckets` on PostgreSQL: every `open` is another process's handle on one database's buckets."""

    def __init__(self, dsn: str, clock: Callable[[], float]) -> None:
        self._pools = Pools(dsn)
        self._clock = clock

    def open(self) -> RateBuckets:
        return PgRateBuckets(self._pools.new(), clock=self._clock)

    def close(self) -> None:
        self._pools.close()


@contextmanager
def pg_buckets(dsn: str, clock: Callable[[], float]) -> Iterator[PgBuckets]:
    buckets = PgBuckets(dsn, clock)
    try:
        yield buckets
    finally:
        buckets.close()


class PgFlowLabelsFactory:
    """A `FlowLabelsFactory` on PostgreSQL: each store it builds is another process's handle on one database."""

    def __init__(self, dsn: str) -> None:
        self._pools = Pools(dsn)

    def __call__(self, sessions: int, links: int) -> FlowLabels:
        return PgFlowLabels(self._pools.new(), max_sessions=sessions, max_links=links)

    def close(self) -> None:
        self._pools.close()


@contextmanager
def pg_flow_labels(dsn: str) -> Iterator[PgFlowLabelsFactory]:
    factory = PgFlowLabelsFactory(dsn)
    try:
        yield factory
    finally:
        factory.close()


def audit_log(pool: ConnectionPool) -> PgAuditLog:
    """The PostgreSQL audit log on `pool`, opened: what approval changes commit with."""
    log = PgAuditLog(pool)
    log.open("contract-test-salt")
    return log
