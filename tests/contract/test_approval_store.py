"""The contract every approval store keeps: SQLite's, and PostgreSQL's that replicas share.

A change commits with its audit record or not at all; every transition is a compare-and-swap
(two approvers: one winner; N executors: one execution); a claim holds under a lease that only
its owner renews, and a request whose owner died is interrupted, never run again; a store that
cannot answer fails closed. The store's clock is a test clock, so leases and windows run out
without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import psycopg
import pytest
from pg_state_support import audit_log, migrated_pool

from gateway.approvals.requests import ApprovalRequest, ApprovalStatus, pending_request
from gateway.approvals.sqlite_store import SqliteApprovalStore
from gateway.approvals.store import ApprovalStore, Revision
from gateway.audit import AuditRecord, AuditStore
from gateway.canonical import digest
from gateway.outcomes import AuditWriteError, PortcullisError
from gateway.store.changes import Change
from gateway.store.errors import StaleState
from gateway.store.postgres.approvals import PgApprovalStore
from gateway.store.protocols import AuditLog

pytestmark = pytest.mark.anyio
LEASE = 30.0
WINDOW = 900.0


class Clock:
    """The store's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    """One implementation under test: its store, the audit log its changes commit with, and its clock."""

    store: ApprovalStore
    audit: AuditLog
    clock: Clock
    breaks: Callable[[], Awaitable[None]]
    """Make the store unusable (its database gone bad), as a fault would."""


async def sqlite_backend(root: Path) -> AsyncIterator[Backend]:
    path = root / "audit.db"
    audit = AuditStore(path)
    audit.open("contract-test-salt")
    clock = Clock()

    async def breaks() -> None:
        await audit.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        path.write_bytes(b"this is not a database" * 100)

    try:
        yield Backend(SqliteApprovalStore(path, lease_seconds=LEASE, clock=clock), audit, clock, breaks)
    finally:
        await audit.close()


async def postgresql_backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    dsn = request.getfixturevalue("pg_dsn")
    pool = migrated_pool(dsn)
    audit = audit_log(pool)
    clock = Clock()

    async def breaks() -> None:  # the schema is gone: what `portcullis db init` creates
        with psycopg.connect(dsn, autocommit=True, options="-c lock_timeout=5000") as connection:
            connection.execute("DROP SCHEMA public CASCADE")

    try:
        yield Backend(PgApprovalStore(pool, lease_seconds=LEASE, clock=clock), audit, clock, breaks)
    finally:
        await audit.close()
        pool.close()


BACKENDS: dict[str, Callable[[pytest.FixtureRequest], AsyncIterator[Backend]]] = {
    "sqlite": lambda request: sqlite_backend(request.getfixturevalue("tmp_path")),
    "postgresql": postgresql_backend,
}


@pytest.fixture(params=sorted(BACKENDS))
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    async for made in BACKENDS[request.param](request):
        yield made


def record(event: str, request_id: str) -> AuditRecord:
    return AuditRecord(event=event, approval_id=request_id, outcome=event.split(".", 1)[1])


async def commit(backend: Backend, event: str, request_id: str, change: Change) -> bool:
    """Commit `change` with its record: True if it moved the request, False if it was stale."""
    try:
        await backend.audit.append(record(event, request_id), [change])
    except StaleState:
        return False
    return True


