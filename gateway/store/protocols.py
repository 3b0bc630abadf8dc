"""What each store must do, whatever keeps it (SQLite today, PostgreSQL for replicas).

Every implementation passes the one contract suite in `tests/contract/`. The rules they share:

- **Atomic with the record.** A state change is a `Change` the store builds and the audit log
  of the same backend commits with the record of it (`AuditLog.append(record, [change])`).
- **Compare-and-swap.** A transition names the state it expects (a run still `running` and
  still this owner's); if another process moved it first, the append raises `StaleState` and
  writes nothing, neither the change nor its record.
- **Leases.** Work one process does for everyone (a plan run) is held under an owner and an
  expiry that the owner renews; another process takes it over (marks it interrupted) only
  once the lease has run out, or its owner is provably gone (`owner.Owner.gone`).
- **Fail closed.** A store that cannot answer raises a typed `StoreError` (errors.py); the
  caller refuses the call, never decides it on a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gateway.audit.records import AuditRecord
    from gateway.store.changes import Change, Statement
    from gateway.store.plan_runs import RunLease, RunRecord, RunStatus, StepRecord


@dataclass(frozen=True)
class ChainEntry:
    """One record of the audit chain as stored: its body is what was hashed."""

    seq: int
    prev_hash: str
    hash: str
    body: str


class AuditLog(Protocol):
    """The append-only, hash-chained log, and the transaction every state change commits in.

    One writer per process groups commits; appends from several processes extend one chain.
    """

    @property
    def salt(self) -> str:
        """What masks hashed argument values (see audit/salt.py)."""
        ...

    async def append(
        self, record: AuditRecord, changes: Sequence[Change | Statement] = (), *, durable: bool = True
    ) -> int:
        """Commit `record` and `changes` in one transaction; the record's sequence number.

        Raises `StaleState` (nothing written) when a compare-and-swap finds the state moved,
        and a `StoreError` (an `AuditWriteError`) when the log cannot be written.
        `durable=False` may return before the commit reaches the disk; a later durable commit covers it.
        """
        ...

    async def write(self, changes: Sequence[Change | Statement], *, durable: bool = False) -> None:
        """Commit state without history: bookkeeping that is no event (a lease renewed). Raises like `append`."""
        ...

    async def head(self) -> tuple[int, str]:
        """The last record's sequence number and hash; `(0, GENESIS_HASH)` for an empty log."""
        ...

    async def chain(self, after: int = 0, limit: int = 1000) -> list[ChainEntry]:
        """Up to `limit` records after sequence number `after`, in order."""
        ...


class PlanRunStore(Protocol):
    """Plan runs and their steps. Writes are changes for the audit log; reads see every process's commits."""

    @property
    def lease_seconds(self) -> float:
        """How long a run stays its owner's without a renewal."""
        ...

    def start(
        self,
        run_id: str,
        *,
        owner: str,
        subject: str,
        tenant: str | None,
        session: str | None,
        plan: dict[str, Any],
        plan_hash: str,
        approval_id: str | None,
    ) -> Change:
        """A new run, `running` under `owner`'s fresh lease, with its steps `pending`."""
        ...

    def step(self, run_id: str, step: StepRecord, owner: str) -> Change:
        """Set a step's state and renew the lease; stale unless the run is still running and `owner`'s."""
        ...

    def finish(self, run_id: str, status: RunStatus, result: dict[str, Any], owner: str) -> Change:
        """End the run with `status` (`interrupted` also ends its unfinished steps); stale unless it is
        still running and `owner`'s."""
        ...

    def renew(self, owner: str, run_id: str | None = None) -> Change:
        """Extend the lease of `run_id` (stale unless it is still `owner`'s), or of every run `owner` holds."""
        ...

    def interrupt(self, run_ids: Sequence[str], gone: Sequence[str] = ()) -> Change:
        """Mark `run_ids` and their unfinished steps interrupted: another process's work that nobody renews.

        Stale unless every one is still running with a lease that ran out or an owner in `gone`.
        """
        ...

    async def get(self, run_id: str) -> RunRecord | None: ...

    async def running(self) -> list[RunLease]:
        """Every run still `running`, with its owner and lease."""
        ...

    async def expired(self, gone: Sequence[str] = ()) -> list[str]:
        """Runs that may be interrupted: running, with a lease that ran out or an owner in `gone`."""
        ...


@dataclass(frozen=True)
class Bucket:
    """One token bucket: `capacity` tokens, refilled at `per_second`; `key` names it in the store."""

    key: str
    capacity: float
    per_second: float


class RateBuckets(Protocol):
    """Token buckets that every process sharing the store draws from."""

    async def take(self, buckets: Sequence[Bucket], consume: bool = True) -> tuple[int, float] | None:
        """All or nothing, atomically: None if every bucket holds a token (one is taken from each when
        `consume`); else nothing is taken and the answer is (the index of the first empty bucket,
        the seconds until it holds a token). Raises a `StoreError` when the store cannot answer."""
        ...


class FlowLabels(Protocol):
    """What each session has read (labels, with the calls that gave them), bounded in sessions and links."""

    async def record(self, session: str, labels: frozenset[str], call_id: str) -> None:
        """`call_id` gave `session` each of `labels`. Raises a `StoreError` when it cannot be kept."""
        ...

    async def reads(self, session: str, labels: tuple[str, ...]) -> list[str] | None:
        """The call ids that gave `session` every one of `labels`, or None if one is missing. Raises a `StoreError`."""
        ...
