"""Plan runs on SQLite: every line of plan-run SQL lives here.

Writes are `Change`s the SQLite audit log commits with the record of each transition
(`plan.started`, `plan.step`, `plan.finished`, `plan.interrupted`); reads open their own
read-only connection in a worker thread, so they see what every process has committed.
Leases are ISO-8601 UTC times (`utc_now`'s fixed-width form, so text order is time order).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from gateway.audit.query import open_readonly
from gateway.audit.records import utc_now
from gateway.store.changes import Change, Statement
from gateway.store.plan_runs import RunLease, RunRecord, RunStatus, StepRecord
from gateway.store.sqlite.errors import sqlite_errors

DIALECT = "sqlite"
T = TypeVar("T")
_RUNNING_AND_OURS = "status = 'running' AND lease_owner = ?"
_TAKEABLE = (
    "status = 'running'"
    " AND (lease_expires_at IS NULL OR lease_expires_at < ? OR lease_owner IN (SELECT value FROM json_each(?)))"
)
"""A run whose lease ran out (or that has none: written before leases), or whose owner is gone."""


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class SQLitePlanRuns:
    """`PlanRunStore` on the gateway's SQLite database (the audit log's)."""

    def __init__(self, path: Path, lease_seconds: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._lease_seconds = lease_seconds
        self._clock = clock

    @property
    def lease_seconds(self) -> float:
        return self._lease_seconds

    # --- changes, committed by the audit log with their records ----------------------

    def start(
        self,
        run_id: str,
        *,
        owner: str,
        subject: str,
        tenant: str | None,
        session: str | None,
        plan: dict[str, Any],
        plan_hash: str,
        approval_id: str | None,
    ) -> Change:
        run = Statement(
            "INSERT INTO plan_runs (id, created_at, subject, tenant, session, goal, plan_hash, plan, status,"
            " approval_id, lease_owner, lease_expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)",
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
                owner,
                self._expiry(),
            ),
        )
        steps = [
            Statement(
                "INSERT INTO plan_steps (run_id, step_id, tool, status) VALUES (?, ?, ?, 'pending')",
                (run_id, step["id"], step["tool"]),
            )
            for step in plan["steps"]
        ]
        return Change.of(DIALECT, f"start plan run {run_id}", run, *steps)

    def step(self, run_id: str, step: StepRecord, owner: str) -> Change:
        update = Statement(
            "UPDATE plan_steps SET status = ?, attempts = ?, started_at = ?, finished_at = ?, call_id = ?,"
            " audit_id = ?, outcome = ?, message = ? WHERE run_id = ? AND step_id = ?"
            f" AND EXISTS (SELECT 1 FROM plan_runs WHERE id = ? AND {_RUNNING_AND_OURS})",
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
                run_id,
                owner,
            ),
            expect_rows=1,
        )
        return Change.of(DIALECT, f"step {step.step_id} of plan run {run_id}", update, self._renewal(owner, run_id))

    def finish(self, run_id: str, status: RunStatus, result: dict[str, Any], owner: str) -> Change:
        now = utc_now()
        update = Statement(
            "UPDATE plan_runs SET status = ?, finished_at = ?, result = ?, lease_expires_at = NULL"
            f" WHERE id = ? AND {_RUNNING_AND_OURS}",
            (status, now, json.dumps(result), run_id, owner),
            expect_rows=1,
        )
        if status != "interrupted":
            return Change.of(DIALECT, f"finish plan run {run_id}", update)
        return Change.of(DIALECT, f"interrupt plan run {run_id}", update, _unfinished_steps_interrupted(now, [run_id]))

    def renew(self, owner: str, run_id: str | None = None) -> Change:
        if run_id is not None:
            return Change.of(DIALECT, f"renew the lease of plan run {run_id}", self._renewal(owner, run_id))
        every = Statement(
            f"UPDATE plan_runs SET lease_expires_at = ? WHERE {_RUNNING_AND_OURS}", (self._expiry(), owner)
        )
        return Change.of(DIALECT, f"renew the leases of {owner}", every)

    def interrupt(self, run_ids: Sequence[str], gone: Sequence[str] = ()) -> Change:
        ids = json.dumps(sorted(set(run_ids)))
        now = utc_now()
        runs = Statement(
            "UPDATE plan_runs SET status = 'interrupted', finished_at = ?"
            f" WHERE id IN (SELECT value FROM json_each(?)) AND {_TAKEABLE}",
            (now, ids, self._now(), json.dumps(list(gone))),
            expect_rows=len(set(run_ids)),
        )
        steps = _unfinished_steps_interrupted(now, run_ids)
        return Change.of(DIALECT, f"interrupt plan runs {', '.join(sorted(set(run_ids)))}", runs, steps)

    # --- reads ---------------------------------------------------------------------

    async def get(self, run_id: str) -> RunRecord | None:
        return await self._read(lambda c: read_run(c, run_id), None)

    async def running(self) -> list[RunLease]:
        query = "SELECT id, lease_owner, lease_expires_at FROM plan_runs WHERE status = 'running' ORDER BY created_at"
        return await self._read(
            lambda c: [RunLease(row[0], row[1], row[2]) for row in c.execute(query)], list[RunLease]()
        )

    async def expired(self, gone: Sequence[str] = ()) -> list[str]:
        query = f"SELECT id FROM plan_runs WHERE {_TAKEABLE} ORDER BY created_at"
        params = (self._now(), json.dumps(list(gone)))
        return await self._read(lambda c: [row[0] for row in c.execute(query, params)], list[str]())

    # --- helpers -------------------------------------------------------------------

    def _now(self) -> str:
        return iso(self._clock())

    def _expiry(self) -> str:
        return iso(self._clock() + self._lease_seconds)

    def _renewal(self, owner: str, run_id: str) -> Statement:
        return Statement(
            f"UPDATE plan_runs SET lease_expires_at = ? WHERE id = ? AND {_RUNNING_AND_OURS}",
            (self._expiry(), run_id, owner),
            expect_rows=1,
        )

    async def _read(self, query: Callable[[sqlite3.Connection], T], missing: T) -> T:
        """`query` on a fresh read-only connection; `missing` when the database does not exist yet."""
        path = self.path

        def run() -> T:
            if not path.exists():
                return missing
            with sqlite_errors("cannot read plan runs"):
                connection = open_readonly(path)
                try:
                    return query(connection)
                finally:
                    connection.close()

        return await anyio.to_thread.run_sync(run)


def _unfinished_steps_interrupted(now: str, run_ids: Sequence[str]) -> Statement:
    return Statement(
        "UPDATE plan_steps SET status = 'interrupted', finished_at = ?"
        " WHERE run_id IN (SELECT value FROM json_each(?)) AND status IN ('running', 'pending')",
        (now, json.dumps(sorted(set(run_ids)))),
    )


def read_run(connection: sqlite3.Connection, run_id: str) -> RunRecord | None:
    connection.row_factory = sqlite3.Row
    row = connection.execute("SELECT * FROM plan_runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        return None
    steps = [
        StepRecord(**{k: v for k, v in zip(r.keys(), r, strict=True) if k != "run_id"})
        for r in connection.execute("SELECT * FROM plan_steps WHERE run_id = ? ORDER BY rowid", (run_id,))
    ]
    data = {k: v for k, v in zip(row.keys(), row, strict=True) if k not in ("plan", "result")}
    return RunRecord(**data, steps=steps, result=json.loads(row["result"]) if row["result"] else None)


def list_runs(connection: sqlite3.Connection, limit: int = 20) -> list[dict[str, Any]]:
    connection.row_factory = sqlite3.Row
    query = "SELECT id, created_at, subject, goal, status, finished_at FROM plan_runs ORDER BY created_at DESC LIMIT ?"
    return [dict(r) for r in connection.execute(query, (limit,))]
