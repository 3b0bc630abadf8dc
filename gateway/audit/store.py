"""The audit log on SQLite: one writer thread, one write connection, group commit.

Committing on the event loop stalls every other call for the length of an
fsync. Here callers hand a record to a dedicated thread and await a future;
the thread drains whatever is queued into one transaction, so light load adds
no delay and heavy load shares each fsync among many records
(../shared/notes/casbin-and-sqlite.md measured 3k/s one-per-commit against
17k/s grouped on these machines).

This is the SQLite `AuditLog` (store/protocols.py): the state changes of the
other stores (`Change`s, or bare `Statement`s) commit in a record's
transaction, and SQLite's exceptions reach callers as the typed faults of
store/errors.py. The same thread checkpoints the write-ahead log now and then
and at shutdown, so a reader that opens the file read-only or immutable (an
auditor's Datasette) sees every committed record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import anyio.to_thread

from gateway.audit.query import open_readonly
from gateway.audit.records import AuditRecord, chain_hash
from gateway.audit.salt import Salt, default_salt_file, resolve_salt
from gateway.audit.schema import APPROVAL_COLUMNS, GENESIS_HASH, PLAN_RUN_COLUMNS, SCHEMA
from gateway.outcomes import AuditWriteError
from gateway.store.changes import Change, Statement, statements_of
from gateway.store.errors import StaleState
from gateway.store.protocols import ChainEntry
from gateway.store.sqlite.errors import sqlite_errors, typed

__all__ = [
    "AuditStore",
    "StaleState",
    "Statement",
    "chain_head",
    "connect",
    "open_database",
    "refresh_statistics",
]

DIALECT = "sqlite"
T = TypeVar("T")
MAX_BATCH = 512


@dataclass
class _Job:
    record: AuditRecord | None
    """None for state without history (`write`)."""
    statements: Sequence[Statement]
    durable: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[int]


def _settle(outcomes: list[tuple[_Job, int | BaseException]]) -> None:
    """Resolve the jobs' futures on their event loops: one wake-up per loop for a whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], int | BaseException]]] = {}
    for job, outcome in outcomes:
        by_loop.setdefault(job.loop, []).append((job.future, outcome))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a loop that closed has nobody waiting
            loop.call_soon_threadsafe(_resolve, settled)


def _resolve(settled: list[tuple[asyncio.Future[int], int | BaseException]]) -> None:
    for future, outcome in settled:
        if future.done():  # the caller was cancelled; the record is committed all the same
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


logger = logging.getLogger(__name__)
STATISTICS_EVERY = 50_000
"""Records between checks of whether the query statistics need refreshing."""
_STOP = object()


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the settings every user of the database shares."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


