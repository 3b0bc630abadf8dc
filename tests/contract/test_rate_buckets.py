"""The rate-limit buckets' contract: exact under concurrency, all or nothing, refilled by time alone."""

from __future__ import annotations

import asyncio
import threading

import anyio
import pytest
from contract_support import Clock, SharedBuckets

from gateway.store.protocols import Bucket

pytestmark = pytest.mark.anyio
SLOW = Bucket(key="alice/payments.refund", capacity=10, per_second=0.001)
"""Ten tokens, and no refill worth counting while a test runs."""


async def test_racing_takers_in_tasks_and_threads_get_exactly_the_bucket_s_tokens(rate_buckets: SharedBuckets) -> None:
    granted: list[bool] = []
    lock = threading.Lock()

    async def take_one() -> None:
        outcome = await rate_buckets.open().take([SLOW])
        with lock:
            granted.append(outcome is None)

    def in_thread() -> None:
        async def several() -> None:
            await asyncio.gather(*(take_one() for _ in range(5)))

        asyncio.run(several())

    threads = [threading.Thread(target=in_thread) for _ in range(4)]
    for thread in threads:
        thread.start()
    async with anyio.create_task_group() as tasks:
        for _ in range(20):
            tasks.start_soon(take_one)
    for thread in threads:
        await anyio.to_thread.run_sync(thread.join)
    assert len(granted) == 40
    assert granted.count(True) == 10


async def test_a_call_takes_from_every_bucket_or_from_none(rate_buckets: SharedBuckets) -> None:
    buckets = rate_buckets.open()
    narrow = Bucket(key="alice/all-tools", capacity=1, per_second=0.001)
    assert await buckets.take([SLOW, narrow]) is None
    refused = await buckets.take([SLOW, narrow])
    assert refused is not None and refused[0] == 1  # the second bucket is the empty one
    # SLOW lost one token to the first call only: nine are left.
    assert [await buckets.take([SLOW]) for _ in range(10)].count(None) == 9


async def test_an_empty_bucket_says_how_long_to_wait_and_refills_with_time(
    rate_buckets: SharedBuckets, clock: Clock
) -> None:
    buckets = rate_buckets.open()
    bucket = Bucket(key="bob/tickets.create", capacity=2, per_second=0.5)
    assert await buckets.take([bucket]) is None
    assert await buckets.take([bucket]) is None
    refused = await buckets.take([bucket])
    assert refused is not None and refused[0] == 0 and refused[1] == pytest.approx(2.0)
    clock.advance(1.0)
    refused = await buckets.take([bucket])
    assert refused is not None and refused[1] == pytest.approx(1.0)
    clock.advance(1.0)
    assert await buckets.take([bucket]) is None
    assert await buckets.take([bucket]) is not None


async def test_a_dry_run_looks_without_taking(rate_buckets: SharedBuckets) -> None:
    buckets = rate_buckets.open()
    single = Bucket(key="carol/email.send", capacity=1, per_second=0.001)
    for _ in range(3):
        assert await buckets.take([single], consume=False) is None
    assert await buckets.take([single]) is None
    assert await buckets.take([single], consume=False) is not None


async def test_buckets_are_separate_by_key(rate_buckets: SharedBuckets) -> None:
    buckets = rate_buckets.open()
    alice = Bucket(key="alice", capacity=1, per_second=0.001)
    bob = Bucket(key="bob", capacity=1, per_second=0.001)
    assert await buckets.take([alice]) is None
    assert await buckets.take([alice]) is not None
    assert await buckets.take([bob]) is None
