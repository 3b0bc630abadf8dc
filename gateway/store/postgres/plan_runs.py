"""Plan runs on PostgreSQL, shared by every replica: every line of their SQL lives here.

The same changes as `store/sqlite/plan_runs.py`, in PostgreSQL's SQL: the PostgreSQL audit log
commits each with the record of its transition (`plan.started`, `plan.step`, `plan.finished`,
`plan.interrupted`), under the lock every append takes, so a compare-and-swap (`expect_rows`)
decides a race between replicas once. Times are `timestamptz` from the injected clock, read back
in `utc_now`'s fixed-width ISO form, so callers see what the SQLite store gives them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio.to_thread
from psycopg import Connection
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from gateway.store.changes import Change, Statement
from gateway.store.plan_runs import RunLease, RunRecord, RunStatus, StepRecord
from gateway.store.postgres.errors import pg_errors

DIALECT = "postgresql"
T = TypeVar("T")
_RUNNING_AND_OURS = "status = 'running' AND lease_owner = %s"
_TAKEABLE = (
    "status = 'running' AND (lease_expires_at IS NULL OR lease_expires_at < %s OR lease_owner = ANY(%s::text[]))"
)
"""A run whose lease ran out (or that has none), or whose owner is gone."""
_STEP_TIMES = ("started_at", "finished_at")


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def iso(moment: datetime | None) -> str | None:
    """`moment` in `utc_now`'s form (what the SQLite store keeps as text)."""
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parsed(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class PgPlanRuns:
    """`PlanRunStore` on one PostgreSQL database: every process with a handle on it sees every run."""

    def __init__(
        self, pool: ConnectionPool, lease_seconds: float = 30.0, clock: Callable[[], float] = time.time
    ) -> None:
        self._pool = pool
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
            " approval_id, lease_owner, lease_expires_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'running', %s, %s, %s)",
            (
                run_id,
                self._now(),
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
                "INSERT INTO plan_steps (run_id, step_id, tool, status) VALUES (%s, %s, %s, 'pending')",
                (run_id, step["id"], step["tool"]),
            )
            for step in plan["steps"]
        ]
        return Change.of(DIALECT, f"start plan run {run_id}", run, *steps)

    def step(self, run_id: str, step: StepRecord, owner: str) -> Change:
        update = Statement(
            "UPDATE plan_steps SET status = %s, attempts = %s, started_at = %s, finished_at = %s, call_id = %s,"
            " audit_id = %s, outcome = %s, message = %s WHERE run_id = %s AND step_id = %s"
            f" AND EXISTS (SELECT 1 FROM plan_runs WHERE id = %s AND {_RUNNING_AND_OURS})",
            (
                step.status,
                step.attempts,
                _parsed(step.started_at),
                _parsed(step.finished_at),
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
        now = self._now()
        update = Statement(
            "UPDATE plan_runs SET status = %s, finished_at = %s, result = %s, lease_expires_at = NULL"
            f" WHERE id = %s AND {_RUNNING_AND_OURS}",
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
            f"UPDATE plan_runs SET lease_expires_at = %s WHERE {_RUNNING_AND_OURS}", (self._expiry(), owner)
        )
        return Change.of(DIALECT, f"renew the leases of {owner}", every)

    def interrupt(self, run_ids: Sequence[str], gone: Sequence[str] = ()) -> Change:
        ids = sorted(set(run_ids))
        now = self._now()
        runs = Statement(
            f"UPDATE plan_runs SET status = 'interrupted', finished_at = %s WHERE id = ANY(%s::text[]) AND {_TAKEABLE}",
            (now, ids, now, list(gone)),
            expect_rows=len(ids),
        )
        steps = _unfinished_steps_interrupted(now, ids)
        return Change.of(DIALECT, f"interrupt plan runs {', '.join(ids)}", runs, steps)

    # --- reads ---------------------------------------------------------------------

    async def get(self, run_id: str) -> RunRecord | None:
        return await self._read(lambda c: read_run(c, run_id))

    async def running(self) -> list[RunLease]:
        query = (
            "SELECT id, lease_owner, lease_expires_at FROM plan_runs WHERE status = 'running' ORDER BY created_at, id"
        )
        return await self._read(lambda c: [RunLease(row[0], row[1], iso(row[2])) for row in c.execute(query)])

    async def expired(self, gone: Sequence[str] = ()) -> list[str]:
        query = f"SELECT id FROM plan_runs WHERE {_TAKEABLE} ORDER BY created_at, id"
        params = (self._now(), list(gone))
        return await self._read(lambda c: [row[0] for row in c.execute(query, params)])

    # --- helpers -------------------------------------------------------------------

    def _now(self) -> datetime:
        return at(self._clock())

    def _expiry(self) -> datetime:
        return at(self._clock() + self._lease_seconds)

    def _renewal(self, owner: str, run_id: str) -> Statement:
        return Statement(
            f"UPDATE plan_runs SET lease_expires_at = %s WHERE id = %s AND {_RUNNING_AND_OURS}",
            (self._expiry(), run_id, owner),
            expect_rows=1,
        )

    async def _read(self, query: Callable[[Connection[Any]], T]) -> T:
        """`query` on a pooled connection in a worker thread: it sees what every process has committed."""
        pool = self._pool

        def run() -> T:
            with pg_errors("cannot read plan runs"), pool.connection() as connection:
                return query(connection)

        return await anyio.to_thread.run_sync(run)


def _unfinished_steps_interrupted(now: datetime, run_ids: Sequence[str]) -> Statement:
    return Statement(
        "UPDATE plan_steps SET status = 'interrupted', finished_at = %s"
        " WHERE run_id = ANY(%s::text[]) AND status IN ('running', 'pending')",
        (now, sorted(set(run_ids))),
    )


def read_run(connection: Connection[Any], run_id: str) -> RunRecord | None:
    """The run `run_id` with its steps in the plan's order; None if there is none."""
    with connection.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute("SELECT * FROM plan_runs WHERE id = %s", (run_id,)).fetchone()
        if row is None:
            return None
        steps = cursor.execute(
            "SELECT step_id, tool, status, attempts, started_at, finished_at, call_id, audit_id, outcome, message"
            " FROM plan_steps WHERE run_id = %s ORDER BY n",
            (run_id,),
        ).fetchall()
    records = [
        StepRecord.model_validate({k: iso(v) if k in _STEP_TIMES else v for k, v in step.items()}) for step in steps
    ]
    data: dict[str, Any] = {k: v for k, v in row.items() if k != "plan"}
    for field in ("created_at", "finished_at", "lease_expires_at"):
        data[field] = iso(data[field])
    data["result"] = json.loads(row["result"]) if row["result"] else None
    return RunRecord.model_validate({**data, "steps": records})


def list_runs(connection: Connection[Any], limit: int = 20) -> list[dict[str, Any]]:
    """The latest runs, newest first, for `plan` listings."""
    query = "SELECT id, created_at, subject, goal, status, finished_at FROM plan_runs ORDER BY created_at DESC LIMIT %s"
    with connection.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(query, (limit,)).fetchall()
    return [{k: iso(v) if isinstance(v, datetime) else v for k, v in row.items()} for row in rows]
