"""The one place SQLite's exceptions are recognised: by their result code, never by their message.

Like httpx's `map_httpcore_exceptions`: everything above the SQLite stores sees only the typed
faults of `store/errors.py`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from gateway.store.errors import StoreBusy, StoreConflict, StoreCorrupt, StoreError, StoreUnavailable

_PRIMARY: dict[int, type[StoreError]] = {
    sqlite3.SQLITE_BUSY: StoreBusy,
    sqlite3.SQLITE_LOCKED: StoreBusy,
    sqlite3.SQLITE_NOTADB: StoreCorrupt,
    sqlite3.SQLITE_CORRUPT: StoreCorrupt,
    sqlite3.SQLITE_CANTOPEN: StoreUnavailable,
    sqlite3.SQLITE_IOERR: StoreUnavailable,
    sqlite3.SQLITE_FULL: StoreUnavailable,
    sqlite3.SQLITE_READONLY: StoreUnavailable,
    sqlite3.SQLITE_PERM: StoreUnavailable,
    sqlite3.SQLITE_AUTH: StoreUnavailable,
    sqlite3.SQLITE_NOMEM: StoreUnavailable,
}
_EXTENDED: dict[int, type[StoreError]] = {
    sqlite3.SQLITE_CONSTRAINT_UNIQUE: StoreConflict,
    sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY: StoreConflict,
}


def typed(exc: sqlite3.Error | OSError, what: str) -> StoreError:
    """The typed fault for `exc`, its message saying what was being done (`audit write failed`)."""
    if isinstance(exc, OSError):  # the database's folder cannot be made, a file cannot be read
        return StoreUnavailable(f"{what}: {exc}", str(exc))
    code = getattr(exc, "sqlite_errorcode", None)
    name = getattr(exc, "sqlite_errorname", None)
    kind = StoreError
    if isinstance(code, int):
        kind = _EXTENDED.get(code) or _PRIMARY.get(code & 0xFF, StoreError)
    elif isinstance(exc, sqlite3.ProgrammingError):  # a connection closed under the caller
        kind = StoreUnavailable
    return kind(f"{what}: {exc}" + (f" ({name})" if name else ""), str(exc))


@contextmanager
def sqlite_errors(what: str) -> Iterator[None]:
    """Raise SQLite's (and the file system's) exceptions inside as typed `StoreError`s."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise typed(exc, what) from exc
