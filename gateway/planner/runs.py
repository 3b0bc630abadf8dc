"""Plan runs as they are stored: a row per run and per step in the audit database.

Every transition is written by the audit writer together with an audit record of it
(`plan.started`, `plan.step`, `plan.finished`), so the state and its history cannot
disagree. A run that was `running` when its gateway stopped is marked `interrupted`
on the next start, with a record saying so: it is never silently lost.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from gateway.audit.records import utc_now
from gateway.audit.store import Statement

RunStatus = Literal[
    "running", "succeeded", "failed", "paused", "compensated", "compensation_failed", "timed_out", "interrupted"
]
StepStatus = Literal[
    "pending",
    "running",
    "succeeded",
    "failed",
    "skipped",
    "paused",
    "compensated",
    "compensation_failed",
    "interrupted",
]


class StepRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    step_id: str
    tool: str
    status: StepStatus
    attempts: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    call_id: str | None = None
    audit_id: int | None = None
    outcome: str | None = None
    message: str | None = None


class RunRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    created_at: str
    subject: str
    tenant: str | None
    session: str | None
    goal: str
    plan_hash: str
    status: RunStatus
    approval_id: str | None
    finished_at: str | None
    steps: list[StepRecord]
    result: dict[str, Any] | None = None


def insert_run(
    run_id: str,
    subject: str,
    tenant: str | None,
    session: str | None,
    plan: dict[str, Any],
    plan_hash: str,
    approval_id: str | None,
) -> list[Statement]:
    statements = [
        Statement(
            "INSERT INTO plan_runs (id, created_at, subject, tenant, session, goal, plan_hash, plan, status, approval_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?)",
            (
                run_id,
                utc_now(),
                subject,
                tenant,
                session,
                plan.get("goal", ""),
                plan_hash,
                json.dumps(plan),
                approval_id,
            ),
        )
    ]
    statements += [
        Statement(
            "INSERT INTO plan_steps (run_id, step_id, tool, status) VALUES (?, ?, ?, 'pending')",
            (run_id, step["id"], step["tool"]),
        )
        for step in plan["steps"]
    ]
    return statements


def update_step(run_id: str, step: StepRecord) -> Statement:
    return Statement(
        "UPDATE plan_steps SET status = ?, attempts = ?, started_at = ?, finished_at = ?, call_id = ?, audit_id = ?,"
        " outcome = ?, message = ? WHERE run_id = ? AND step_id = ?",
        (
            step.status,
            step.attempts,
            step.started_at,
            step.finished_at,
            step.call_id,
            step.audit_id,
            step.outcome,
            step.message,
            run_id,
            step.step_id,
        ),
        expect_rows=1,
    )


def finish_run(run_id: str, status: RunStatus, result: dict[str, Any]) -> Statement:
    return Statement(
        "UPDATE plan_runs SET status = ?, finished_at = ?, result = ? WHERE id = ? AND status = 'running'",
        (status, utc_now(), json.dumps(result), run_id),
        expect_rows=1,
    )


def interrupt_running() -> list[Statement]:
    """Mark every run and step left `running` (or `pending`) by a stopped gateway as interrupted."""
    now = utc_now()
    return [
        Statement(
            "UPDATE plan_steps SET status = 'interrupted', finished_at = ? WHERE status IN ('running', 'pending')"
            " AND run_id IN (SELECT id FROM plan_runs WHERE status = 'running')",
            (now,),
        ),
        Statement("UPDATE plan_runs SET status = 'interrupted', finished_at = ? WHERE status = 'running'", (now,)),
    ]


def running_ids(connection: sqlite3.Connection) -> list[str]:
    return [row[0] for row in connection.execute("SELECT id FROM plan_runs WHERE status = 'running'")]


def read_run(connection: sqlite3.Connection, run_id: str) -> RunRecord | None:
    connection.row_factory = sqlite3.Row
    row = connection.execute("SELECT * FROM plan_runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        return None
    steps = [
        StepRecord(**{k: r[k] for k in r.keys() if k != "run_id"})
        for r in connection.execute("SELECT * FROM plan_steps WHERE run_id = ? ORDER BY rowid", (run_id,))
    ]
    data = {k: row[k] for k in row.keys() if k not in ("plan", "result")}
    return RunRecord(**data, steps=steps, result=json.loads(row["result"]) if row["result"] else None)


def list_runs(connection: sqlite3.Connection, limit: int = 20) -> list[dict[str, Any]]:
    connection.row_factory = sqlite3.Row
    query = "SELECT id, created_at, subject, goal, status, finished_at FROM plan_runs ORDER BY created_at DESC LIMIT ?"
    return [dict(r) for r in connection.execute(query, (limit,))]
