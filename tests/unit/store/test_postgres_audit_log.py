"""The PostgreSQL audit log beyond the store contract: its salt, and batches whose jobs fail alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from psycopg_pool import ConnectionPool

from gateway.audit.records import AuditRecord
from gateway.audit.salt import Salt
from gateway.outcomes import AuditWriteError
from gateway.store.errors import StaleState, StoreConflict
from gateway.store.postgres.audit_log import PgAuditLog
from gateway.store.postgres.connect import open_pool
from gateway.store.postgres.migrate import migrate
from gateway.store.postgres.plan_runs import PgPlanRuns

pytestmark = pytest.mark.anyio
PLAN = {"goal": "g", "steps": [{"id": "a", "tool": "t.a"}]}


@pytest.fixture
def pool(pg_dsn: str) -> Iterator[ConnectionPool]:
    pool = open_pool(pg_dsn)
    migrate(pool)
    yield pool
    pool.close()


async def events(log: PgAuditLog) -> list[str]:
    return [entry.body.split('"event":"')[1].split('"')[0] for entry in await log.chain()]


def noted_salt(pool: ConnectionPool) -> object:
    with pool.connection() as connection:
        row = connection.execute("SELECT value FROM meta WHERE key = 'salt_id'").fetchone()
    return row[0] if row else None


async def test_a_new_salt_is_noted_by_fingerprint_and_its_change_is_recorded_once(pool: ConnectionPool) -> None:
    for salt in ("first", "first", "second", "second"):
        log = PgAuditLog(pool)
        await anyio.to_thread.run_sync(log.open, salt)
        await log.append(AuditRecord(event="gateway.start"))
        await log.close()
        assert log.salt == salt and noted_salt(pool) == Salt(salt, "config").id
    assert await events(log) == ["gateway.start"] * 2 + ["audit.salt_rotated"] + ["gateway.start"] * 2


async def test_without_a_configured_salt_the_salt_file_is_made_once_and_kept(
    pool: ConnectionPool, tmp_path: Path
) -> None:
    salt_file = tmp_path / "audit.salt"
    salts = []
    for _ in range(2):
        log = PgAuditLog(pool, salt_file)
        await anyio.to_thread.run_sync(log.open, None)
        salts.append(log.salt)
        await log.close()
    assert salts[0] == salts[1] == salt_file.read_text().strip()
    assert salt_file.stat().st_mode & 0o777 == 0o600
    with pytest.raises(AuditWriteError, match=r"audit\.salt"):
        PgAuditLog(pool).open(None)  # no salt and nowhere to keep one: refused, never a guess


async def test_jobs_batched_into_one_transaction_fail_alone_and_the_rest_commit(pool: ConnectionPool) -> None:
    runs = PgPlanRuns(pool)
    log = PgAuditLog(pool)
    await anyio.to_thread.run_sync(log.open, "salt")
    outcomes: dict[str, str] = {}

    async def append(name: str, changes: list[object]) -> None:
        try:
            await log.append(AuditRecord(event=name), changes)  # type: ignore[arg-type]
            outcomes[name] = "ok"
        except StaleState:
            outcomes[name] = "stale"
        except StoreConflict:
            outcomes[name] = "conflict"

    def start() -> object:
        return runs.start(
            "r1", owner="o", subject="s", tenant=None, session=None, plan=PLAN, plan_hash="h", approval_id=None
        )

    try:
        await append("started", [start()])
        async with anyio.create_task_group() as tasks:  # queued together: the writer commits them in few batches
            for i in range(30):
                if i % 3 == 0:
                    tasks.start_soon(append, f"stale{i}", [runs.finish("r1", "succeeded", {}, "someone-else")])
                elif i % 3 == 1:
                    tasks.start_soon(append, f"again{i}", [start()])
                else:
                    tasks.start_soon(append, f"plain{i}", [])
        written = await events(log)
    finally:
        await log.close()
    assert {name: kind for name, kind in outcomes.items() if kind != "ok"} == {
        **{f"stale{i}": "stale" for i in range(0, 30, 3)},
        **{f"again{i}": "conflict" for i in range(1, 30, 3)},
    }
    assert sorted(written) == sorted(["started", *(f"plain{i}" for i in range(2, 30, 3))])
