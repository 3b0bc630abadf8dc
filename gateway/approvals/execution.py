"""Running approved requests: each claimed under a lease, run once, and never left `executing`.

The claim (approved -> executing) is a compare-and-swap carrying this process's `owner` id
and a lease expiry, renewed while the call runs; another process never runs a claimed
request. The sweep expires requests not decided or not run in time, and marks a request
`interrupted` when its owner died (its lease ran out, or it is provably gone from this
machine): it is never run again, since it may or may not have taken effect. A gateway that
stops claims nothing more, lets its running calls finish for a while (`drain`), and marks
one still running `interrupted` at once.
"""

from __future__ import annotations

import logging

import anyio

from gateway.approvals.journal import QUEUE, Journal
from gateway.approvals.requests import ApprovalRequest, ApprovalStatus
from gateway.approvals.store import ApprovalStore
from gateway.audit import utc_now
from gateway.outcomes import PortcullisError
from gateway.ports import CurrentSnapshot, Door, Spawn
from gateway.store.errors import StaleState
from gateway.store.owner import Owner

logger = logging.getLogger(__name__)
DRAINED = "drained"
"""The wake-up key of a stopping gateway: a call this process was running has finished."""
DRAIN_SECONDS = 10.0
"""How long a stopping gateway lets the approved calls it is running finish before it interrupts them."""
INTERRUPTED = (
    "the gateway process running it stopped before it finished; it is not run again:"
    " check whether it took effect before asking again"
)


