"""Read the audit log with filters; readers use their own read-only connection."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
HASHED_PREFIX = "hmac-sha256:"
"""How a value recorded as a salted hash begins (`records.redact_arguments`)."""


class AuditQuery(BaseModel):
    model_config = ConfigDict(frozen=True)

    subject: str | None = None
    tool: str | None = None
    """A glob (`crm.*`)."""
    decision: str | None = None
    outcome: str | None = None
    event: str | None = None
    """An event or a glob (`policy.reload*`, `approval.*`)."""
    call_id: str | None = None
    tenant: str | None = None
    approval_id: str | None = None
    plan_run_id: str | None = None
    text: str | None = None
    """Free text (case-insensitive), searched in the matched rule, the message and the recorded argument
    values. A value recorded as a salted hash (secret and personal keys) is not searched: its hash is no text."""
    since: str | None = None
    """A duration back from now (`90s`, `15m`, `1h`, `7d`) or an ISO-8601 time."""
    until: str | None = None
    limit: int = 100
    page: int = 1
    newest_first: bool = False


def parse_since(value: str, now: datetime | None = None) -> str:
    """Return the ISO timestamp a `--since`/`--until` value means; raise ValueError if it means nothing."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(value.strip())
    if match:
        start = now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    else:
        try:
            start = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r}: expected a duration like 15m, 1h, 7d or an ISO-8601 time") from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
    return start.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def query_records(connection: sqlite3.Connection, query: AuditQuery) -> list[dict[str, Any]]:
    """A page of the latest matching records (newest or oldest first), each with its `seq` and `hash`.

    Subject, tool, decision, outcome, event, call and time are indexed columns; tenant, approval
    id and plan run are expression indexes on the record body; free text is a scan of the rows the
    other filters leave. A tool glob is expanded to the tool names it matches (a skip scan of the
    tool index), and each name's newest records are read through the index and merged: one
    ordered scan per name instead of sorting every match.
    """
    clauses, params = _filters(query)
    offset = (max(query.page, 1) - 1) * query.limit
    wanted = offset + query.limit
    if query.tool is not None and is_glob(query.tool):
        names = [row[0] for row in connection.execute(_TOOL_NAMES, (query.tool,))]
        where = " AND ".join(["tool = ?", *clauses])
        seqs: list[int] = []
        for name in names:
            found = connection.execute(
                f"SELECT seq FROM audit_log WHERE {where} ORDER BY seq DESC LIMIT ?", (name, *params, wanted)
            )
            seqs.extend(row[0] for row in found)
        page = sorted(seqs, reverse=True)[offset:wanted]
        marks = ", ".join("?" * len(page))
        rows = connection.execute(
            f"SELECT seq, hash, body FROM audit_log WHERE seq IN ({marks}) ORDER BY seq DESC", page
        ).fetchall()
    else:
        if query.tool is not None:
            clauses.append("tool = ?")
            params.append(query.tool)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = connection.execute(
            f"SELECT seq, hash, body FROM audit_log {where} ORDER BY seq DESC LIMIT ? OFFSET ?",
            (*params, query.limit, offset),
        ).fetchall()
    records = [{**json.loads(body), "seq": seq, "hash": digest} for seq, digest, body in rows]
    return records if query.newest_first else list(reversed(records))


_TOOL_NAMES = """
WITH RECURSIVE names(tool) AS (
    SELECT MIN(tool) FROM audit_log
    UNION ALL
    SELECT (SELECT MIN(tool) FROM audit_log WHERE tool > names.tool) FROM names WHERE names.tool IS NOT NULL
)
SELECT tool FROM names WHERE tool GLOB ?
"""
"""The distinct tool names matching a glob, one index probe per name (not a scan of the log)."""


def _filters(query: AuditQuery) -> tuple[list[str], list[Any]]:
    """WHERE clauses and parameters for every filter but the tool."""
    clauses: list[str] = []
    params: list[Any] = []
    for column in ("subject", "decision", "outcome", "event", "call_id"):
        value = getattr(query, column)
        if value is not None:
            clauses.append(f"{column} GLOB ?" if column in _GLOBS and is_glob(value) else f"{column} = ?")
            params.append(value)
    if query.since is not None:
        clauses.append("ts >= ?")
        params.append(parse_since(query.since))
    if query.until is not None:
        clauses.append("ts < ?")
        params.append(parse_since(query.until))
    for field in ("tenant", "approval_id", "plan_run_id"):
        value = getattr(query, field)
        if value is not None:
            clauses.append(f"json_extract(body, '$.{field}') = ?")
            params.append(value)
    if query.text is not None:
        clauses.append(_TEXT)
        params += [query.text.lower()] * 3
    return clauses, params


_GLOBS = frozenset({"event"})
"""Columns whose filter may be a glob (the tool's is expanded through its index: see `query_records`)."""
_TEXT = f"""(
    instr(lower(json_extract(body, '$.rule')), ?) > 0
    OR instr(lower(json_extract(body, '$.message')), ?) > 0
    OR EXISTS (
        SELECT 1 FROM json_tree(body, '$.arguments') AS leaf
        WHERE leaf.type IN ('text', 'integer', 'real')
        AND NOT (leaf.type = 'text' AND leaf.atom GLOB '{HASHED_PREFIX}*')
        AND instr(lower(leaf.atom), ?) > 0
    )
)"""
"""Free text in the rule, the message, or an argument value recorded as it was (a salted hash is not text)."""


def is_glob(value: str) -> bool:
    return any(c in value for c in "*?[")


def open_readonly(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise FileNotFoundError(f"no audit database at {path}")
    # Not `mode=ro`: a read-only connection cannot open a WAL database whose -shm file is gone.
    connection = sqlite3.connect(path, timeout=30.0)
    connection.execute("PRAGMA query_only=ON")
    return connection
