"""The PostgreSQL schema: versioned migrations that run once however many replicas run `db init`,
a schema check that refuses what `serve` cannot use, and an audit log the database itself keeps append-only."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from gateway.audit.records import AuditRecord, chain_hash
from gateway.audit.schema import GENESIS_HASH, REFUSALS
from gateway.store.errors import StoreUnavailable
from gateway.store.postgres.audit_log import PgAuditLog
from gateway.store.postgres.connect import open_pool
from gateway.store.postgres.migrate import KNOWN, LATEST, load, migrate, require_current, status
from gateway.store.postgres.plan_runs import PgPlanRuns

LABELS = [m.label for m in KNOWN]


@pytest.fixture
def db(pg_dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(pg_dsn, autocommit=True) as connection:
        yield connection


def applied(db: psycopg.Connection[tuple[object, ...]]) -> list[tuple[object, ...]]:
    return db.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()


def test_migrating_twice_applies_each_migration_once(db: psycopg.Connection[tuple[object, ...]]) -> None:
    assert migrate(db) == LABELS
    assert migrate(db) == []
    assert applied(db) == [(m.version, m.name) for m in KNOWN]
    assert status(db).ready and status(db).current == LATEST
    require_current(db)


def test_three_replicas_running_db_init_at_once_apply_each_migration_once(
    pg_dsn: str, db: psycopg.Connection[tuple[object, ...]]
) -> None:
    start = threading.Barrier(3)
    results: list[list[str]] = []
    failures: list[BaseException] = []

    def replica() -> None:
        try:
            with psycopg.connect(pg_dsn, autocommit=True) as connection:
                start.wait()
                results.append(migrate(connection))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=replica) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert sorted(label for result in results for label in result) == LABELS
    assert applied(db) == [(m.version, m.name) for m in KNOWN]


def test_a_database_behind_the_code_is_refused_until_db_init_brings_it_up(
    db: psycopg.Connection[tuple[object, ...]],
) -> None:
    fresh = status(db)
    assert (fresh.current, fresh.latest, fresh.pending) == (0, LATEST, tuple(LABELS))
    with pytest.raises(StoreUnavailable, match="run `portcullis db init`"):
        require_current(db)
    migrate(db, KNOWN[:-1])  # what an older release applied
    behind = status(db)
    assert (behind.current, behind.pending, behind.ready) == (LATEST - 1, (LABELS[-1],), False)
    with pytest.raises(StoreUnavailable, match="run `portcullis db init`"):
        require_current(db)
    assert migrate(db) == [LABELS[-1]]
    require_current(db)


def test_a_database_newer_than_the_code_is_reported_and_left_alone(
    db: psycopg.Connection[tuple[object, ...]], tmp_path: Path
) -> None:
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE first (x int);")
    (tmp_path / "0002_second.sql").write_text("CREATE TABLE second (x int);")
    newer = load(tmp_path)
    migrate(db, newer)
    older = newer[:1]
    schema = status(db, older)
    assert (schema.current, schema.latest, schema.extra, schema.ready) == (2, 1, ("0002_second",), False)
    with pytest.raises(StoreUnavailable, match="upgrade Portcullis"):
        require_current(db, older)
    with pytest.raises(StoreUnavailable, match="newer release"):
        migrate(db, older)


def test_a_migration_that_fails_leaves_the_schema_at_the_version_before(
    db: psycopg.Connection[tuple[object, ...]], tmp_path: Path
) -> None:
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE first (x int);")
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE half (x int); SELECT no_such_function();")
    with pytest.raises(Exception, match="0002_broken"):
        migrate(db, load(tmp_path))
    assert status(db, load(tmp_path)).current == 1
    assert db.execute("SELECT to_regclass('half')").fetchone() == (None,)


def record(seq: int, prev: str, body: str = '{"event":"x"}') -> tuple[object, ...]:
    return (seq, "2025-01-01T00:00:00.000000Z", "x", body, prev, chain_hash(prev, body))


INSERT = "INSERT INTO audit_log (seq, ts, event, body, prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s)"


def test_the_database_refuses_to_rewrite_the_audit_log_or_to_insert_off_the_chain(
    db: psycopg.Connection[tuple[object, ...]],
) -> None:
    migrate(db)
    first = record(1, GENESIS_HASH)
    db.execute(INSERT, first)
    for rewrite in ("UPDATE audit_log SET body = '{}'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(errors.IntegrityConstraintViolation, match="append-only"):
            db.execute(rewrite)  # type: ignore[arg-type]
    for off_chain in (record(3, str(first[5])), record(2, GENESIS_HASH), record(1, GENESIS_HASH)):
        with pytest.raises(errors.IntegrityConstraintViolation, match="extend the hash chain"):
            db.execute(INSERT, off_chain)
    db.execute(INSERT, record(2, str(first[5])))
    assert db.execute("SELECT seq FROM audit_log ORDER BY seq").fetchall() == [(1,), (2,)]


def test_an_auditor_role_reads_the_log_and_cannot_write_it(db: psycopg.Connection[tuple[object, ...]]) -> None:
    migrate(db)
    with db.transaction():
        db.execute("SET LOCAL ROLE portcullis_auditor")
        assert db.execute("SELECT count(*) FROM calls").fetchone() == (0,)
        with pytest.raises(errors.InsufficientPrivilege):
            db.execute(INSERT, record(1, GENESIS_HASH))


@pytest.mark.anyio
async def test_the_views_read_like_sqlites_even_past_a_record_postgresql_cannot_turn_into_text(pg_dsn: str) -> None:
    pool = open_pool(pg_dsn)
    migrate(pool)
    log = PgAuditLog(pool)
    log.open("salt")
    try:
        await log.append(AuditRecord(event="tool.call", tenant="acme", arguments={"x": "nul\x00here"}, outcome="ok"))
        for code in REFUSALS:
            await log.append(AuditRecord(event="tool.call", tenant="acme", outcome=code.value, latency_ms=1.5))
        await log.append(AuditRecord(event="tool.call", decision="deny", outcome="denied"))
        with pool.connection() as connection:
            calls = connection.execute("SELECT tenant, latency_ms FROM calls ORDER BY seq").fetchall()
            denials = connection.execute("SELECT outcome FROM denials").fetchall()
            body = connection.execute("SELECT body FROM audit_log WHERE seq = 1").fetchone()
    finally:
        await log.close()
        pool.close()
    assert calls[0] == ("acme", None) and calls[1] == ("acme", 1.5) and len(calls) == len(REFUSALS) + 2
    assert sorted(row[0] for row in denials) == sorted([code.value for code in REFUSALS] + ["denied"])
    assert body is not None and "nul\\u0000here" in str(body[0])


@pytest.mark.anyio
async def test_a_database_never_initialised_is_refused_with_the_command_that_fixes_it(pg_dsn: str) -> None:
    pool = open_pool(pg_dsn)
    try:
        with pytest.raises(StoreUnavailable, match="run `portcullis db init`"):
            PgAuditLog(pool).open("salt")
        with pytest.raises(StoreUnavailable, match="run `portcullis db init`"):
            await PgPlanRuns(pool).get("r1")
    finally:
        pool.close()