class ApprovalExecutor:
    """Claims, runs (through the `door`, as the requester) and sweeps approved requests, as `owner`."""

    def __init__(
        self, current: CurrentSnapshot, door: Door, store: ApprovalStore, journal: Journal, owner: str
    ) -> None:
        self._current = current
        self._door = door
        self._store = store
        self._journal = journal
        self.owner = owner
        self._in_flight = 0
        """Executions between their claim and their end (a stopping gateway waits for them)."""
        self._stopping = False

    async def run_approved(self, spawn: Spawn | None = None) -> None:
        """Claim and run every approved request whose window is open; with `spawn`, each in its own task
        (so one slow tool does not hold up the queue; the claim keeps each to one run)."""
        for request in await self._store.find(ApprovalStatus.APPROVED):
            if spawn is None:
                await self._execute(request)
            else:
                spawn(self._execute_guarded, request)

    async def _execute_guarded(self, request: ApprovalRequest) -> None:
        """In a background task a failure must not take the gateway down: it is logged, the request stays."""
        try:
            await self._execute(request)
        except Exception:
            logger.exception("running approved request %s failed", request.id)

    async def drain(self, seconds: float = DRAIN_SECONDS) -> None:
        """Before stopping: claim nothing more, and let the calls this process runs finish (up to `seconds`).

        One still running after that is interrupted as the gateway stops (and marked so at once).
        """
        self._stopping = True
        with anyio.move_on_after(seconds):
            while self._in_flight:
                await self._journal.wakeups.event(DRAINED).wait()

    async def _execute(self, request: ApprovalRequest) -> None:
        if self._stopping:
            return  # a stopping gateway leaves it to the next one
        self._in_flight += 1  # from before the claim: a stop that begins meanwhile waits for this run
        try:
            await self._claim_and_run(request)
        finally:
            self._in_flight -= 1
            self._journal.wakeups.notify(DRAINED)

    async def _claim_and_run(self, request: ApprovalRequest) -> None:
        journal = self._journal
        live = self._current.snapshot.catalog.get(request.tool)
        if live is None or live[0].definition_hash != request.definition_hash:
            reason = "the tool's definition changed"
            record = journal.record("approval.cancelled", request, detail={"reason": reason})
            approved = frozenset({ApprovalStatus.APPROVED})
            if await journal.commit(record, self._store.close(request.id, approved, ApprovalStatus.CANCELLED, reason)):
                journal.changed(request.id)
            return
        detail = {"owner": self.owner, "lease_seconds": self._store.lease_seconds}
        if not await journal.commit(
            journal.record("approval.executing", request, detail=detail), self._store.claim(request.id, self.owner)
        ):
            return  # another executor claimed it, or it expired or was cancelled meanwhile
        journal.changed(request.id)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._keep_lease, request)
                outcome = await self._door.run_approved(request)
                tasks.cancel_scope.cancel()
        except BaseException:
            # Stopped mid-call (shutdown, a fault): say so now rather than when the lease runs out.
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self._give_up(request)
            raise
        result = {
            "code": outcome.code.value,
            "message": outcome.message,
            "content": outcome.content,
            "structured": outcome.structured,
            "audit_id": outcome.audit_id,
        }
        status = ApprovalStatus.SUCCEEDED if outcome.ok else ApprovalStatus.FAILED
        record = journal.record(f"approval.{status.value}", request, detail={"outcome": outcome.code.value})
        if not await journal.commit(record, self._store.finish(request.id, self.owner, status, result)):
            logger.error("approved request %s ran (%s) but is no longer this process's to finish", request.id, status)
        journal.changed(request.id)

    async def _keep_lease(self, request: ApprovalRequest) -> None:
        """Renew the claim while the call runs (bookkeeping, no record); a store fault is retried, never fatal."""
        while True:
            await anyio.sleep(self._store.lease_seconds / 3)
            try:
                await self._journal.audit.write([self._store.renew(request.id, self.owner)])
            except StaleState:
                logger.error("lost the lease on approved request %s while running it", request.id)
                return
            except PortcullisError:
                logger.warning("could not renew the lease on approved request %s", request.id, exc_info=True)

    async def _give_up(self, request: ApprovalRequest) -> None:
        journal = self._journal
        record = journal.record("approval.interrupted", request, detail={"owner": self.owner, "stopped": True})
        try:
            change = self._store.interrupt(request.id, INTERRUPTED, owner=self.owner, giving_up=True)
            if await journal.commit(record, change):
                journal.changed(request.id)
        except PortcullisError:
            logger.exception("could not mark approved request %s interrupted; its lease will run out", request.id)

    async def sweep(self) -> None:
        """Expire requests not decided or not run in time, and mark runs whose owner died interrupted (once each)."""
        now = utc_now()
        for request in await self._store.find(ApprovalStatus.PENDING):
            if request.expires_at and request.expires_at < now:
                await self._expire(request, ApprovalStatus.PENDING, "not decided in time")
        for request in await self._store.find(ApprovalStatus.APPROVED):
            if request.execute_by and request.execute_by < now:
                await self._expire(request, ApprovalStatus.APPROVED, "not run in time")
        for request in await self._store.find(ApprovalStatus.EXECUTING):
            holder = request.lease_owner
            if holder == self.owner:
                continue  # ours, and we are alive: our own renewals keep it
            gone = [holder] if holder and Owner(holder).gone() else []
            if gone or request.lease_expires_at is None or request.lease_expires_at < now:
                detail = {"owner": holder, "lease_expires_at": request.lease_expires_at, "owner_gone": bool(gone)}
                record = self._journal.record("approval.interrupted", request, detail=detail)
                change = self._store.interrupt(request.id, INTERRUPTED, owner=self.owner, gone=gone)
                if await self._journal.commit(record, change):
                    self._journal.changed(request.id)

    async def _expire(self, request: ApprovalRequest, expected: ApprovalStatus, reason: str) -> None:
        record = self._journal.record("approval.expired", request, detail={"reason": reason})
        change = self._store.close(request.id, frozenset({expected}), ApprovalStatus.EXPIRED, reason)
        if await self._journal.commit(record, change):
            self._journal.changed(request.id)

    def queue_changed(self) -> anyio.Event:
        """Set when a decision in this process may have made work for the queue (take it before a pass)."""
        return self._journal.wakeups.event(QUEUE)

    async def idle(self, changed: anyio.Event) -> None:
        """Until `changed` is set, or `approvals.poll_seconds` passed (the backstop for other processes)."""
        with anyio.move_on_after(self._current.snapshot.config.approvals.poll_seconds):
            await changed.wait()
