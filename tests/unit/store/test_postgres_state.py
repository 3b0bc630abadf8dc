"""The PostgreSQL state replicas share: approvals, rate-limit buckets and flow labels, across processes.

Each handle has a pool of its own, as each replica does. What the contract suite checks on one
handle is checked here between several: one quota, one set of flows, one winner per transition.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import psycopg
import pytest
from contract.pg_state_support import Pools, audit_log, migrate
from pg import PostgresServer, free_port

from gateway.approvals.requests import ApprovalRequest, ApprovalStatus, pending_request
from gateway.approvals.sqlite_store import SqliteApprovalStore
from gateway.audit import AuditRecord, AuditStore
from gateway.store.changes import Change
from gateway.store.errors import StaleState, StoreUnavailable
from gateway.store.postgres.approvals import PgApprovalStore
from gateway.store.postgres.connect import PoolSettings, open_pool
from gateway.store.postgres.flow_labels import PgFlowLabels
from gateway.store.postgres.rate_buckets import PgRateBuckets
from gateway.store.protocols import Bucket

pytestmark = pytest.mark.anyio
SLOW = Bucket(key="alice/payments.refund", capacity=10, per_second=0.001)
NOW = 1_800_000_000.123456


@pytest.fixture
def pools(pg_dsn: str) -> Iterator[Pools]:
    """Pools on one migrated database of the test's own: `pools.new()` is another process."""
    opened = Pools(pg_dsn)
    yield opened
    opened.close()


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- rate-limit buckets ---------------------------------------------------------------------


async def test_two_processes_share_one_quota(pools: Pools) -> None:
    first, second = PgRateBuckets(pools.new(), Clock()), PgRateBuckets(pools.new(), Clock())
    granted = [await (first if n % 2 else second).take([SLOW]) is None for n in range(20)]
    assert granted.count(True) == 10 and granted[10:] == [False] * 10


def test_racing_threads_in_several_processes_never_over_grant(pools: Pools) -> None:
    handles = [PgRateBuckets(pools.new(), Clock()) for _ in range(3)]
    tight = Bucket(key="carol/all-tools", capacity=7, per_second=0.001)
    results: list[tuple[int, float] | None] = []
    lock = threading.Lock()

    def taker(n: int) -> None:
        # Half take [SLOW, tight], half [tight, SLOW]: both buckets are new, and the order differs.
        buckets = [SLOW, tight] if n % 2 else [tight, SLOW]
        for _ in range(3):
            outcome = anyio.run(handles[n % 3].take, buckets)
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=taker, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 36 and results.count(None) == 7  # no deadlock, no error, no token twice


async def test_time_refills_a_bucket_for_every_process(pools: Pools) -> None:
    clock = Clock()
    first, second = PgRateBuckets(pools.new(), clock), PgRateBuckets(pools.new(), clock)
    bucket = Bucket(key="bob/tickets.create", capacity=1, per_second=0.5)
    assert await first.take([bucket]) is None
    refused = await second.take([bucket])
    assert refused is not None and refused == (0, pytest.approx(2.0))
    clock.now += 2.0
    assert await second.take([bucket]) is None
    assert await first.take([bucket]) is not None


async def test_a_refused_call_takes_from_no_bucket_in_any_process(pools: Pools) -> None:
    first, second = PgRateBuckets(pools.new(), Clock()), PgRateBuckets(pools.new(), Clock())
    narrow = Bucket(key="alice/all-tools", capacity=1, per_second=0.001)
    assert await first.take([SLOW, narrow]) is None
    refused = await second.take([SLOW, narrow])
    assert refused is not None and refused[0] == 1
    assert [await second.take([SLOW]) for _ in range(10)].count(None) == 9


async def test_without_an_injected_clock_the_database_s_clock_counts(pools: Pools) -> None:
    buckets = PgRateBuckets(pools.new())
    bucket = Bucket(key="dave/email.send", capacity=1, per_second=0.01)
    assert await buckets.take([bucket]) is None
    refused = await buckets.take([bucket])
    assert refused is not None and refused[0] == 0 and 99.0 < refused[1] <= 100.0


async def test_buckets_that_refilled_are_pruned_and_come_back_full(pools: Pools) -> None:
    clock = Clock()
    buckets = PgRateBuckets(pools.new(), clock)
    fast = Bucket(key="erin/search", capacity=2, per_second=1.0)
    assert await buckets.take([fast]) is None and await buckets.take([SLOW]) is None
    clock.now += 5
    assert await buckets.prune() == 1  # the fast one refilled; SLOW has not
    assert await buckets.take([fast]) is None and await buckets.take([fast]) is None
    assert await buckets.take([fast]) is not None


# --- flow labels ----------------------------------------------------------------------------------


