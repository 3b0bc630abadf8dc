"""The audit log under load and failure: nothing lost, calls refused when it cannot be written,
and a crash between intent and outcome leaves a visible incomplete record."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters
from support import cli, make_deployment

from gateway import Gateway, OutcomeCode
from gateway.config import load_config
from gateway.pipeline import Caller

pytestmark = pytest.mark.anyio
ALICE = Caller(subject="alice", auth="test", transport="test")


def count(path: Path, where: str) -> int:
    db = sqlite3.connect(path.parent / "audit" / "audit.db")
    (value,) = db.execute(f"SELECT COUNT(*) FROM audit_log WHERE {where}").fetchone()
    db.close()
    return int(value)


@pytest.mark.slow
async def test_no_record_is_lost_under_64_concurrent_callers(tmp_path: Path) -> None:
    path = make_deployment(tmp_path / "d")
    outcomes: list[OutcomeCode] = []
    async with Gateway(load_config(path)) as gateway:

        async def caller(index: int) -> None:
            for call in range(10):
                outcome = await gateway.call_tool(ALICE, "faulty.echo", {"text": f"{index}-{call}"})
                outcomes.append(outcome.code)

        async with anyio.create_task_group() as tasks:
            for index in range(64):
                tasks.start_soon(caller, index)
    assert len(outcomes) == 640 and set(outcomes) == {OutcomeCode.OK}
    assert count(path, "event = 'tool.call' AND tool = 'faulty.echo'") == 640
    assert count(path, "event = 'tool.intent' AND tool = 'faulty.echo'") == 640
    assert cli("audit", "verify", "--config", str(path)).returncode == 0


async def test_calls_are_refused_when_the_log_cannot_be_written(tmp_path: Path) -> None:
    path = make_deployment(tmp_path / "d")
    database = path.parent / "audit" / "audit.db"
    async with Gateway(load_config(path)) as gateway:
        assert (await gateway.call_tool(ALICE, "faulty.echo", {"text": "before"})).code is OutcomeCode.OK
        # Another writer holds the write lock far longer than the writer waits: the disk is as good as gone.
        blocker = sqlite3.connect(database, timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            gateway.audit.write_timeout_seconds = 0.2
            outcome = await gateway.call_tool(
                ALICE, "tickets.create", {"customer_id": "C001", "subject": "s", "body": "b"}
            )
        finally:
            blocker.rollback()
            blocker.close()
        assert outcome.code is OutcomeCode.AUDIT_UNAVAILABLE
        after = await gateway.call_tool(ALICE, "faulty.echo", {"text": "after"})
        assert after.code is OutcomeCode.OK
    # the tool never ran: the demo's database is created by the first tool that does
    assert not (path.parent / "data" / "acme.db").exists()


@pytest.mark.e2e
async def test_a_crash_mid_call_leaves_a_started_record_and_the_chain_verifies(tmp_path: Path) -> None:
    path = make_deployment(tmp_path / "d")
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "gateway", "serve", "--transport", "stdio", "--config", str(path), "--as", "alice"],
    )
    with pytest.raises(Exception):  # noqa: B017 - the server dies under the call
        async with Client(params, mode="legacy") as client, anyio.create_task_group() as tasks:
            tasks.start_soon(client.call_tool, "faulty.slow", {"seconds": 0.4})
            with anyio.fail_after(10):
                while count(path, "event = 'tool.intent' AND tool = 'faulty.slow'") == 0:
                    await anyio.sleep(0.02)
            found = subprocess.run(
                ["pgrep", "-f", f"serve --transport stdio --config {path}"], capture_output=True, text=True
            )
            pids = [int(pid) for pid in found.stdout.split()]
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
    started = count(path, "event = 'tool.intent' AND tool = 'faulty.slow'")
    finished = count(path, "event = 'tool.call' AND tool = 'faulty.slow'")
    assert (started, finished) == (1, 0)
    # killed before its first checkpoint: there is no external copy yet
    assert cli("audit", "verify", "--config", str(path), "--allow-missing-checkpoints").returncode == 0
    async with Gateway(load_config(path)) as gateway:  # restart: the chain goes on
        assert (await gateway.call_tool(ALICE, "faulty.echo", {"text": "x"})).code is OutcomeCode.OK
    assert cli("audit", "verify", "--config", str(path)).returncode == 0
