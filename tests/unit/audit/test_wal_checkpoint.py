"""A reader that opens the log read-only or immutable (an auditor's Datasette) sees every committed record.

It reads the database file alone, not the write-ahead log, so the writer moves the log into the
file now and then while it writes, and at shutdown.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from gateway.audit import AuditRecord, AuditStore

pytestmark = pytest.mark.anyio


def seen_by_immutable_reader(path: Path) -> int:
    """Records an `immutable=1` reader finds (the way `datasette -i` opens a file)."""
    reader = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return int(reader.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0])
    except sqlite3.OperationalError:  # the table itself is still only in the write-ahead log
        return 0
    finally:
        reader.close()


def wal_size(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


async def test_records_reach_the_database_file_while_the_gateway_runs(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    store = AuditStore(path, wal_checkpoint_seconds=0.05)
    store.open()
    try:
        for i in range(20):
            await store.append(AuditRecord(event="tool.call", subject=f"u{i}"))
        with anyio.fail_after(10):  # copied into the file, and the write-ahead log truncated, not just copied
            while seen_by_immutable_reader(path) < 20 or wal_size(path) > 0:
                await anyio.sleep(0.02)
    finally:
        await store.close()


async def test_without_a_checkpoint_the_last_records_are_only_in_the_write_ahead_log_until_shutdown(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.db"
    store = AuditStore(path, wal_checkpoint_seconds=None)
    store.open()
    for i in range(20):
        await store.append(AuditRecord(event="tool.call", subject=f"u{i}"))
    assert seen_by_immutable_reader(path) < 20  # what a periodic checkpoint is for
    await store.close()
    assert seen_by_immutable_reader(path) == 20
    assert wal_size(path) == 0


async def test_a_reader_mid_query_does_not_hold_up_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    store = AuditStore(path, write_timeout_seconds=5.0, wal_checkpoint_seconds=0.01)
    store.open()
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        await store.append(AuditRecord(event="first"))
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM audit_log").fetchone()  # holds a read snapshot open
        with anyio.fail_after(2):  # far less than the write timeout a waiting checkpoint would spend
            for i in range(10):
                await store.append(AuditRecord(event="tool.call", subject=f"u{i}"))
                await anyio.sleep(0.02)
    finally:
        reader.execute("ROLLBACK")
        reader.close()
        await store.close()
    assert seen_by_immutable_reader(path) == 11