async def test_what_one_process_records_another_reads(pools: Pools) -> None:
    here, there = PgFlowLabels(pools.new()), PgFlowLabels(pools.new())
    await here.record("s1", frozenset({"private_data"}), "call-1")
    await there.record("s1", frozenset({"untrusted_content"}), "call-2")
    assert await there.reads("s1", ("private_data", "untrusted_content")) == ["call-1", "call-2"]
    assert await here.reads("s1", ("untrusted_content",)) == ["call-2"]
    assert await here.reads("s1", ()) == [] and await here.reads("s2", ()) is None


async def test_bounds_hold_across_processes(pools: Pools) -> None:
    here, there = PgFlowLabels(pools.new(), 2, 2), PgFlowLabels(pools.new(), 2, 2)
    for n in range(4):
        await (here if n % 2 else there).record("s1", frozenset({"private_data"}), f"call-{n}")
    assert await here.reads("s1", ("private_data",)) == ["call-2", "call-3"]
    await here.record("s2", frozenset({"private_data"}), "s2-call")
    await there.record("s1", frozenset({"private_data"}), "call-4")  # s1 is now the most recent
    await there.record("s3", frozenset({"private_data"}), "s3-call")
    assert await here.reads("s2", ("private_data",)) is None
    assert await there.reads("s1", ("private_data",)) == ["call-3", "call-4"]


async def test_concurrent_new_sessions_in_several_processes_stay_bounded(pools: Pools) -> None:
    handles = [PgFlowLabels(pools.new(), max_sessions=5) for _ in range(3)]
    async with anyio.create_task_group() as tasks:
        for n in range(30):
            tasks.start_soon(handles[n % 3].record, f"s{n}", frozenset({"private_data"}), f"call-{n}")
    await handles[0].record("last", frozenset({"private_data"}), "call-last")
    with psycopg.connect(pools.dsn) as connection:
        row = connection.execute("SELECT count(*) FROM flow_sessions").fetchone()
    assert row is not None and row[0] == 5
    assert await handles[1].reads("last", ("private_data",)) == ["call-last"]


# --- faults ---------------------------------------------------------------------------------


class Lost:
    """A database of its own that `lose()` makes unreachable, as a server that went away (the shared one stays up)."""

    def __init__(self, postgres: PostgresServer) -> None:
        self.name = postgres.create_database()
        self.dsn = postgres.dsn(self.name)
        self._admin = psycopg.connect(postgres.dsn(), autocommit=True)

    def lose(self) -> None:
        self._admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        self._admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (self.name,))

    def close(self) -> None:
        self._admin.execute(f'DROP DATABASE "{self.name}" WITH (FORCE)')
        self._admin.close()


@pytest.fixture
def lost(postgres: PostgresServer) -> Iterator[Lost]:
    made = Lost(postgres)
    yield made
    made.close()


async def test_a_database_that_cannot_be_reached_fails_closed(lost: Lost) -> None:
    pool = open_pool(lost.dsn, PoolSettings(max_size=2, connect_timeout=1.0, wait_timeout=0.5))
    try:
        migrate(pool)
        lost.lose()
        with pytest.raises(StoreUnavailable):
            await PgRateBuckets(pool).take([SLOW])
        with pytest.raises(StoreUnavailable):
            await PgFlowLabels(pool).record("s1", frozenset({"private_data"}), "call-1")
        with pytest.raises(StoreUnavailable):
            await PgFlowLabels(pool).reads("s1", ("private_data",))
        with pytest.raises(StoreUnavailable):
            await PgApprovalStore(pool).get("any")
    finally:
        pool.close()


async def test_a_server_nobody_listens_on_is_unavailable() -> None:
    with pytest.raises(StoreUnavailable):
        open_pool(f"host=127.0.0.1 port={free_port()} dbname=x user=x", PoolSettings(connect_timeout=1.0))


# --- approvals --------------------------------------------------------------------------------


class Replica:
    """One process's approval store and audit log on the shared database."""

    def __init__(self, pools: Pools, clock: Clock) -> None:
        self.pool = pools.new()
        self.store = PgApprovalStore(self.pool, lease_seconds=30.0, clock=clock)
        self.audit = audit_log(pools.new())

    async def commit(self, event: str, change: Change) -> bool:
        try:
            await self.audit.append(AuditRecord(event=event, outcome=event.split(".", 1)[1]), [change])
        except StaleState:
            return False
        return True


@pytest.fixture
async def replicas(pools: Pools) -> AsyncIterator[tuple[Replica, Replica]]:
    clock = Clock()
    pair = Replica(pools, clock), Replica(pools, clock)
    yield pair
    for replica in pair:
        await replica.audit.close()


def new_request(quorum: int = 1) -> ApprovalRequest:
    return pending_request(
        subject="bob",
        tool="payments.refund",
        arguments={"customer_id": "C004", "amount": 500},
        definition_hash="d" * 64,
        policy_version="v1",
        approver_role="role:manager",
        reasons=["over 100"],
        call_id="call-1",
        approvals_required=quorum,
        expires_at="2999-01-01T00:00:00.000000Z",
    )


