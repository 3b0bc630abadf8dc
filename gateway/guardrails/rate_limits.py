"""Token buckets per subject and tool, from `rate_limits:` in guardrails.yaml.

`RateLimiter` decides which limits apply to a call and what their buckets are; the
buckets themselves live in a `RateBuckets` store (store/protocols.py), which takes
tokens atomically: in this process (`MemoryRateBuckets`, today's), or shared by every
process on one database (issue 15). A store that cannot answer raises a `StoreError`,
and the stage refuses the call (fail closed).

The limiter is owned by the wiring (it outlives a policy reload); a bucket is keyed by
the limit's own settings, so changing a limit starts it afresh while an unchanged one
keeps its level.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from functools import lru_cache

from gateway.canonical import sha256_hex
from gateway.guardrails.config import RateLimit
from gateway.store.protocols import Bucket, RateBuckets


class RateLimiter:
    def __init__(self, buckets: RateBuckets | None = None) -> None:
        self._buckets = buckets if buckets is not None else MemoryRateBuckets()

    async def take(
        self, limits: tuple[RateLimit, ...], subject: str, tool: str, consume: bool = True
    ) -> tuple[RateLimit, float] | None:
        """None if every applicable bucket has a token (and takes one from each); else (limit, seconds to wait).

        Raises a `StoreError` when the buckets' store cannot answer.
        """
        applicable = [limit for limit in limits if limit.applies_to(subject, tool)]
        if not applicable:
            return None
        empty = await self._buckets.take([_bucket(limit, subject, tool) for limit in applicable], consume)
        if empty is None:
            return None
        index, wait = empty
        return applicable[index], wait


def _bucket(limit: RateLimit, subject: str, tool: str) -> Bucket:
    # Length-prefixed, so no two (subject, tool) pairs give one text; hashed, so a key has a fixed size.
    key = sha256_hex(f"{len(subject)}:{subject}{len(tool)}:{tool}{_settings(limit)}")[:32]
    return Bucket(
        key=key, capacity=float(limit.burst or max(1, round(limit.rate))), per_second=limit.rate / limit.per_seconds
    )


@lru_cache(maxsize=1024)
def _settings(limit: RateLimit) -> str:
    """The limit's own settings (its buckets start afresh when they change); computed once per limit."""
    return limit.model_dump_json()


class MemoryRateBuckets:
    """`RateBuckets` in this process's memory: exact under concurrency, bounded in buckets, lost on restart."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_buckets: int = 100_000) -> None:
        self._clock = clock
        self._levels: dict[str, tuple[float, float]] = {}
        self._max_buckets = max_buckets
        self._lock = threading.Lock()  # the event loop's calls are atomic already; threads' are too

    async def take(self, buckets: Sequence[Bucket], consume: bool = True) -> tuple[int, float] | None:
        with self._lock:
            now = self._clock()
            levels = []
            for index, bucket in enumerate(buckets):
                level, then = self._levels.get(bucket.key, (bucket.capacity, now))
                level = min(bucket.capacity, level + (now - then) * bucket.per_second)
                if level < 1:
                    return index, (1 - level) / bucket.per_second
                levels.append((bucket.key, level))
            if consume:
                if len(self._levels) > self._max_buckets:
                    self._levels.clear()  # bounded memory; a reset gives everyone a full bucket, never less
                for key, level in levels:
                    self._levels[key] = (level - 1, now)
            return None
