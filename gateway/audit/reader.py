"""The read port of the audit history: what `audit query|verify|stats|export|tail`, `policy replay`,
`plan status|list` and the auditors' tool read, whichever database keeps it.

`SqliteAuditReader` reads the SQLite file; `store/postgres/audit_reads.py` the shared PostgreSQL
database. Both answer with the same values (a record's body is the JSON that was hashed, times are
the same ISO text), so every command prints the same thing on either, and both raise the typed
faults of `store/errors.py`, never their driver's. A reader only reads: it never starts a writer,
settles a salt or migrates a schema.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

from gateway.audit.query import AuditQuery, open_readonly, query_records
from gateway.store.sqlite.errors import sqlite_errors

if TYPE_CHECKING:
    from gateway.store.plan_runs import RunRecord

COLUMNS = ("ts", "event", "call_id", "subject", "tool", "decision", "outcome")
"""The columns kept beside each record's body (indexed copies of its fields), in `StoredRecord.columns` order."""
STATS = {
    "by_decision": (("decision",), ""),
    "by_outcome": (("outcome",), ""),
    "busiest_tools": (("tool",), ""),
    "busiest_subjects": (("subject",), ""),
    "top_denied": (("subject", "tool"), "AND decision = 'deny'"),
}
"""`audit stats`' sections: the columns each groups tool calls by, and its extra condition."""


@dataclass(frozen=True)
class StoredRecord:
    """One record as stored: `body` is the JSON that was hashed; `columns` its copies in `COLUMNS` order."""

    seq: int
    prev_hash: str
    hash: str
    body: str
    columns: tuple[Any, ...]


class AuditReader(Protocol):
    """The audit history (and the plan runs it tells of), read-only. Raises a `StoreError` when it cannot answer."""

    @property
    def where(self) -> str:
        """Where the history is, for messages (a path, or a DSN with its password hidden)."""
        ...

    def records(self, query: AuditQuery) -> list[dict[str, Any]]:
        """A page of matching records, each with its `seq` and `hash` (see `AuditQuery`)."""
        ...

    def entries(self, *, event: str | None = None, since: str | None = None, after: int = 0) -> Iterator[StoredRecord]:
        """Records after sequence number `after` in order, of `event` only and from the ISO time `since` if given.

        Streamed: a long log is never held in memory.
        """
        ...

    def latest(self, count: int) -> list[StoredRecord]:
        """The last `count` records, oldest first."""
        ...

    def last_seq(self) -> int:
        """The last record's sequence number (0 for an empty log): how many an intact log holds."""
        ...

    def count(self, event: str) -> int:
        """How many records of `event` the log holds."""
        ...

    def hashes(self, seqs: Iterable[int]) -> dict[int, str]:
        """The chain's hash at each of `seqs` that exists (point lookups)."""
        ...

    def stats(self, since: str, top: int) -> dict[str, list[dict[str, Any]]]:
        """For each of `STATS`' sections, the `top` groups of tool calls from the ISO time `since`, busiest
        first (ties in the order of their values, a missing value first), each with its `calls`."""
        ...

    def findings(self) -> list[str]:
        """What `audit verify` warns of in the database besides the chain (a salt left in clear)."""
        ...

    def plan_run(self, run_id: str) -> RunRecord | None: ...

    def plan_runs(self, limit: int) -> list[dict[str, Any]]:
        """The latest plan runs, newest first: id, created_at, subject, goal, status, finished_at."""
        ...

    def close(self) -> None:
        """Release what the reader holds (not a pool it was given: that is its owner's)."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class SqliteAuditReader:
    """The history in the SQLite file `path`, on one read-only connection that sees every process's commits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with sqlite_errors(f"cannot open the audit log at {path}"):
            self._connection = open_readonly(path)

    @property
    def where(self) -> str:
        return str(self.path)

    def records(self, query: AuditQuery) -> list[dict[str, Any]]:
        with self._errors():
            return query_records(self._connection, query)

    def entries(self, *, event: str | None = None, since: str | None = None, after: int = 0) -> Iterator[StoredRecord]:
        clauses: list[str] = ["seq > ?"]
        params: list[Any] = [after]
        if event is not None:
            clauses.append("event = ?")
            params.append(event)
        if since is not None:
            clauses.append("ts >= ?")
            params.append(since)
        with self._errors():
            yield from map(
                _stored, self._connection.execute(f"{_SELECT} WHERE {' AND '.join(clauses)} ORDER BY seq", params)
            )

    def latest(self, count: int) -> list[StoredRecord]:
        with self._errors():
            rows = self._connection.execute(f"{_SELECT} ORDER BY seq DESC LIMIT ?", (count,)).fetchall()
        return [_stored(row) for row in reversed(rows)]

    def last_seq(self) -> int:
        with self._errors():
            return int(self._connection.execute("SELECT COALESCE(MAX(seq), 0) FROM audit_log").fetchone()[0])

    def count(self, event: str) -> int:
        with self._errors():
            return int(
                self._connection.execute("SELECT COUNT(*) FROM audit_log WHERE event = ?", (event,)).fetchone()[0]
            )

    def hashes(self, seqs: Iterable[int]) -> dict[int, str]:
        found: dict[int, str] = {}
        with self._errors():
            for seq in sorted(set(seqs)):
                row = self._connection.execute("SELECT hash FROM audit_log WHERE seq = ?", (seq,)).fetchone()
                if row is not None:
                    found[seq] = str(row[0])
        return found

    def stats(self, since: str, top: int) -> dict[str, list[dict[str, Any]]]:
        report: dict[str, list[dict[str, Any]]] = {}
        with self._errors():
            for section, (names, extra) in STATS.items():
                columns = ", ".join(names)
                order = ", ".join(f"{name} NULLS FIRST" for name in names)
                rows = self._connection.execute(
                    f"SELECT {columns}, COUNT(*) AS n FROM audit_log WHERE event = 'tool.call' AND ts >= ? {extra}"
                    f" GROUP BY {columns} ORDER BY n DESC, {order} LIMIT ?",
                    (since, top),
                ).fetchall()
                report[section] = [{**dict(zip(names, row[:-1], strict=True)), "calls": row[-1]} for row in rows]
        return report

    def findings(self) -> list[str]:
        from gateway.audit.salt import stored_salt_finding

        finding = stored_salt_finding(self._connection)
        return [finding] if finding else []

    def plan_run(self, run_id: str) -> RunRecord | None:
        from gateway.store.sqlite.plan_runs import read_run

        with sqlite_errors(f"cannot read plan runs at {self.path}"):
            return read_run(self._connection, run_id)

    def plan_runs(self, limit: int) -> list[dict[str, Any]]:
        from gateway.store.sqlite.plan_runs import list_runs

        with sqlite_errors(f"cannot read plan runs at {self.path}"):
            return list_runs(self._connection, limit)

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _errors(self) -> AbstractContextManager[None]:
        return sqlite_errors(f"cannot read the audit log at {self.path}")


_SELECT = f"SELECT seq, prev_hash, hash, body, {', '.join(COLUMNS)} FROM audit_log"


def _stored(row: sqlite3.Row | tuple[Any, ...]) -> StoredRecord:
    seq, prev_hash, digest, body, *columns = row
    return StoredRecord(int(seq), str(prev_hash), str(digest), str(body), tuple(columns))