async def race(**work: Callable[[], Awaitable[bool]]) -> dict[str, bool]:
    """Run every named piece of work at once; what each returned."""
    results: dict[str, bool] = {}

    async def run(name: str) -> None:
        results[name] = await work[name]()

    async with anyio.create_task_group() as tasks:
        for name in work:
            tasks.start_soon(run, name)
    return results


async def decide_at_once(a: Replica, b: Replica) -> None:
    request = new_request()
    assert await a.commit("tool.call", a.store.create(request))
    approve = a.store.decide(request.id, "carol", "approve", None, window_seconds=900)
    deny = b.store.decide(request.id, "frank", "deny", "no", window_seconds=900)
    won = await race(a=lambda: a.commit("approval.approve", approve), b=lambda: b.commit("approval.deny", deny))
    assert sorted(won.values()) == [False, True]
    decided = await b.store.get(request.id)
    assert decided is not None
    assert decided.status is (ApprovalStatus.APPROVED if won["a"] else ApprovalStatus.DENIED)
    assert [ballot.approver for ballot in await a.store.ballots(request.id)] == ["carol" if won["a"] else "frank"]


async def test_two_replicas_deciding_one_request_at_once_one_wins(replicas: tuple[Replica, Replica]) -> None:
    for _ in range(10):
        await decide_at_once(*replicas)


async def test_the_last_two_approvals_of_a_quorum_from_two_replicas_approve_it(
    replicas: tuple[Replica, Replica],
) -> None:
    a, b = replicas
    request = new_request(quorum=2)
    assert await a.commit("tool.call", a.store.create(request))
    first = a.store.decide(request.id, "carol", "approve", None, window_seconds=900)
    second = b.store.decide(request.id, "frank", "approve", None, window_seconds=900)
    won = await race(a=lambda: a.commit("approval.approve", first), b=lambda: b.commit("approval.approve", second))
    assert won == {"a": True, "b": True}
    found = await b.store.get(request.id)
    assert found is not None and found.status is ApprovalStatus.APPROVED


async def claim_at_once(a: Replica, b: Replica) -> None:
    request = new_request()
    assert await a.commit("tool.call", a.store.create(request))
    assert await a.commit("approval.approve", a.store.decide(request.id, "carol", "approve", None, window_seconds=9))
    won = await race(
        a=lambda: a.commit("approval.executing", a.store.claim(request.id, "owner-a")),
        b=lambda: b.commit("approval.executing", b.store.claim(request.id, "owner-b")),
    )
    assert sorted(won.values()) == [False, True]
    claimed = await b.store.get(request.id)
    assert claimed is not None and claimed.status is ApprovalStatus.EXECUTING
    assert claimed.lease_owner == ("owner-a" if won["a"] else "owner-b")


async def test_two_replicas_claiming_one_request_one_runs_it(replicas: tuple[Replica, Replica]) -> None:
    for _ in range(10):
        await claim_at_once(*replicas)


async def test_a_request_reads_back_exactly_as_the_sqlite_store_gives_it(
    replicas: tuple[Replica, Replica], tmp_path: Path
) -> None:
    a, _ = replicas
    clock = Clock()
    sqlite_audit = AuditStore(tmp_path / "audit.db")
    sqlite_audit.open("salt")
    lite = SqliteApprovalStore(tmp_path / "audit.db", lease_seconds=30.0, clock=clock)
    pg = PgApprovalStore(a.pool, lease_seconds=30.0, clock=clock)
    request = new_request(quorum=2)
    try:
        for audit, store in ((sqlite_audit, lite), (a.audit, pg)):
            await audit.append(AuditRecord(event="tool.call", outcome="call"), [store.create(request)])
            for approver in ("carol", "frank"):
                decide = store.decide(request.id, approver, "approve", "ok", window_seconds=900)
                await audit.append(AuditRecord(event="approval.approve", outcome="approve"), [decide])
            clock.now += 1.5
            await audit.append(AuditRecord(event="approval.executing", outcome="x"), [store.claim(request.id, "o")])
            result = {"code": "ok", "message": "ran", "content": [{"type": "text", "text": "é \u0000"}]}
            finish = store.finish(request.id, "o", ApprovalStatus.SUCCEEDED, result)
            await audit.append(AuditRecord(event="approval.succeeded", outcome="ok"), [finish])
            clock.now = NOW
        done = await pg.get(request.id)
        assert done is not None and done == await lite.get(request.id)
        assert None not in (done.approved_at, done.execute_by, done.finished_at, done.lease_expires_at)
        assert await pg.ballots(request.id) == await lite.ballots(request.id)
        assert await pg.find(ApprovalStatus.SUCCEEDED) == await lite.find(ApprovalStatus.SUCCEEDED)
    finally:
        await sqlite_audit.close()
