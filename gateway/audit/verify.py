"""Check the audit chain: every record is where it was written, as it was written."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from gateway.audit.checkpoints import load_public_key, read_file, verify_checkpoints
from gateway.audit.query import open_readonly
from gateway.audit.records import chain_hash
from gateway.audit.schema import GENESIS_HASH

Progress = Callable[[int], None]
"""Told how many more records were processed (a progress bar's `update`)."""
PROGRESS_EVERY = 10_000

_COLUMNS = ("ts", "event", "call_id", "subject", "tool", "decision", "outcome")


class VerifyReport(BaseModel):
    ok: bool
    records: int
    checkpoints: int = 0
    first_bad_seq: int | None = None
    problem: str | None = None


def verify_chain(connection: sqlite3.Connection, progress: Progress | None = None) -> VerifyReport:
    """Walk the log in order; report the first record that was edited, removed, inserted or moved.

    `progress` is told every `PROGRESS_EVERY` records how many more were checked.
    """
    expected_seq, prev_hash, count = 1, GENESIS_HASH, 0
    rows = connection.execute(f"SELECT seq, prev_hash, hash, body, {', '.join(_COLUMNS)} FROM audit_log ORDER BY seq")
    for seq, stored_prev, stored_hash, body, *columns in rows:
        if seq != expected_seq:
            return _bad(count, expected_seq, f"record {expected_seq} is missing (next record is {seq})")
        if stored_prev != prev_hash:
            return _bad(count, seq, f"record {seq} does not link to record {seq - 1} (deleted, inserted or moved)")
        if chain_hash(stored_prev, body) != stored_hash:
            return _bad(count, seq, f"record {seq} was altered: its hash does not match its content")
        try:
            content = json.loads(body)
        except json.JSONDecodeError:
            return _bad(count, seq, f"record {seq} has a body that is not JSON")
        if content.get("seq") != seq:
            return _bad(count, seq, f"record {seq} carries sequence number {content.get('seq')} (moved)")
        for name, value in zip(_COLUMNS, columns, strict=True):
            if content.get(name) != value:
                return _bad(count, seq, f"record {seq} was altered: column {name} differs from the hashed content")
        expected_seq, prev_hash, count = seq + 1, stored_hash, count + 1
        if progress is not None and count % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
    return VerifyReport(ok=True, records=count)


def verify_file(
    path: Path, checkpoint_file: Path | None = None, public_key: Path | None = None, progress: Progress | None = None
) -> VerifyReport:
    """The chain, then every signed checkpoint (when a checkpoint file and public key are given)."""
    connection = open_readonly(path)
    try:
        report = verify_chain(connection, progress)
        if not report.ok or checkpoint_file is None or public_key is None or not checkpoint_file.exists():
            return report
        entries = read_file(checkpoint_file)
        heads = dict(connection.execute("SELECT seq, hash FROM audit_log").fetchall())
    finally:
        connection.close()
    if not public_key.exists():
        return VerifyReport(
            ok=False, records=report.records, problem=f"no public key at {public_key} to check checkpoints"
        )
    problem = verify_checkpoints(heads, report.records, entries, load_public_key(public_key))
    if problem is not None:
        return VerifyReport(
            ok=False, records=report.records, checkpoints=len(entries), first_bad_seq=problem[0], problem=problem[1]
        )
    return report.model_copy(update={"checkpoints": len(entries)})


def _bad(count: int, seq: int, problem: str) -> VerifyReport:
    return VerifyReport(ok=False, records=count, first_bad_seq=seq, problem=problem)
