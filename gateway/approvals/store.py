"""The approval store: requests and decisions, and the changes that move them, each one a compare-and-swap.

Like every store (store/protocols.py), it builds changes and the audit log commits each
with the record that tells of it (`audit.append(record, [store.claim(...)])`): if another
approver, waiter or gateway process moved the request first, the append raises
`StaleState` and writes nothing. Executing is claimed with a lease (the owner and an
expiry the owner renews): a second executor never runs a claimed request, and one whose
owner died is marked `interrupted`, never silently run again.

`SqliteApprovalStore` (approvals/sqlite_store.py) is the implementation; any other
(PostgreSQL, for replicas) passes the same contract tests (tests/contract/test_approval_store.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from gateway.approvals.requests import ApprovalRequest, ApprovalStatus
    from gateway.store.changes import Change


@dataclass(frozen=True)
class Revision:
    """Approve-with-edits: the arguments that replace the request's, and its revisions with the old ones added."""

    arguments: dict[str, Any]
    arguments_digest: str
    revisions: list[dict[str, Any]]


@dataclass(frozen=True)
class Ballot:
    """One approver's decision as the store keeps it (what `approvals show` lists)."""

    approver: str
    decision: str
    comment: str | None
    ts: str


class ApprovalStore(Protocol):
    """Approval requests as one store holds them for every process that shares it.

    Reads see what every process committed; a store that cannot answer raises a typed
    `StoreError` (fail closed). Changes are stale (`StaleState` on append) unless the
    request is still in the state the change expects.
    """

    @property
    def lease_seconds(self) -> float:
        """How long a claim holds without a renewal."""
        ...

    async def get(self, request_id: str) -> ApprovalRequest | None: ...

    async def find(self, status: ApprovalStatus | None = None) -> list[ApprovalRequest]:
        """Requests in `status` (all when None), oldest first."""
        ...

    async def ballots(self, request_id: str) -> list[Ballot]: ...

    def create(self, request: ApprovalRequest) -> Change:
        """A new pending request (the pipeline commits it with the record of the call that needed it)."""
        ...

    def decide(
        self,
        request_id: str,
        approver: str,
        decision: Literal["approve", "deny"],
        comment: str | None,
        *,
        window_seconds: float,
        revision: Revision | None = None,
    ) -> Change:
        """Count one approver's decision on a pending request: a denial ends it (the comment is its reason);
        the approval that completes the quorum approves it, to run within `window_seconds`.

        Stale if it is no longer pending or this approver decided already (a revision clears earlier ballots).
        """
        ...

    def close(
        self, request_id: str, expected: frozenset[ApprovalStatus], status: ApprovalStatus, reason: str
    ) -> Change:
        """End a request that has not run (pending or approved) as expired or cancelled, saying why."""
        ...

    def claim(self, request_id: str, owner: str) -> Change:
        """approved -> executing under `owner`'s fresh lease, while its execution window is open."""
        ...

    def renew(self, request_id: str, owner: str) -> Change:
        """Extend `owner`'s lease (no record: bookkeeping); stale unless it is executing and still theirs."""
        ...

    def finish(self, request_id: str, owner: str, status: ApprovalStatus, result: dict[str, Any]) -> Change:
        """executing -> succeeded | failed, by the lease's owner only; an owner whose request was marked
        interrupted meanwhile still records the real result."""
        ...

    def interrupt(
        self, request_id: str, reason: str, *, owner: str, gone: Sequence[str] = (), giving_up: bool = False
    ) -> Change:
        """executing -> interrupted. As a sweep by `owner`: only another owner's request whose lease ran out
        or whose owner is in `gone`. `giving_up`: `owner`'s own request, at once (it stopped mid-call)."""
        ...
