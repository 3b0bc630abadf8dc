"""The chained log in a real SQLite file: append-only, verifiable, concurrent writers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from gateway.audit import AuditRecord, AuditStore, Statement, verify_file
from gateway.audit.store import connect
from gateway.outcomes import AuditWriteError

pytestmark = pytest.mark.anyio


async def filled(path: Path, count: int = 10) -> AuditStore:
    store = AuditStore(path)
    store.open()
    for i in range(count):
        await store.append(AuditRecord(event="tool.call", subject=f"user{i}", tool="crm.find_customer"))
    return store


async def test_records_get_consecutive_sequence_numbers_and_verify(tmp_path: Path) -> None:
    store = await filled(tmp_path / "a.db", 5)
    assert await store.append(AuditRecord(event="tool.call")) == 6
    await store.close()
    report = verify_file(tmp_path / "a.db")
    assert report.ok and report.records == 6


async def test_concurrent_appends_share_commits_and_keep_the_chain(tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "a.db")
    store.open()
    seqs: list[int] = []

    async def write(i: int) -> None:
        seqs.append(await store.append(AuditRecord(event="tool.call", subject=f"u{i}")))

    async with anyio.create_task_group() as tasks:
        for i in range(300):
            tasks.start_soon(write, i)
    await store.close()
    assert sorted(seqs) == list(range(1, 301))
    assert verify_file(tmp_path / "a.db").records == 300


async def test_update_delete_and_replace_are_refused_by_triggers(tmp_path: Path) -> None:
    await (await filled(tmp_path / "a.db", 3)).close()
    db = connect(tmp_path / "a.db")
    for sql in (
        "UPDATE audit_log SET subject = 'mallory' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 3",
        "INSERT OR REPLACE INTO audit_log SELECT * FROM audit_log WHERE seq = 1",
        "INSERT INTO audit_log (seq, ts, event, body, prev_hash, hash) VALUES (9, 't', 'e', '{}', 'x', 'y')",
    ):
        with pytest.raises(sqlite3.IntegrityError):
            db.execute(sql)
    db.close()
    assert verify_file(tmp_path / "a.db").ok


def tamper(path: Path, *statements: str) -> None:
    db = connect(path)
    db.executescript("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; DROP TRIGGER audit_extends_chain;")
    for statement in statements:
        db.execute(statement)
    db.close()


async def test_verify_finds_an_edited_record_in_the_middle(tmp_path: Path) -> None:
    await (await filled(tmp_path / "a.db")).close()
    tamper(tmp_path / "a.db", "UPDATE audit_log SET body = replace(body, 'user4', 'mallory') WHERE seq = 5")
    report = verify_file(tmp_path / "a.db")
    assert not report.ok and report.first_bad_seq == 5 and "altered" in (report.problem or "")


async def test_verify_finds_an_edited_column_that_the_hash_does_not_cover(tmp_path: Path) -> None:
    await (await filled(tmp_path / "a.db")).close()
    tamper(tmp_path / "a.db", "UPDATE audit_log SET subject = 'mallory' WHERE seq = 4")
    report = verify_file(tmp_path / "a.db")
    assert not report.ok and report.first_bad_seq == 4


async def test_verify_finds_a_deleted_record(tmp_path: Path) -> None:
    await (await filled(tmp_path / "a.db")).close()
    tamper(tmp_path / "a.db", "DELETE FROM audit_log WHERE seq = 6")
    report = verify_file(tmp_path / "a.db")
    assert not report.ok and report.first_bad_seq == 6 and "missing" in (report.problem or "")


async def test_verify_finds_a_deleted_record_whose_successors_were_renumbered(tmp_path: Path) -> None:
    await (await filled(tmp_path / "a.db")).close()
    tamper(
        tmp_path / "a.db",
        "DELETE FROM audit_log WHERE seq = 6",
        "UPDATE audit_log SET seq = seq - 1 WHERE seq > 6",
    )
    report = verify_file(tmp_path / "a.db")
    assert not report.ok and report.first_bad_seq == 6


async def test_verify_finds_reordered_records(tmp_path: Path) -> None:
    await (await filled(tmp_path / "a.db")).close()
    tamper(
        tmp_path / "a.db",
        "UPDATE audit_log SET seq = -3 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = 7",
        "UPDATE audit_log SET seq = 7 WHERE seq = -3",
    )
    report = verify_file(tmp_path / "a.db")
    assert not report.ok and report.first_bad_seq == 3


async def test_statements_commit_with_their_record_or_not_at_all(tmp_path: Path) -> None:
    store = await filled(tmp_path / "a.db", 1)
    good = Statement("INSERT INTO meta (key, value) VALUES ('k1', 'v')")
    bad = Statement("INSERT INTO no_such_table VALUES (1)")
    assert await store.append(AuditRecord(event="x"), [good]) == 2
    with pytest.raises(AuditWriteError):
        await store.append(AuditRecord(event="y"), [bad])
    assert await store.append(AuditRecord(event="z")) == 3
    await store.close()
    db = connect(tmp_path / "a.db")
    assert [row[0] for row in db.execute("SELECT event FROM audit_log ORDER BY seq")] == ["tool.call", "x", "z"]
    db.close()
    assert verify_file(tmp_path / "a.db").ok


async def test_appending_after_close_fails_closed(tmp_path: Path) -> None:
    store = await filled(tmp_path / "a.db", 1)
    await store.close()
    with pytest.raises(AuditWriteError):
        await store.append(AuditRecord(event="late"))


async def test_a_second_writer_process_extends_the_same_chain(tmp_path: Path) -> None:
    first = await filled(tmp_path / "a.db", 2)
    second = await filled(tmp_path / "a.db", 2)
    assert await first.append(AuditRecord(event="again")) == 5
    await first.close()
    await second.close()
    assert verify_file(tmp_path / "a.db").records == 5


async def test_a_non_durable_record_is_visible_at_once_and_chained_with_durable_ones(tmp_path: Path) -> None:
    store = await filled(tmp_path / "a.db", 1)
    seq = await store.append(AuditRecord(event="tool.intent"), durable=False)
    reader = connect(tmp_path / "a.db")
    assert reader.execute("SELECT event FROM audit_log WHERE seq = ?", (seq,)).fetchone() == ("tool.intent",)
    assert reader.execute("PRAGMA synchronous").fetchone() == (2,)  # readers' own setting is untouched
    reader.close()
    assert await store.append(AuditRecord(event="tool.call")) == seq + 1
    await store.close()
    assert verify_file(tmp_path / "a.db").records == 3
