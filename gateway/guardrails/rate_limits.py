"""Token buckets per subject and tool, from `rate_limits:` in guardrails.yaml.

The buckets are owned by the `Gateway` (they outlive a policy reload); a
bucket is keyed by the limit's own settings, so changing a limit starts it
afresh while an unchanged one keeps its level.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.guardrails.config import RateLimit


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic, max_buckets: int = 100_000) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, str, str], tuple[float, float]] = {}
        self._max_buckets = max_buckets

    def take(
        self, limits: tuple[RateLimit, ...], subject: str, tool: str, consume: bool = True
    ) -> tuple[RateLimit, float] | None:
        """None if every applicable bucket has a token (and takes one from each); else (limit, seconds to wait)."""
        now = self._clock()
        applicable = [limit for limit in limits if limit.applies_to(subject, tool)]
        levels = []
        for limit in applicable:
            key = (limit.model_dump_json(), subject, tool)
            capacity = float(limit.burst or max(1, round(limit.rate)))
            per_second = limit.rate / limit.per_seconds
            level, then = self._buckets.get(key, (capacity, now))
            level = min(capacity, level + (now - then) * per_second)
            if level < 1:
                return limit, (1 - level) / per_second
            levels.append((key, level))
        if consume:
            if len(self._buckets) > self._max_buckets:
                self._buckets.clear()  # bounded memory; a reset gives everyone a full bucket, never less
            for key, level in levels:
                self._buckets[key] = (level - 1, now)
        return None
