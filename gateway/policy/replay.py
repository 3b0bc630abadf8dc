"""Replay recorded calls against a candidate policy: which decisions would change?

Arguments come from the audit log, where secret-looking values are stored as
salted hashes: a condition on such a value is evaluated on the hash (say so
when reading the result). Roles are recomputed from the candidate policy,
except for callers whose roles came from a token (JWT), whose recorded roles
are used.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

from gateway.audit.query import parse_since
from gateway.policy.engine import PolicyEngine


class ReplayChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    seq: int
    ts: str
    subject: str | None
    tool: str | None
    old: str
    new: str
    old_rule: str | None
    new_rule: str | None


class ReplayReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    replayed: int
    changes: list[ReplayChange]


def replay(
    connection: sqlite3.Connection,
    candidate: PolicyEngine,
    since: str | None,
    progress: Callable[[int], None] | None = None,
) -> ReplayReport:
    sql = "SELECT seq, body FROM audit_log WHERE event = 'tool.call'"
    params: tuple[Any, ...] = ()
    if since is not None:
        sql += " AND ts >= ?"
        params = (parse_since(since),)
    replayed, changes = 0, []
    for count, (seq, body) in enumerate(connection.execute(sql + " ORDER BY seq", params), 1):
        if progress is not None and count % 10_000 == 0:
            progress(10_000)
        record = json.loads(body)
        subject, tool = record.get("subject"), record.get("tool")
        if not subject or not tool or record.get("decision") is None:
            continue
        arguments = record.get("arguments") if isinstance(record.get("arguments"), dict) else {}
        if "omitted" in arguments:
            continue  # refused before admission: there is nothing to decide on
        granted = tuple(record.get("roles") or ()) if record.get("auth") == "jwt" else ()
        roles = candidate.roles_for(subject, granted)
        context = {"args": arguments, "subject": {"id": subject, "tenant": record.get("tenant"), "roles": list(roles)}}
        decision = candidate.decide(subject, tool, "call", context, granted)
        replayed += 1
        if decision.decision.value != record["decision"]:
            changes.append(
                ReplayChange(
                    seq=seq,
                    ts=record["ts"],
                    subject=subject,
                    tool=tool,
                    old=record["decision"],
                    new=decision.decision.value,
                    old_rule=record.get("rule"),
                    new_rule=decision.reason,
                )
            )
    return ReplayReport(replayed=replayed, changes=changes)
