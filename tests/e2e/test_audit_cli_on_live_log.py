"""`portcullis audit verify` on a log written by a real server: intact, then tampered copies."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from support import make_deployment

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def verify(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "audit", "verify", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def copy_deployment(config: Path, target: Path) -> Path:
    shutil.copytree(config.parent, target, ignore=shutil.ignore_patterns("*.log", "data"))
    return target / config.name


def tamper(config: Path, statement: str) -> None:
    db = sqlite3.connect(config.parent / "audit" / "audit.db")
    db.executescript("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; DROP TRIGGER audit_extends_chain;")
    db.execute(statement)
    db.commit()
    db.close()


async def test_verify_passes_on_a_live_log_and_fails_on_an_edited_or_deleted_record(tmp_path: Path) -> None:
    # A log of its own: the record edited below (the middle one) must be one of carol's calls.
    e2e_config = make_deployment(tmp_path / "live" / "deployment")
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "gateway", "serve", "--transport", "stdio", "--config", str(e2e_config), "--as", "carol"],
    )
    async with Client(params, mode="legacy") as client:
        for query in ("ada", "grace", "alan", "kat"):
            await client.call_tool("crm.find_customer", {"query": query})
    intact = verify(e2e_config)
    assert intact.returncode == 0, intact.stderr
    assert "chain intact" in intact.stdout

    db = sqlite3.connect(e2e_config.parent / "audit" / "audit.db")
    (last,) = db.execute("SELECT MAX(seq) FROM audit_log").fetchone()
    db.close()
    middle = last // 2

    edited = copy_deployment(e2e_config, tmp_path / "edited")
    tamper(edited, f"UPDATE audit_log SET body = replace(body, '\"carol\"', '\"erin\"') WHERE seq = {middle}")
    result = verify(edited)
    assert result.returncode == 1
    assert f"BROKEN at record {middle}" in result.stderr

    deleted = copy_deployment(e2e_config, tmp_path / "deleted")
    tamper(deleted, f"DELETE FROM audit_log WHERE seq = {middle}")
    result = verify(deleted)
    assert result.returncode == 1
    assert f"BROKEN at record {middle}" in result.stderr

    db = sqlite3.connect(e2e_config.parent / "audit" / "audit.db")
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("UPDATE audit_log SET subject = 'mallory' WHERE seq = ?", (middle,))
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("DELETE FROM audit_log WHERE seq = ?", (middle,))
    db.close()
