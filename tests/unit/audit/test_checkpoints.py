"""Signed checkpoints: a log cut short at its end, and a forged checkpoint, are both detected."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import cli

from gateway import Gateway
from gateway.cli import main
from gateway.config import load_config
from gateway.pipeline import Caller

pytestmark = pytest.mark.anyio
ALICE = Caller(subject="alice", auth="test", transport="test")


def verify(config_path: Path) -> dict[str, object]:
    result = CliRunner().invoke(main, ["audit", "verify", "--config", str(config_path), "--json"])
    report: dict[str, object] = json.loads(result.stdout)
    report["exit_code"] = result.exit_code
    return report


async def fill(config_path: Path, calls: int = 5) -> int:
    async with Gateway(load_config(config_path)) as gateway:
        for _ in range(calls):
            await gateway.call_tool(ALICE, "faulty.echo", {"text": "x"})
    db = sqlite3.connect(config_path.parent / "audit" / "audit.db")
    (last,) = db.execute("SELECT MAX(seq) FROM audit_log").fetchone()
    db.close()
    return int(last)


async def test_shutdown_signs_a_checkpoint_that_verify_checks(config_path: Path) -> None:
    last = await fill(config_path)
    lines = (config_path.parent / "audit" / "checkpoints.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["seq"] == last - 1  # the checkpoint record itself follows
    report = verify(config_path)
    assert report["ok"] is True and report["checkpoints"] == 1 and report["exit_code"] == 0


async def test_a_log_cut_short_at_its_end_is_detected(config_path: Path) -> None:
    last = await fill(config_path)
    db = sqlite3.connect(config_path.parent / "audit" / "audit.db")
    db.executescript("DROP TRIGGER audit_no_delete;")
    db.execute("DELETE FROM audit_log WHERE seq > ?", (last - 4,))
    db.commit()
    db.close()
    report = verify(config_path)
    assert report["exit_code"] == 1 and report["ok"] is False
    assert report["first_bad_seq"] == last - 3
    assert "removed from its end" in str(report["problem"])


async def test_a_forged_checkpoint_is_rejected(config_path: Path) -> None:
    await fill(config_path)
    path = config_path.parent / "audit" / "checkpoints.jsonl"
    forged = json.loads(path.read_text())
    forged["seq"] = 2
    path.write_text(json.dumps(forged) + "\n")
    report = verify(config_path)
    assert report["exit_code"] == 1 and report["first_bad_seq"] == 2
    assert "bad signature" in str(report["problem"])


async def test_a_checkpoint_can_be_written_on_demand(config_path: Path) -> None:
    await fill(config_path)
    result = cli("audit", "checkpoint", "--config", str(config_path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["signature"]
    assert verify(config_path)["checkpoints"] == 2
