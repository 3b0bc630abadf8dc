"""The one place psycopg's exceptions are recognised: by SQLSTATE class, never by their message.

Like `store/sqlite/errors.py`: everything above the PostgreSQL stores sees only the typed faults
of `store/errors.py`. A server that is down, a pool with no free connection, a read-only
replica, a full disk or a missing schema are `StoreUnavailable`; a lock or statement timeout,
a deadlock or a serialization failure is `StoreBusy`; a unique violation is `StoreConflict`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors as pg
from psycopg_pool import PoolTimeout

from gateway.store.errors import StoreBusy, StoreConflict, StoreCorrupt, StoreError, StoreUnavailable

_BY_CLASS: dict[str, type[StoreError]] = {
    "08": StoreUnavailable,  # connection exception
    "28": StoreUnavailable,  # invalid authorization
    "3D": StoreUnavailable,  # no such database
    "53": StoreUnavailable,  # insufficient resources: disk full, out of memory, too many connections
    "57": StoreUnavailable,  # operator intervention: shutdown, admin termination
    "58": StoreUnavailable,  # system error: I/O
    "XX": StoreCorrupt,  # internal error: data or index corrupted
    "40": StoreBusy,  # transaction rollback: serialization failure, deadlock
    "55": StoreBusy,  # object not in prerequisite state: lock not available
}
_BY_STATE: dict[str, type[StoreError]] = {
    "23505": StoreConflict,  # unique_violation
    "57014": StoreBusy,  # query_canceled: statement_timeout or lock_timeout
    "25006": StoreUnavailable,  # read_only_sql_transaction: a standby, or a read-only database
    "42P01": StoreUnavailable,  # undefined_table: the schema was never created
    "42501": StoreUnavailable,  # insufficient_privilege
}

SCHEMA_HINT = "run `portcullis db init` to create the schema"


def typed(exc: psycopg.Error | PoolTimeout | OSError, what: str) -> StoreError:
    """The typed fault for `exc`, its message saying what was being done (`audit write failed`)."""
    if isinstance(exc, PoolTimeout):
        return StoreUnavailable(f"{what}: no database connection became free in time ({exc})", str(exc))
    if isinstance(exc, OSError):
        return StoreUnavailable(f"{what}: {exc}", str(exc))
    state = exc.sqlstate or ""
    kind = _BY_STATE.get(state) or _BY_CLASS.get(state[:2])
    if kind is None:
        kind = StoreUnavailable if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) else StoreError
    reason = str(exc).strip() or type(exc).__name__
    hint = f"; {SCHEMA_HINT}" if isinstance(exc, pg.UndefinedTable) else ""
    return kind(f"{what}: {reason}" + (f" ({state})" if state else "") + hint, reason)


@contextmanager
def pg_errors(what: str) -> Iterator[None]:
    """Raise psycopg's (and the pool's) exceptions inside as typed `StoreError`s."""
    try:
        yield
    except (psycopg.Error, PoolTimeout, OSError) as exc:
        raise typed(exc, what) from exc
