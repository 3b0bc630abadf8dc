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


class AuditQuery(BaseModel):
    model_config = ConfigDict(frozen=True)

    subject: str | None = None
    tool: str | None = None
    """A glob (`crm.*`)."""
    decision: str | None = None
    outcome: str | None = None
    event: str | None = None
    call_id: str | None = None
    since: str | None = None
    """A duration back from now (`90s`, `15m`, `1h`, `7d`) or an ISO-8601 time."""
    limit: int = 100


def parse_since(value: str, now: datetime | None = None) -> str:
    """Return the ISO timestamp a `--since` value means; raise ValueError if it means nothing."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(value.strip())
    if match:
        start = now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    else:
        try:
            start = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"--since {value!r}: expected a duration like 15m, 1h, 7d or an ISO-8601 time") from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
    return start.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def query_records(connection: sqlite3.Connection, query: AuditQuery) -> list[dict[str, Any]]:
    """The latest `limit` matching records, oldest first, each with its `seq` and `hash`."""
    clauses, params = [], []
    for column in ("subject", "decision", "outcome", "event", "call_id"):
        value = getattr(query, column)
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if query.tool is not None:
        clauses.append("tool GLOB ?")
        params.append(query.tool)
    if query.since is not None:
        clauses.append("ts >= ?")
        params.append(parse_since(query.since))
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = connection.execute(
        f"SELECT seq, hash, body FROM audit_log {where} ORDER BY seq DESC LIMIT ?", (*params, query.limit)
    ).fetchall()
    return [{**json.loads(body), "seq": seq, "hash": digest} for seq, digest, body in reversed(rows)]


def open_readonly(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise FileNotFoundError(f"no audit database at {path}")
    # Not `mode=ro`: a read-only connection cannot open a WAL database whose -shm file is gone.
    connection = sqlite3.connect(path, timeout=30.0)
    connection.execute("PRAGMA query_only=ON")
    return connection
