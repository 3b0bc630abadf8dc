"""Store faults, typed once, whatever the backend::

    PortcullisError
     +-- AuditWriteError            (outcomes.py) the audit record could not be committed
     |    +-- StoreError            a store could not do what was asked: the call is refused
     |         +-- StoreUnavailable cannot be opened or reached: no such folder, no permission,
     |         |                    an I/O error, a full disk, a read-only file, a server that is down
     |         +-- StoreBusy        another writer held the lock longer than this one may wait
     |         +-- StoreCorrupt     not a database, or a damaged one
     |         +-- StoreConflict    a row that must be unique exists already
     +-- StaleState                 a compare-and-swap found the state changed: nothing was written

Each backend maps its driver's exceptions to these in one module (`store/sqlite/errors.py`, as
httpx maps httpcore's), so no caller ever matches an error message. A `StoreError` is an
`AuditWriteError` because every store shares the audit log's database and its transactions: a
call whose state cannot be read or written is refused like one whose record cannot be
(`audit_unavailable`), never run on a guess. `StaleState` is not: it is the answer of a
compare-and-swap that lost a race, which the caller handles (`not_pending`, a run taken over).
"""

from __future__ import annotations

from typing import ClassVar

from gateway.outcomes import AuditWriteError, Outcome, PortcullisError


class StoreError(AuditWriteError):
    """A store could not do what was asked (the base of the typed faults; also an unclassified one)."""

    kind: ClassVar[str] = "error"
    """Machine-readable: `unavailable`, `busy`, `corrupt`, `conflict`, or `error`."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason if reason is not None else message
        """What the store itself said (`file is not a database`), for a message to a person."""

    def refusal(self, stage: str, why: str) -> Outcome:
        """The refusal of a call the store could not answer for: `why` says what was missing
        (`its rate limits could not be checked`)."""
        message = f"the call was refused: {why} ({self.kind}: {self})"
        return Outcome.refuse(self.code, message, stage=stage, store_error=self.kind)


class StoreUnavailable(StoreError):
    """The store cannot be opened or reached."""

    kind = "unavailable"


class StoreBusy(StoreError):
    """Another writer held the lock longer than this one may wait."""

    kind = "busy"


class StoreCorrupt(StoreError):
    """The store is not a database, or a damaged one."""

    kind = "corrupt"


class StoreConflict(StoreError):
    """A row that must be unique exists already."""

    kind = "conflict"


class StaleState(PortcullisError):
    """A compare-and-swap found the state changed: nothing was written (neither the record nor its changes)."""

    kind: ClassVar[str] = "stale"
