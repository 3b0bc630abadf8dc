"""The audit history on PostgreSQL: the `AuditReader` port (audit/reader.py) and the `AuditReads` port
of the auditors' tool, answering exactly what the SQLite reader answers.

The table holds the same text as SQLite's (migrations/0001_audit.sql): `ts` is the record's ISO
time, so comparing it as text orders it; `body` is the hashed JSON, read through `audit_field`,
which the tenant, approval and plan-run indexes are built on and which never fails on a `\\u0000`.
SQLite's GLOB becomes an anchored, case-sensitive regular expression (`glob_regex`), every other
character escaped, so a filter value is never read as SQL or as a pattern it did not say. Ties in
`stats` are ordered by byte value (`COLLATE "C"`), as SQLite orders them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio.to_thread
from psycopg import Connection
from psycopg_pool import ConnectionPool

from gateway.audit.query import HASHED_PREFIX, AuditQuery, is_glob, parse_since
from gateway.audit.reader import COLUMNS, STATS, StoredRecord
from gateway.store.postgres.connect import redact
from gateway.store.postgres.errors import pg_errors

if TYPE_CHECKING:
    from gateway.store.plan_runs import RunRecord

BATCH = 1000
"""Records fetched per round trip when streaming the log (keyset pages on `seq`: no cursor held open)."""
_SELECT = f"SELECT seq, prev_hash, hash, body, {', '.join(COLUMNS)} FROM audit_log"
_REGEX_SPECIAL = frozenset("\\^$.|?*+()[]{}")
_CLASS_SPECIAL = frozenset("\\[]^")
_TEXT = f"""(
    strpos(lower(audit_field(body, 'rule')), %(text)s) > 0
    OR strpos(lower(audit_field(body, 'message')), %(text)s) > 0
    OR EXISTS (
        SELECT 1 FROM jsonb_path_query(
            replace(body, '\\u0000', '\\ufffd')::jsonb, 'strict $.arguments.**', '{{}}', true
        ) AS leaf
        WHERE jsonb_typeof(leaf) IN ('string', 'number')
        AND NOT (jsonb_typeof(leaf) = 'string' AND starts_with(leaf #>> '{{}}', '{HASHED_PREFIX}'))
        AND strpos(lower(leaf #>> '{{}}'), %(text)s) > 0
    )
)"""
"""Free text in the rule, the message, or an argument value recorded as it was (a salted hash is not text).

Like SQLite's `json_tree` walk: every string and number at any depth under `arguments`; a `\\u0000` is
read as U+FFFD (as `audit_field` does), so one such record cannot break the search."""


def glob_regex(pattern: str) -> str | None:
    """SQLite's GLOB `pattern` as an anchored POSIX regular expression; None if it matches nothing.

    `*` is any text, `?` one character, `[...]` a set (`[^...]` its complement, `a-z` a range, a `]`
    first in the set is itself); every other character stands for itself. An unclosed `[` matches
    nothing, as in SQLite.
    """
    out = ["^"]
    i, size = 0, len(pattern)
    while i < size:
        char = pattern[i]
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            j = i + 1
            negate = j < size and pattern[j] == "^"
            if negate:
                j += 1
            start = j
            if j < size and pattern[j] == "]":
                j += 1
            while j < size and pattern[j] != "]":
                j += 1
            if j >= size:
                return None
            members = "".join("\\" + c if c in _CLASS_SPECIAL else c for c in pattern[start:j])
            out.append(f"[{'^' if negate else ''}{members}]")
            i = j
        else:
            out.append("\\" + char if char in _REGEX_SPECIAL else char)
        i += 1
    out.append("$")
    return "".join(out)


class PgAuditReads:
    """The history in the PostgreSQL database `pool` connects to; every query sees every replica's commits.

    The pool is its owner's (the stores', or the command's `open_reads`): `close` leaves it open.
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    @property
    def where(self) -> str:
        conninfo = self._pool.conninfo
        return redact(conninfo) if isinstance(conninfo, str) else "the PostgreSQL database"

    # --- the auditors' tool (`AuditReads`) ------------------------------------------

    async def audit_records(self, query: AuditQuery) -> list[dict[str, Any]]:
        return await anyio.to_thread.run_sync(self.records, query)

    # --- `AuditReader` ----------------------------------------------------------------

    def records(self, query: AuditQuery) -> list[dict[str, Any]]:
        """A page of matching records, newest or oldest first; see `query.query_records` for the filters."""
        clauses, params = _filters(query)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params["limit"] = query.limit
        params["offset"] = (max(query.page, 1) - 1) * query.limit
        sql = f"SELECT seq, hash, body FROM audit_log {where} ORDER BY seq DESC LIMIT %(limit)s OFFSET %(offset)s"
        rows = self._fetch(sql, params)
        records = [{**_json(body), "seq": seq, "hash": digest} for seq, digest, body in rows]
        return records if query.newest_first else list(reversed(records))

    def entries(self, *, event: str | None = None, since: str | None = None, after: int = 0) -> Iterator[StoredRecord]:
        clauses = ["seq > %(after)s"]
        params: dict[str, Any] = {"after": after, "batch": BATCH}
        if event is not None:
            clauses.append("event = %(event)s")
            params["event"] = event
        if since is not None:
            clauses.append("ts >= %(since)s")
            params["since"] = since
        sql = f"{_SELECT} WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT %(batch)s"
        while True:
            rows = self._fetch(sql, params)
            yield from map(_stored, rows)
            if len(rows) < BATCH:
                return
            params["after"] = rows[-1][0]

    def latest(self, count: int) -> list[StoredRecord]:
        rows = self._fetch(f"{_SELECT} ORDER BY seq DESC LIMIT %(count)s", {"count": count})
        return [_stored(row) for row in reversed(rows)]

    def last_seq(self) -> int:
        return int(self._fetch("SELECT COALESCE(MAX(seq), 0) FROM audit_log", {})[0][0])

    def count(self, event: str) -> int:
        return int(self._fetch("SELECT COUNT(*) FROM audit_log WHERE event = %(event)s", {"event": event})[0][0])

    def hashes(self, seqs: Iterable[int]) -> dict[int, str]:
        wanted = sorted(set(seqs))
        if not wanted:
            return {}
        rows = self._fetch("SELECT seq, hash FROM audit_log WHERE seq = ANY(%(seqs)s)", {"seqs": wanted})
        return {int(seq): str(digest) for seq, digest in rows}

    def stats(self, since: str, top: int) -> dict[str, list[dict[str, Any]]]:
        report: dict[str, list[dict[str, Any]]] = {}
        for section, (names, extra) in STATS.items():
            columns = ", ".join(names)
            order = ", ".join(f'{name} COLLATE "C" NULLS FIRST' for name in names)
            rows = self._fetch(
                f"SELECT {columns}, COUNT(*) AS n FROM audit_log"
                f" WHERE event = 'tool.call' AND ts >= %(since)s {extra}"
                f" GROUP BY {columns} ORDER BY n DESC, {order} LIMIT %(top)s",
                {"since": since, "top": top},
            )
            report[section] = [{**dict(zip(names, row[:-1], strict=True)), "calls": int(row[-1])} for row in rows]
        return report

    def findings(self) -> list[str]:
        """None: the salt never lived in this database (it was SQLite's `meta` that once held it)."""
        return []

    def plan_run(self, run_id: str) -> RunRecord | None:
        from gateway.store.postgres.plan_runs import read_run

        with pg_errors("cannot read plan runs"), self._pool.connection() as connection:
            return read_run(connection, run_id)

    def plan_runs(self, limit: int) -> list[dict[str, Any]]:
        from gateway.store.postgres.plan_runs import list_runs

        with pg_errors("cannot read plan runs"), self._pool.connection() as connection:
            return list_runs(connection, limit)

    def close(self) -> None:
        """Nothing to release: the pool is its owner's."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _fetch(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        with pg_errors("cannot read the audit log"), self._pool.connection() as connection:
            return _rows(connection, sql, params)


def _rows(connection: Connection[Any], sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    return list(connection.execute(sql, params).fetchall())


def _filters(query: AuditQuery) -> tuple[list[str], dict[str, Any]]:
    """WHERE clauses and their named parameters: the same filters as SQLite's `query._filters`."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    for column in ("subject", "tool", "decision", "outcome", "event", "call_id"):
        value = getattr(query, column)
        if value is None:
            continue
        if column in ("tool", "event") and is_glob(value):
            regex = glob_regex(value)
            if regex is None:
                clauses.append("FALSE")
                continue
            clauses.append(f"{column} ~ %({column})s")
            params[column] = regex
        else:
            clauses.append(f"{column} = %({column})s")
            params[column] = value
    if query.since is not None:
        clauses.append("ts >= %(since)s")
        params["since"] = parse_since(query.since)
    if query.until is not None:
        clauses.append("ts < %(until)s")
        params["until"] = parse_since(query.until)
    for field in ("tenant", "approval_id", "plan_run_id"):
        value = getattr(query, field)
        if value is not None:
            clauses.append(f"audit_field(body, '{field}') = %({field})s")
            params[field] = value
    if query.text is not None:
        clauses.append(_TEXT)
        params["text"] = query.text.lower()
    return clauses, params


def _json(body: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(body)
    return value


def _stored(row: tuple[Any, ...]) -> StoredRecord:
    seq, prev_hash, digest, body, *columns = row
    return StoredRecord(int(seq), str(prev_hash), str(digest), str(body), tuple(columns))