def open_database(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the database with its schema; a typed `StoreError` if it cannot be."""
    with sqlite_errors(f"cannot open the audit database {path}"):
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = connect(path)
        try:
            connection.executescript(SCHEMA)
            migrate(connection)
        except BaseException:
            connection.close()
            raise
    return connection


_ADDED_COLUMNS = {"approval_requests": APPROVAL_COLUMNS, "plan_runs": PLAN_RUN_COLUMNS}


def migrate(connection: sqlite3.Connection) -> None:
    """Add the columns later releases added to a database made by an earlier one; idempotent.

    Checked again inside the write lock, so two processes opening an old database at once do not
    both add a column (the second would fail on a duplicate).
    """

    def missing() -> list[tuple[str, str, str]]:
        return [
            (table, column, kind)
            for table, columns in _ADDED_COLUMNS.items()
            for present in [{row[1] for row in connection.execute(f"PRAGMA table_info({table})")}]
            for column, kind in columns.items()
            if column not in present
        ]

    if not missing():  # the common case takes no write lock
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        for table, column, kind in missing():
            connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        connection.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        raise


def refresh_statistics(connection: sqlite3.Connection, growth: float = 1.25) -> None:
    """ANALYZE the log when it has no statistics or grew by `growth` since they were taken.

    Without statistics SQLite cannot tell a selective filter (one subject of 200) from a broad
    one (one tool of 12) and may read the wrong index; on a million records that is 100 ms
    instead of 4. It costs about 0.6 s per million records, so it runs at shutdown (and never on
    a call's path), and only when the log has grown.
    """
    try:
        count = connection.execute("SELECT COALESCE(MAX(seq), 0) FROM audit_log").fetchone()[0]
        if count < 1000:
            return
        row = None
        if connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone():
            row = connection.execute(
                "SELECT stat FROM sqlite_stat1 WHERE tbl = 'audit_log' AND idx = 'audit_subject'"
            ).fetchone()
        analysed = int(row[0].split()[0]) if row else 0
        if count >= analysed * growth:
            connection.execute("ANALYZE audit_log")
    except sqlite3.Error:
        logger.warning("could not refresh the audit log's query statistics", exc_info=True)


class AuditStore:
    """Appends records to the chained log; `append` returns the record's sequence number once durable."""

    def __init__(
        self,
        path: Path,
        write_timeout_seconds: float = 5.0,
        salt_file: Path | None = None,
        wal_checkpoint_seconds: float | None = 5.0,
    ) -> None:
        self.path = path
        self.write_timeout_seconds = write_timeout_seconds
        """How long a commit waits for another writer (the CLI) before the calls it carries are refused."""
        self.salt_file = salt_file or default_salt_file(path)
        """Where the salt is kept (outside the database) when `audit.salt` is not configured."""
        self.wal_checkpoint_seconds = wal_checkpoint_seconds
        """How often, while records are written, the writer moves the write-ahead log into the database
        file (None: only at shutdown), so that a read-only or immutable reader sees them."""
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.salt = ""

    def open(self, configured_salt: str | None = None) -> None:
        """Open the database, settle the salt (see audit/salt.py) and start the writer thread."""
        connection = open_database(self.path)
        try:
            salt = resolve_salt(connection, configured_salt, self.salt_file)
            _note_salt(connection, salt)
        except sqlite3.Error as exc:
            connection.close()
            raise typed(exc, f"cannot settle the audit salt ({self.salt_file})") from exc
        except (OSError, ValueError) as exc:
            connection.close()
            raise AuditWriteError(f"cannot settle the audit salt ({self.salt_file}): {exc}") from exc
        self.salt = salt.value
        self._thread = threading.Thread(
            target=self._run, args=(connection,), name="portcullis-audit-writer", daemon=True
        )
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def close(self) -> None:
        if self._thread is None:
            return
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    async def append(
        self, record: AuditRecord, changes: Sequence[Change | Statement] = (), *, durable: bool = True
    ) -> int:
        """Commit `record` (and `changes`, atomically with it); raise `AuditWriteError` if it cannot.

        The error is a typed `StoreError` (busy, unavailable, corrupt, conflict) when the database
        said why, and `StaleState` (nothing written) when a compare-and-swap found the state moved.
        `durable=False` commits without waiting for fsync (WAL, `synchronous=NORMAL`): the record
        is in the log and survives a crash of the gateway process, and the next durable commit
        makes it (and everything before it) survive a crash of the machine too. The pipeline uses
        it for the intent record, whose outcome record follows with a full fsync.
        """
        return await self._submit(record, statements_of(changes, DIALECT), durable)

    async def write(self, changes: Sequence[Change | Statement], *, durable: bool = False) -> None:
        """Commit state without a record (a lease renewed), through the same writer; raises like `append`."""
        await self._submit(None, statements_of(changes, DIALECT), durable)

    async def _submit(self, record: AuditRecord | None, statements: list[Statement], durable: bool) -> int:
        if not self.running:
            raise AuditWriteError("the audit writer is not running")
        loop = asyncio.get_running_loop()
        job = _Job(record, statements, durable, loop, loop.create_future())
        self._queue.put(job)
        return await job.future

    async def head(self) -> tuple[int, str]:
        """The last record's sequence number and hash, as committed by any process."""
        return await self._read(chain_head)

    async def chain(self, after: int = 0, limit: int = 1000) -> list[ChainEntry]:
        """Up to `limit` records after `after`, in order, as stored."""
        query = "SELECT seq, prev_hash, hash, body FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?"
        return await self._read(lambda c: [ChainEntry(*row) for row in c.execute(query, (after, limit))])

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        path = self.path

        def run() -> T:
            with sqlite_errors("cannot read the audit log"):
                connection = open_readonly(path)
                try:
                    return query(connection)
                finally:
                    connection.close()

        return await anyio.to_thread.run_sync(run)

    # --- the writer thread ---------------------------------------------------------

    def _run(self, connection: sqlite3.Connection) -> None:
        self._synchronous = "FULL"
        self._busy = -1
        written = 0
        period = self.wal_checkpoint_seconds
        checkpointed, dirty = time.monotonic(), False
        try:
            while True:
                wait = None if not dirty or period is None else max(0.0, checkpointed + period - time.monotonic())
                try:
                    first = self._queue.get(timeout=wait)
                except queue.Empty:
                    first = None
                if first is _STOP:
                    return
                if first is not None:
                    batch: list[_Job] = [first]  # type: ignore[list-item]
                    stopping = False
                    while len(batch) < MAX_BATCH:
                        try:
                            item = self._queue.get_nowait()
                        except queue.Empty:
                            break
                        if item is _STOP:
                            stopping = True
                            break
                        batch.append(item)  # type: ignore[arg-type]
                    self._commit(connection, batch)
                    dirty = True
                    written += len(batch)
                    if written >= STATISTICS_EVERY:
                        written = 0
                        refresh_statistics(connection)  # a long-running gateway's queries stay fast too
                    if stopping:
                        return
                if dirty and period is not None and time.monotonic() - checkpointed >= period:
                    self._checkpoint_wal(connection, wait=False)
                    checkpointed, dirty = time.monotonic(), False
        finally:
            self._fail_pending()
            refresh_statistics(connection)
            self._checkpoint_wal(connection, wait=True)
            connection.close()

    def _checkpoint_wal(self, connection: sqlite3.Connection, wait: bool) -> None:
        """Copy the write-ahead log into the database file and empty it (`wal_checkpoint(TRUNCATE)`).

        While serving it never waits (`wait=False`): a reader in the middle of a long query only
        leaves the rest for the next time, rather than holding up every call's record. At shutdown
        it waits as long as a commit would.
        """
        try:
            connection.execute(f"PRAGMA busy_timeout={int(self.write_timeout_seconds * 1000) if wait else 0}")
            self._busy = -1  # the next commit sets its own
            busy, frames, moved = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                logger.debug("WAL checkpoint incomplete (%s of %s frames): a reader is active", moved, frames)
        except sqlite3.Error:
            logger.warning("could not checkpoint the audit log's write-ahead log", exc_info=True)

    def _commit(self, connection: sqlite3.Connection, batch: list[_Job]) -> None:
        done: list[tuple[_Job, int]] = []
        failed: list[tuple[_Job, sqlite3.Error | StaleState]] = []
        synchronous = "FULL" if any(job.durable for job in batch) else "NORMAL"
        try:
            busy = int(self.write_timeout_seconds * 1000)
            if busy != self._busy:
                connection.execute(f"PRAGMA busy_timeout={busy}")
                self._busy = busy
            if synchronous != self._synchronous:
                connection.execute(f"PRAGMA synchronous={synchronous}")
                self._synchronous = synchronous
            connection.execute("BEGIN IMMEDIATE")
            # Read the head inside the write lock: another process (the CLI) may have appended.
            head = chain_head(connection)
            for job in batch:
                connection.execute("SAVEPOINT job")
                try:
                    if job.record is not None:
                        seq = head[0] + 1
                        body = job.record.body(seq)
                        digest = chain_hash(head[1], body)
                        _insert(connection, seq, job.record, body, head[1], digest)
                    for statement in job.statements:
                        cursor = connection.execute(statement.sql, statement.params)
                        if statement.expect_rows is not None and cursor.rowcount != statement.expect_rows:
                            raise StaleState(f"expected {statement.expect_rows} row(s), changed {cursor.rowcount}")
                except (sqlite3.Error, StaleState) as exc:
                    connection.execute("ROLLBACK TO job")
                    connection.execute("RELEASE job")
                    failed.append((job, exc))
                    continue
                connection.execute("RELEASE job")
                if job.record is not None:
                    head = (seq, digest)
                done.append((job, head[0]))
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            _settle([(job, _error(exc)) for job in batch])
            return
        _settle([*done, *((job, _error(exc)) for job, exc in failed)])

    def _fail_pending(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Job):
                _settle([(item, AuditWriteError("the audit writer stopped"))])


def chain_head(connection: sqlite3.Connection) -> tuple[int, str]:
    row = connection.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)


def _error(exc: sqlite3.Error | StaleState) -> BaseException:
    return exc if isinstance(exc, StaleState) else typed(exc, "audit write failed")


_INDEXED = ("ts", "event", "call_id", "subject", "tool", "decision", "outcome")
"""The record's fields that are also columns of `audit_log` (verify checks they match the body)."""


def _insert(connection: sqlite3.Connection, seq: int, record: AuditRecord, body: str, prev: str, digest: str) -> None:
    connection.execute(
        "INSERT INTO audit_log (seq, ts, event, call_id, subject, tool, decision, outcome,"
        " body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, *(getattr(record, column) for column in _INDEXED), body, prev, digest),
    )


def _note_salt(connection: sqlite3.Connection, salt: Salt) -> None:
    """Remember which salt hashes the log (by fingerprint); record `audit.salt_rotated` when it changed.

    Hashes written before that record and after it do not compare: an auditor sees where.
    """

    def noted() -> str | None:
        row = connection.execute("SELECT value FROM meta WHERE key = 'salt_id'").fetchone()
        return str(row[0]) if row else None

    if noted() == salt.id:  # the common case takes no write lock
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        previous = noted()
        if previous != salt.id:
            connection.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('salt_id', ?)", (salt.id,))
            head = chain_head(connection)
            if previous is not None and head[0] > 0:
                record = AuditRecord(
                    event="audit.salt_rotated",
                    outcome="ok",
                    message="hashed argument values before this record do not compare with those after it",
                    detail={"previous_salt_id": previous, "salt_id": salt.id, "source": salt.source},
                )
                body = record.body(head[0] + 1)
                _insert(connection, head[0] + 1, record, body, head[1], chain_hash(head[1], body))
        connection.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        raise