async def created(backend: Backend, *, quorum: int = 1, subject: str = "bob") -> ApprovalRequest:
    request = pending_request(
        subject=subject,
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
    await backend.audit.append(record("tool.call", request.id), [backend.store.create(request)])
    return request


async def approved(backend: Backend) -> ApprovalRequest:
    request = await created(backend)
    change = backend.store.decide(request.id, "carol", "approve", None, window_seconds=WINDOW)
    assert await commit(backend, "approval.approve", request.id, change)
    return request


async def status(backend: Backend, request_id: str) -> ApprovalRequest:
    found = await backend.store.get(request_id)
    assert found is not None
    return found


async def all_at_once(*work: Callable[[], Awaitable[bool]]) -> list[bool]:
    results: list[bool] = []

    async def run(one: Callable[[], Awaitable[bool]]) -> None:
        results.append(await one())

    async with anyio.create_task_group() as tasks:
        for one in work:
            tasks.start_soon(run, one)
    return results


# --- creating and reading ---------------------------------------------------------


async def test_a_created_request_reads_back_as_it_was_made(backend: Backend) -> None:
    request = await created(backend)
    assert await backend.store.get(request.id) == request
    assert [r.id for r in await backend.store.find(ApprovalStatus.PENDING)] == [request.id]
    assert await backend.store.find(ApprovalStatus.APPROVED) == []
    assert await backend.store.get("no-such-request") is None


# --- deciding: compare-and-swap ---------------------------------------------------------


async def test_two_approvers_at_once_one_wins_and_the_other_changes_nothing(backend: Backend) -> None:
    request = await created(backend)
    head = await backend.audit.head()
    store = backend.store

    def approve(approver: str) -> Callable[[], Awaitable[bool]]:
        change = store.decide(request.id, approver, "approve", None, window_seconds=WINDOW)
        return lambda: commit(backend, "approval.approve", request.id, change)

    assert sorted(await all_at_once(approve("carol"), approve("frank"))) == [False, True]
    assert (await status(backend, request.id)).status is ApprovalStatus.APPROVED
    assert len(await store.ballots(request.id)) == 1
    assert (await backend.audit.head())[0] == head[0] + 1  # the loser's record was not written either


async def test_an_approver_counts_once_toward_a_quorum(backend: Backend) -> None:
    request = await created(backend, quorum=2)
    store = backend.store
    first = store.decide(request.id, "carol", "approve", None, window_seconds=WINDOW)
    again = store.decide(request.id, "carol", "approve", "me again", window_seconds=WINDOW)
    assert await commit(backend, "approval.approve", request.id, first)
    assert not await commit(backend, "approval.approve", request.id, again)
    assert (await status(backend, request.id)).status is ApprovalStatus.PENDING
    other = store.decide(request.id, "frank", "approve", None, window_seconds=WINDOW)
    assert await commit(backend, "approval.approve", request.id, other)
    done = await status(backend, request.id)
    assert done.status is ApprovalStatus.APPROVED
    assert done.execute_by is not None and done.approved_at is not None
    assert [b.approver for b in await store.ballots(request.id)] == ["carol", "frank"]


async def test_the_last_two_approvals_of_a_quorum_at_once_approve_it(backend: Backend) -> None:
    request = await created(backend, quorum=2)
    store = backend.store

    def approve(approver: str) -> Callable[[], Awaitable[bool]]:
        change = store.decide(request.id, approver, "approve", None, window_seconds=WINDOW)
        return lambda: commit(backend, "approval.approve", request.id, change)

    assert await all_at_once(approve("carol"), approve("frank")) == [True, True]
    assert (await status(backend, request.id)).status is ApprovalStatus.APPROVED


async def test_a_denial_ends_the_request_with_its_reason_and_nothing_moves_it_after(backend: Backend) -> None:
    request = await created(backend)
    store = backend.store
    denial = store.decide(request.id, "carol", "deny", "duplicate claim", window_seconds=WINDOW)
    assert await commit(backend, "approval.deny", request.id, denial)
    denied = await status(backend, request.id)
    assert (denied.status, denied.status_reason) == (ApprovalStatus.DENIED, "duplicate claim")
    late = store.decide(request.id, "frank", "approve", None, window_seconds=WINDOW)
    assert not await commit(backend, "approval.approve", request.id, late)
    assert not await commit(backend, "approval.executing", request.id, store.claim(request.id, "owner-a"))
    pending = frozenset({ApprovalStatus.PENDING})
    closing = store.close(request.id, pending, ApprovalStatus.CANCELLED, "late")
    assert not await commit(backend, "approval.cancelled", request.id, closing)
    assert await status(backend, request.id) == denied


async def test_a_revision_replaces_the_arguments_and_earlier_ballots(backend: Backend) -> None:
    request = await created(backend, quorum=2)
    store = backend.store
    assert await commit(
        backend,
        "approval.approve",
        request.id,
        store.decide(request.id, "carol", "approve", None, window_seconds=WINDOW),
    )
    arguments = {"customer_id": "C004", "amount": 250}
    revision = Revision(arguments, digest(arguments), [{"revision": 1, "arguments": request.arguments}])
    edit = store.decide(request.id, "frank", "approve", "half", window_seconds=WINDOW, revision=revision)
    assert await commit(backend, "approval.approve", request.id, edit)
    edited = await status(backend, request.id)
    assert edited.status is ApprovalStatus.PENDING  # carol's approval covered the old arguments only
    assert (edited.arguments, edited.arguments_digest) == (arguments, digest(arguments))
    assert edited.revisions == [{"revision": 1, "arguments": request.arguments}]
    assert [b.approver for b in await store.ballots(request.id)] == ["frank"]


# --- claims and leases ----------------------------------------------------------------------


async def test_exactly_one_of_many_concurrent_executors_runs_an_approved_request(backend: Backend) -> None:
    request = await approved(backend)
    store = backend.store
    executions: list[str] = []

    def executor(owner: str) -> Callable[[], Awaitable[bool]]:
        async def run() -> bool:
            for _ in range(3):  # each executor makes several passes over the queue, like a worker
                if await commit(backend, "approval.executing", request.id, store.claim(request.id, owner)):
                    executions.append(owner)  # the tool's side effect
                    result = {"code": "ok", "message": "ran"}
                    finish = store.finish(request.id, owner, ApprovalStatus.SUCCEEDED, result)
                    assert await commit(backend, "approval.succeeded", request.id, finish)
                    return True
                await anyio.sleep(0)
            return False

        return run

    wins = await all_at_once(*(executor(f"owner-{n}") for n in range(8)))
    assert wins.count(True) == 1 and len(executions) == 1
    done = await status(backend, request.id)
    assert (done.status, done.lease_owner, done.result) == (
        ApprovalStatus.SUCCEEDED,
        executions[0],
        {"code": "ok", "message": "ran"},
    )


async def test_a_claim_holds_a_lease_that_only_its_owner_renews_and_finishes(backend: Backend) -> None:
    request = await approved(backend)
    store, clock = backend.store, backend.clock
    assert await commit(backend, "approval.executing", request.id, store.claim(request.id, "owner-a"))
    claimed = await status(backend, request.id)
    assert (claimed.status, claimed.lease_owner) == (ApprovalStatus.EXECUTING, "owner-a")
    assert claimed.lease_expires_at is not None
    clock.now += LEASE / 2
    await backend.audit.write([store.renew(request.id, "owner-a")])
    renewed = await status(backend, request.id)
    assert renewed.lease_expires_at is not None and renewed.lease_expires_at > claimed.lease_expires_at
    with pytest.raises(StaleState):
        await backend.audit.write([store.renew(request.id, "owner-b")])
    result = {"code": "ok", "message": "ran"}
    assert not await commit(
        backend, "approval.succeeded", request.id, store.finish(request.id, "owner-b", ApprovalStatus.SUCCEEDED, result)
    )
    assert await commit(
        backend, "approval.failed", request.id, store.finish(request.id, "owner-a", ApprovalStatus.FAILED, result)
    )
    with pytest.raises(StaleState):  # finished: nothing left to renew
        await backend.audit.write([store.renew(request.id, "owner-a")])


async def test_no_claim_outside_the_execution_window_or_before_approval(backend: Backend) -> None:
    pending = await created(backend)
    store, clock = backend.store, backend.clock
    assert not await commit(backend, "approval.executing", pending.id, store.claim(pending.id, "owner-a"))
    request = await approved(backend)
    clock.now += WINDOW + 1
    assert not await commit(backend, "approval.executing", request.id, store.claim(request.id, "owner-a"))
    assert (await status(backend, request.id)).status is ApprovalStatus.APPROVED


async def test_a_request_whose_owner_died_is_interrupted_once_its_lease_runs_out_and_never_claimed_again(
    backend: Backend,
) -> None:
    request = await approved(backend)
    store, clock = backend.store, backend.clock
    assert await commit(backend, "approval.executing", request.id, store.claim(request.id, "dead-owner"))
    sweep = store.interrupt(request.id, "its gateway stopped", owner="sweeper")
    assert not await commit(backend, "approval.interrupted", request.id, sweep)  # the lease still holds
    clock.now += LEASE + 1
    sweep = store.interrupt(request.id, "its gateway stopped", owner="sweeper")
    concurrent = [lambda: commit(backend, "approval.interrupted", request.id, sweep) for _ in range(3)]
    assert sorted(await all_at_once(*concurrent)) == [False, False, True]  # one record, however many sweepers
    interrupted = await status(backend, request.id)
    assert (interrupted.status, interrupted.status_reason) == (ApprovalStatus.INTERRUPTED, "its gateway stopped")
    assert interrupted.terminal
    for owner in ("dead-owner", "sweeper"):
        assert not await commit(backend, "approval.executing", request.id, store.claim(request.id, owner))
    assert (await status(backend, request.id)).status is ApprovalStatus.INTERRUPTED


async def test_an_owner_known_to_be_gone_is_interrupted_before_its_lease_runs_out(backend: Backend) -> None:
    request = await approved(backend)
    store = backend.store
    assert await commit(backend, "approval.executing", request.id, store.claim(request.id, "gone-owner"))
    sweep = store.interrupt(request.id, "gone", owner="sweeper", gone=["gone-owner"])
    assert await commit(backend, "approval.interrupted", request.id, sweep)
    assert (await status(backend, request.id)).status is ApprovalStatus.INTERRUPTED


async def test_a_sweep_never_interrupts_its_own_request(backend: Backend) -> None:
    request = await approved(backend)
    store, clock = backend.store, backend.clock
    assert await commit(backend, "approval.executing", request.id, store.claim(request.id, "owner-a"))
    clock.now += LEASE + 1
    own = store.interrupt(request.id, "mine", owner="owner-a")
    assert not await commit(backend, "approval.interrupted", request.id, own)
    assert (await status(backend, request.id)).status is ApprovalStatus.EXECUTING


async def test_an_owner_gives_up_at_once_and_a_late_result_is_still_recorded(backend: Backend) -> None:
    request = await approved(backend)
    store = backend.store
    assert await commit(backend, "approval.executing", request.id, store.claim(request.id, "owner-a"))
    other = store.interrupt(request.id, "stopped", owner="owner-b", giving_up=True)
    assert not await commit(backend, "approval.interrupted", request.id, other)  # not theirs to give up
    mine = store.interrupt(request.id, "stopped", owner="owner-a", giving_up=True)
    assert await commit(backend, "approval.interrupted", request.id, mine)
    assert (await status(backend, request.id)).status is ApprovalStatus.INTERRUPTED
    result = {"code": "ok", "message": "it finished after all"}
    finish = store.finish(request.id, "owner-a", ApprovalStatus.SUCCEEDED, result)
    assert await commit(backend, "approval.succeeded", request.id, finish)  # the real result is not lost
    done = await status(backend, request.id)
    assert (done.status, done.result, done.status_reason) == (ApprovalStatus.SUCCEEDED, result, None)


# --- closing: expiry and cancellation ---------------------------------------------------------


@pytest.mark.parametrize("stage", ["pending", "approved"])
async def test_a_request_that_has_not_run_can_be_cancelled_with_its_reason(backend: Backend, stage: str) -> None:
    request = await (created(backend) if stage == "pending" else approved(backend))
    store = backend.store
    not_run = frozenset({ApprovalStatus.PENDING, ApprovalStatus.APPROVED})
    cancel = store.close(request.id, not_run, ApprovalStatus.CANCELLED, "no longer needed (cancelled by bob)")
    assert await commit(backend, "approval.cancelled", request.id, cancel)
    cancelled = await status(backend, request.id)
    assert (cancelled.status, cancelled.status_reason) == (
        ApprovalStatus.CANCELLED,
        "no longer needed (cancelled by bob)",
    )
    assert cancelled.finished_at is not None
    assert not await commit(backend, "approval.executing", request.id, store.claim(request.id, "owner-a"))


async def test_a_claim_and_a_cancellation_at_once_one_wins(backend: Backend) -> None:
    request = await approved(backend)
    store = backend.store
    not_run = frozenset({ApprovalStatus.PENDING, ApprovalStatus.APPROVED})
    cancel = store.close(request.id, not_run, ApprovalStatus.CANCELLED, "stop")
    claim = store.claim(request.id, "owner-a")
    results = await all_at_once(
        lambda: commit(backend, "approval.cancelled", request.id, cancel),
        lambda: commit(backend, "approval.executing", request.id, claim),
    )
    assert sorted(results) == [False, True]
    assert (await status(backend, request.id)).status in (ApprovalStatus.CANCELLED, ApprovalStatus.EXECUTING)


async def test_a_running_request_cannot_be_cancelled_or_expired(backend: Backend) -> None:
    request = await approved(backend)
    store = backend.store
    assert await commit(backend, "approval.executing", request.id, store.claim(request.id, "owner-a"))
    not_run = frozenset({ApprovalStatus.PENDING, ApprovalStatus.APPROVED})
    for status_to in (ApprovalStatus.CANCELLED, ApprovalStatus.EXPIRED):
        closing = store.close(request.id, not_run, status_to, "too late")
        assert not await commit(backend, f"approval.{status_to.value}", request.id, closing)
    assert (await status(backend, request.id)).status is ApprovalStatus.EXECUTING


# --- faults ---------------------------------------------------------------------------------------


async def test_a_broken_store_fails_closed(backend: Backend) -> None:
    request = await approved(backend)
    store = backend.store
    await backend.breaks()
    with pytest.raises(PortcullisError) as reading:
        await store.get(request.id)
    assert reading.value.code.value == "audit_unavailable"
    with pytest.raises(AuditWriteError):  # nothing is claimed, so nothing can run
        await backend.audit.append(record("approval.executing", request.id), [store.claim(request.id, "owner-a")])
