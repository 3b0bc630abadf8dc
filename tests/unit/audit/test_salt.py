"""The audit salt lives outside the database (issue 12, item 9): erasing it unlinks hashes; the log still verifies."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from support import portcullis

from gateway import Gateway
from gateway.audit import redact_arguments
from gateway.config import load_config
from gateway.pipeline import Caller

pytestmark = pytest.mark.anyio
ALICE = Caller(subject="alice", auth="test", transport="test")
ADDRESS = "ada@acme.example"


def salt_file(config_path: Path) -> Path:
    return config_path.parent / "audit" / "audit.salt"


def guess(salt: str) -> str:
    """The hash someone holding `salt` computes for a guessed address."""
    hashed: dict[str, str] = redact_arguments({"to": ADDRESS}, (), salt, ("to",))
    return hashed["to"]


def database_bytes(config_path: Path) -> bytes:
    """The database as handed to an auditor: the main file, its WAL and shared memory, whatever exists."""
    return b"".join(path.read_bytes() for path in sorted((config_path.parent / "audit").glob("audit.db*")))


def stored_hashes(config_path: Path) -> list[str]:
    db = sqlite3.connect(config_path.parent / "audit" / "audit.db")
    rows = db.execute("SELECT body FROM audit_log WHERE event = 'tool.call' AND tool = 'email.send' ORDER BY seq")
    hashes = [json.loads(body)["arguments"]["to"] for (body,) in rows]
    db.close()
    return hashes


async def send_email(config_path: Path) -> bytes:
    """Run the gateway for one email.send call; return the database bytes as they were while it ran."""
    async with Gateway(load_config(config_path)) as gateway:
        await gateway.call_tool(ALICE, "email.send", {"to": ADDRESS, "subject": "Hello", "body": "b"})
        return database_bytes(config_path)


async def test_the_salt_file_is_created_with_mode_0600(config_path: Path) -> None:
    previous = os.umask(0)  # even a permissive umask leaves the salt readable by its owner only
    try:
        await send_email(config_path)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(salt_file(config_path).stat().st_mode) == 0o600


async def test_the_salt_is_nowhere_in_the_database(config_path: Path) -> None:
    while_running = await send_email(config_path)
    salt = salt_file(config_path).read_text().strip()
    (stored,) = stored_hashes(config_path)
    assert guess(salt) == stored  # the file holds the salt in use: with it a guess is confirmed
    assert b"Hello" in while_running  # the check can see what is stored
    for snapshot in (while_running, database_bytes(config_path)):
        assert salt.encode() not in snapshot and ADDRESS.encode() not in snapshot


@pytest.mark.slow
async def test_erasing_the_salt_leaves_hashes_unlinkable_and_the_log_still_verifies(config_path: Path) -> None:
    await send_email(config_path)
    erased = salt_file(config_path).read_text().strip()
    salt_file(config_path).unlink()  # "forget the salt to erase"

    await send_email(config_path)
    salt = salt_file(config_path).read_text().strip()
    before, after = stored_hashes(config_path)
    assert salt != erased
    assert guess(salt) == after and guess(salt) != before  # a guess no longer confirms the old record
    assert before != after  # nor can the two records of the same address be linked
    assert erased.encode() not in database_bytes(config_path)

    rotated = portcullis("audit", "query", "--config", str(config_path), "--event", "audit.salt_rotated", "--json")
    assert len(json.loads(rotated.stdout)) == 1, rotated.stderr
    verified = portcullis("audit", "verify", "--config", str(config_path))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "chain intact" in verified.stdout and "WARNING" not in verified.stderr


def plant_salt_in_meta(config_path: Path, salt: str) -> None:
    """What an older version left behind: the salt in clear in table `meta`."""
    db = sqlite3.connect(config_path.parent / "audit" / "audit.db")
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('salt', ?)", (salt,))
    db.commit()
    db.close()


@pytest.mark.slow
async def test_a_salt_an_older_version_kept_in_the_database_moves_to_the_file(config_path: Path) -> None:
    await send_email(config_path)
    salt = salt_file(config_path).read_text().strip()
    salt_file(config_path).unlink()
    plant_salt_in_meta(config_path, salt)
    assert salt.encode() in database_bytes(config_path)

    await send_email(config_path)
    assert salt_file(config_path).read_text().strip() == salt
    assert stat.S_IMODE(salt_file(config_path).stat().st_mode) == 0o600
    before, after = stored_hashes(config_path)
    assert before == after  # hashes recorded before the move still compare
    assert salt.encode() not in database_bytes(config_path)
    verified = portcullis("audit", "verify", "--config", str(config_path))
    assert verified.returncode == 0 and "WARNING" not in verified.stderr, verified.stderr

    # An older version ran again and stored another salt: the file wins, verify reports the row.
    plant_salt_in_meta(config_path, "0" * 32)
    await send_email(config_path)
    assert stored_hashes(config_path)[-1] == before
    verified = portcullis("audit", "verify", "--config", str(config_path))
    assert verified.returncode == 0 and "table meta still holds the audit salt" in verified.stderr
