"""Check the audit log: every record is where it was written, as it was written, and nothing was rewritten.

The chain shows an edited, removed, inserted or moved record; the signed checkpoints, in the log
and in the external copy, show a log cut short or rewritten from its first record and re-hashed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from gateway.audit.checkpoints import (
    Checkpoint,
    load_public_key,
    missing_from_copy,
    missing_from_log,
    read_file,
    verify_checkpoints,
    verify_logged,
)
from gateway.audit.reader import COLUMNS, AuditReader, SqliteAuditReader
from gateway.audit.records import chain_hash
from gateway.audit.schema import GENESIS_HASH

Progress = Callable[[int], None]
"""Told how many more records were processed (a progress bar's `update`)."""
PROGRESS_EVERY = 10_000
COPY_GRACE_SECONDS = 2.0
"""How long verify waits for a running gateway to append to the external copy a checkpoint already in the log."""


class VerifyReport(BaseModel):
    ok: bool
    records: int
    checkpoints: int = 0
    """Signed checkpoint records found in the log."""
    external_checkpoints: int | None = None
    """Checkpoints in the external copy (`checkpoint_file`); None when it is missing or not given."""
    checkpoint_file: str | None = None
    first_bad_seq: int | None = None
    problem: str | None = None
    warnings: list[str] = Field(default_factory=list)
    """Findings that do not make the log untrustworthy by themselves (or that the caller chose to accept)."""


def verify_chain(reader: AuditReader, progress: Progress | None = None) -> VerifyReport:
    """Walk the log in order; report the first record that was edited, removed, inserted or moved.

    `progress` is told every `PROGRESS_EVERY` records how many more were checked.
    """
    expected_seq, prev_hash, count = 1, GENESIS_HASH, 0
    for entry in reader.entries():
        seq, stored_prev, stored_hash, body = entry.seq, entry.prev_hash, entry.hash, entry.body
        if seq != expected_seq:
            return _broken(count, expected_seq, f"record {expected_seq} is missing (next record is {seq})")
        if stored_prev != prev_hash:
            return _broken(count, seq, f"record {seq} does not link to record {seq - 1} (deleted, inserted or moved)")
        if chain_hash(stored_prev, body) != stored_hash:
            return _broken(count, seq, f"record {seq} was altered: its hash does not match its content")
        try:
            content = json.loads(body)
        except json.JSONDecodeError:
            return _broken(count, seq, f"record {seq} has a body that is not JSON")
        if content.get("seq") != seq:
            return _broken(count, seq, f"record {seq} carries sequence number {content.get('seq')} (moved)")
        for name, value in zip(COLUMNS, entry.columns, strict=True):
            if content.get(name) != value:
                return _broken(count, seq, f"record {seq} was altered: column {name} differs from the hashed content")
        expected_seq, prev_hash, count = seq + 1, stored_hash, count + 1
        if progress is not None and count % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
    return VerifyReport(ok=True, records=count)


def verify_file(
    path: Path,
    checkpoint_file: Path | None = None,
    public_key: Path | None = None,
    progress: Progress | None = None,
    *,
    require_checkpoint_file: bool = True,
) -> VerifyReport:
    """`verify_log` on the SQLite database at `path`."""
    with SqliteAuditReader(path) as reader:
        return verify_log(
            reader, checkpoint_file, public_key, progress, require_checkpoint_file=require_checkpoint_file
        )


def verify_log(
    reader: AuditReader,
    checkpoint_file: Path | None = None,
    public_key: Path | None = None,
    progress: Progress | None = None,
    *,
    require_checkpoint_file: bool = True,
) -> VerifyReport:
    """The chain, every signed checkpoint in the log, and the external copy of the checkpoints.

    The chain alone cannot show a log rewritten from its first record and re-hashed: the
    checkpoints signed by the configured key can, and the external copy (`checkpoint_file`)
    still can when the rewrite also removed the checkpoint records from the log. So a missing
    copy fails verification unless `require_checkpoint_file` is False (then it is a warning).
    Without `checkpoint_file` and `public_key` (a library caller), only the chain is checked.
    """
    # The copy is read before the log (and again after it, see compare_copies): the gateway writes
    # a checkpoint to the log first, so a live log always holds what the copy read first holds.
    external = read_file(checkpoint_file) if checkpoint_file is not None and checkpoint_file.exists() else None
    report = verify_chain(reader, progress)
    if not report.ok:
        return report
    logged = _logged_checkpoints(reader)
    signed_seqs = {e.seq for _, e in logged if isinstance(e, Checkpoint)}
    signed_seqs |= {e.seq for e in external or () if isinstance(e, Checkpoint)}
    heads = reader.hashes(signed_seqs)
    report = report.model_copy(update={"checkpoints": len(logged), "warnings": reader.findings()})
    if public_key is None:
        if logged:
            report.warnings.append(f"{len(logged)} checkpoint record(s) in the log not checked: no public key given")
        return report
    if checkpoint_file is not None:
        report = report.model_copy(update={"checkpoint_file": str(checkpoint_file)})
    public = load_public_key(public_key) if public_key.exists() else None
    if public is None and (logged or external):
        return _bad(report, None, f"no public key at {public_key} to check the signed checkpoints")
    problem = verify_logged(heads, logged, public) if public is not None else None
    if problem is not None:
        return _bad(report, *problem)
    if checkpoint_file is None:
        return report
    if external is None:
        missing = _missing_copy(checkpoint_file, len(logged))
        if require_checkpoint_file:
            return _bad(report, None, missing)
        report.warnings.append(missing)
        return report
    report = report.model_copy(update={"external_checkpoints": len(external)})
    problem = verify_checkpoints(heads, report.records, external, public) if public is not None else None
    signed = [entry for _, entry in logged if isinstance(entry, Checkpoint)]
    if problem is None:
        problem = missing_from_log(signed, _signed(external), checkpoint_file)
    if problem is None:
        problem = _copy_catches_up(signed, checkpoint_file)
    if problem is not None:
        return _bad(report, problem[0] or None, problem[1])
    return report


def _signed(entries: list[Checkpoint | dict[str, Any]]) -> list[Checkpoint]:
    return [entry for entry in entries if isinstance(entry, Checkpoint)]


def _copy_catches_up(logged: list[Checkpoint], file: Path) -> tuple[int, str] | None:
    """`missing_from_copy`, allowing a running gateway the moment between its two writes of a checkpoint.

    Costs nothing when the copies agree; a real disagreement is reported after `COPY_GRACE_SECONDS`.
    """
    deadline = time.monotonic() + COPY_GRACE_SECONDS
    while True:
        problem = missing_from_copy(logged, _signed(read_file(file)), file)
        if problem is None or time.monotonic() >= deadline:
            return problem
        time.sleep(0.05)


def _logged_checkpoints(reader: AuditReader) -> list[tuple[int, Checkpoint | str]]:
    """The log's `audit.checkpoint` records, in order: the checkpoint each carries, or why it carries none."""
    found: list[tuple[int, Checkpoint | str]] = []
    for entry in reader.entries(event="audit.checkpoint"):
        try:
            found.append((entry.seq, Checkpoint.model_validate(json.loads(entry.body).get("detail"))))
        except (ValueError, TypeError) as exc:
            found.append((entry.seq, str(exc).splitlines()[0]))
    return found


def _missing_copy(file: Path, logged: int) -> str:
    held = (
        f"the log holds {logged} signed checkpoint(s) but their copy is gone"
        if logged
        else "no checkpoint has been signed yet (portcullis audit checkpoint writes one)"
    )
    return (
        f"no external checkpoint copy at {file} (audit.checkpoint_file): {held}. That copy is what shows a"
        " whole-log rewrite (every record re-hashed and the checkpoint records dropped); without it the log"
        " cannot be shown complete and unrewritten. Restore it from where it is shipped (another disk, another"
        " host, a write-once bucket) and pass it with --checkpoints, or accept the risk with"
        " --allow-missing-checkpoints."
    )


def _bad(report: VerifyReport, seq: int | None, problem: str) -> VerifyReport:
    return report.model_copy(update={"ok": False, "first_bad_seq": seq, "problem": problem})


def _broken(count: int, seq: int, problem: str) -> VerifyReport:
    return VerifyReport(ok=False, records=count, first_bad_seq=seq, problem=problem)
