"""Long audit commands show progress on a terminal and stay quiet when piped."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from gateway.audit import AuditRecord, AuditStore
from gateway.config import load_config
from support import cli, make_deployment


def fill(config_path: Path, records: int) -> None:
    config = load_config(config_path)

    async def write() -> None:
        store = AuditStore(config.resolve(config.audit.path))
        store.open(None)
        try:
            async with anyio.create_task_group() as tasks:
                for worker in range(32):
                    tasks.start_soon(lambda w=worker: _write(store, w, records // 32))
        finally:
            await store.close()

    anyio.run(write)
    # verify needs a signed checkpoint (and its external copy) to pass
    assert cli("audit", "checkpoint", "--config", str(config_path)).returncode == 0


async def _write(store: AuditStore, worker: int, count: int) -> None:
    for i in range(count):
        await store.append(
            AuditRecord(event="tool.call", subject=f"u{worker}", tool="bench.x", call_id=f"{worker}-{i}")
        )


def run_on_terminal(*args: str) -> tuple[int, str]:
    """Run the CLI with stderr on a pseudo-terminal; return its exit status and what the terminal showed."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "gateway", *args], stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the follower closed: the process is done
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    return process.wait(timeout=60), shown.decode(errors="replace")


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deployment whose log is long enough to show progress (filled once: the commands only read it)."""
    config_path = make_deployment(tmp_path_factory.mktemp("progress") / "deployment")
    fill(config_path, 25_600)
    return config_path


@pytest.mark.slow
@pytest.mark.parametrize(("command", "label"), [(["audit", "verify"], "verifying"), (["audit", "export"], "exporting")])
def test_progress_on_a_terminal_and_none_when_piped(filled: Path, command: list[str], label: str) -> None:
    config_path = filled
    status, shown = run_on_terminal(*command, "--config", str(config_path))
    assert status == 0
    assert label in shown and "25601" in shown
    piped = subprocess.run(
        [sys.executable, "-m", "gateway", *command, "--config", str(config_path)], capture_output=True, text=True
    )
    assert piped.returncode == 0 and piped.stderr == ""
