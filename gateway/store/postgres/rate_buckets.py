"""Rate-limit buckets on PostgreSQL, shared by every replica: every line of their SQL lives here.

A take is one short transaction: the buckets' rows are locked in key order by one upsert
(which creates a bucket met the first time, full), so two takers of overlapping buckets
queue rather than deadlock; each is refilled by the time elapsed since it was last taken
from, and either every one gives a token or none does.
Time is the database's clock, so replicas with skewed clocks still agree; a test injects
its own. A bucket not yet in the table is a full one (`rate_buckets` is UNLOGGED: a crash
empties it, which hands out at most one refill). A database that cannot answer raises a
`StoreError`, and the stage refuses the call (fail closed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import anyio.to_thread
from psycopg import Connection
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from gateway.store.errors import StoreError
from gateway.store.postgres.errors import pg_errors
from gateway.store.protocols import Bucket

logger = logging.getLogger(__name__)

_NOW = "COALESCE(%(now)s::float8, extract(epoch FROM clock_timestamp())::float8)"
"""The injected clock's time, or else the database's."""
_LOCK = (
    "INSERT INTO rate_buckets AS r (key, level, updated_at, capacity, per_second)"
    f" SELECT key, capacity, {_NOW}, capacity, per_second"
    " FROM unnest(%(keys)s::text[], %(capacities)s::float8[], %(rates)s::float8[]) AS b (key, capacity, per_second)"
    " ORDER BY key ON CONFLICT (key) DO UPDATE SET capacity = EXCLUDED.capacity, per_second = EXCLUDED.per_second"
    f" RETURNING r.key, r.level, r.updated_at, {_NOW}"
)
"""Lock the buckets' rows, creating the missing ones full, in one pass in key order: two takers of overlapping
buckets queue rather than deadlock, and two that meet a new bucket at once create it once. Each row comes back
with the time read after its lock was taken (the latest is the time to refill to)."""
_UPDATE = (
    "UPDATE rate_buckets SET level = b.level, updated_at = b.updated_at"
    " FROM unnest(%(keys)s::text[], %(levels)s::float8[], %(times)s::float8[]) AS b (key, level, updated_at)"
    " WHERE rate_buckets.key = b.key"
)
_PRUNE = (
    "DELETE FROM rate_buckets WHERE key IN (SELECT key FROM rate_buckets"
    f" WHERE level + ({_NOW} - updated_at) * per_second >= capacity LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
)
"""Forget buckets that have refilled: an absent bucket is a full one. Rows in use are skipped, not waited for."""


class PgRateBuckets:
    """`RateBuckets` in one PostgreSQL database: every process with a handle on it shares one quota.

    `clock` (seconds) replaces the database's clock (tests); every `prune_every` takes, buckets that
    have refilled are dropped, so the table holds the buckets in use rather than every one ever used.
    """

    def __init__(
        self, pool: ConnectionPool, clock: Callable[[], float] | None = None, prune_every: int = 10_000
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._prune_every = prune_every
        self._takes = 0

    async def take(self, buckets: Sequence[Bucket], consume: bool = True) -> tuple[int, float] | None:
        if not buckets:
            return None
        return await anyio.to_thread.run_sync(self._take, list(buckets), consume)

    async def prune(self, limit: int = 10_000) -> int:
        """Drop up to `limit` buckets that have refilled; how many."""
        return await anyio.to_thread.run_sync(self._prune, limit)

    def _take(self, buckets: list[Bucket], consume: bool) -> tuple[int, float] | None:
        with pg_errors("cannot check rate limits"), self._pool.connection() as conn, conn.transaction():
            levels: dict[str, tuple[float, float]] = {}
            rows, latest = self._lock(conn, buckets)
            for index, bucket in enumerate(buckets):
                level, then = rows[bucket.key]
                now = max(latest, then)  # never back in time (a clock stepped back): a refill is counted once
                level = min(bucket.capacity, level + (now - then) * bucket.per_second)
                if level < 1:
                    return index, (1 - level) / bucket.per_second
                levels[bucket.key] = (level - 1, now)
            if not consume:
                return None
            keys = sorted(levels)
            conn.execute(
                _UPDATE, {"keys": keys, "levels": [levels[k][0] for k in keys], "times": [levels[k][1] for k in keys]}
            )
        self._takes += 1
        if self._takes % self._prune_every == 0:
            try:
                self._prune(self._prune_every)
            except StoreError:  # housekeeping: the take succeeded, and a later prune will do
                logger.warning("could not prune the rate-limit buckets", exc_info=True)
        return None

    def _lock(self, conn: Connection[TupleRow], buckets: list[Bucket]) -> tuple[dict[str, tuple[float, float]], float]:
        """Each bucket's (level, time last taken from), its row locked, and the time now."""
        first = {bucket.key: bucket for bucket in reversed(buckets)}  # a key named twice: its first bucket
        keys = sorted(first)
        params = {
            "keys": keys,
            "capacities": [first[key].capacity for key in keys],
            "rates": [first[key].per_second for key in keys],
            "now": self._time(),
        }
        rows = conn.execute(_LOCK, params).fetchall()
        return {row[0]: (row[1], row[2]) for row in rows}, max(row[3] for row in rows)

    def _prune(self, limit: int) -> int:
        with pg_errors("cannot prune rate-limit buckets"), self._pool.connection() as conn:
            return conn.execute(_PRUNE, {"now": self._time(), "limit": limit}).rowcount

    def _time(self) -> float | None:
        return None if self._clock is None else self._clock()
