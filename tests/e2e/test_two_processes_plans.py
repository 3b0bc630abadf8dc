"""Two `portcullis serve` processes on one database: a plan belongs to the process running it.

A second server starting beside the first leaves the first one's running plan alone (it used
to mark it interrupted, after which the plan failed on a stale state and never recorded its
end); the plan finishes on its own process with its finish record, and the chain verifies.
When the process running a plan is killed, the other server marks the plan interrupted on
its next pass, without a restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from servers import connector, free_port, wait_for_http
from support import make_deployment, portcullis

pytestmark = pytest.mark.anyio

HELD_TOOLS = '''
"""Test-only: a step that runs until the test lets it finish."""

import anyio

from gateway import ToolContext, tool


@tool(read_only=True)
async def until(name: str, *, ctx: ToolContext) -> str:
    """Wait until the file `name` exists in the deployment folder."""
    while not ctx.path(name).exists():
        await anyio.sleep(0.02)
    return "released"
'''


def held_plan(release: str) -> dict[str, Any]:
    step = {"id": "wait", "tool": "held.until", "arguments": {"name": release}}
    return {"version": 1, "goal": f"wait for {release}", "steps": [step]}


class Server:
    """`portcullis serve` over HTTP in a process of its own."""

    def __init__(self, config: Path, name: str) -> None:
        self.log = config.parent / f"{name}.log"
        self.url = f"http://127.0.0.1:{free_port()}/mcp"
        port = self.url.rsplit(":", 1)[1].split("/")[0]
        self._output = self.log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", port],
            stdout=self._output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PORTCULLIS_SUBJECT": ""},
        )
        wait_for_http(self.url, self.process, self.log, 401)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=30)
        self._output.close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def database(config: Path) -> sqlite3.Connection:
    return sqlite3.connect(config.parent / "audit" / "audit.db")


def records(config: Path, event: str) -> list[dict[str, Any]]:
    with database(config) as db:
        rows = db.execute("SELECT body FROM audit_log WHERE event = ? ORDER BY seq", (event,)).fetchall()
    return [json.loads(body) for (body,) in rows]


def run_row(config: Path, run_id: str) -> tuple[str, str]:
    with database(config) as db:
        status, owner = db.execute("SELECT status, lease_owner FROM plan_runs WHERE id = ?", (run_id,)).fetchone()
    return str(status), str(owner)


async def started_run(config: Path, count: int) -> str:
    """The id of the `count`th plan run, once it has started."""
    with anyio.fail_after(20):
        while len(started := records(config, "plan.started")) < count:
            await anyio.sleep(0.05)
    return str(started[count - 1]["plan_run_id"])


async def test_a_second_server_leaves_the_first_one_s_plan_running_and_takes_it_only_when_its_process_dies(
    tmp_path: Path, servers: list[Server]
) -> None:
    config = make_deployment(tmp_path / "d", extra_policy="p, role:support, held.*, call, allow\n")
    (config.parent / "tools" / "held.py").write_text(HELD_TOOLS)
    first = Server(config, "a")
    servers.append(first)
    alice = connector(config, "http-auto", lambda _: first.url)
    outcomes: list[Any] = []

    async with alice("alice") as client, anyio.create_task_group() as tasks:

        async def run_plan() -> None:
            outcomes.append(await client.call_tool("gateway.plan_run", {"plan": held_plan("go")}))

        tasks.start_soon(run_plan)
        run_id = await started_run(config, 1)
        second = await anyio.to_thread.run_sync(Server, config, "b")  # its start passes over running plans
        servers.append(second)
        assert records(config, "plan.interrupted") == []
        assert run_row(config, run_id)[0] == "running"
        (config.parent / "go").write_text("")

    (result,) = outcomes
    assert not result.is_error, result
    assert result.structured_content["status"] == "succeeded"
    finished = records(config, "plan.finished")
    assert [(r["plan_run_id"], r["detail"]["status"]) for r in finished] == [(run_id, "succeeded")]
    status, owner = run_row(config, run_id)
    assert status == "succeeded"
    assert owner.split(":")[1] == str(first.process.pid)  # the first server ran and finished it
    starts = records(config, "gateway.start")
    assert starts[-1]["seq"] > records(config, "plan.started")[0]["seq"]  # the second started mid-run

    # Now the first server dies mid-plan: the second marks the plan interrupted, with no restart.
    async def doomed_plan() -> None:
        with contextlib.suppress(Exception):  # its server is killed under the call
            async with alice("alice") as client:
                await client.call_tool("gateway.plan_run", {"plan": held_plan("never")})

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(doomed_plan)
        doomed = await started_run(config, 2)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
        tasks.cancel_scope.cancel()
    with anyio.fail_after(30):  # the second server's next pass (a third of a 30 s lease)
        while run_row(config, doomed)[0] == "running":
            await anyio.sleep(0.1)
    assert run_row(config, doomed)[0] == "interrupted"
    assert [r["detail"]["runs"] for r in records(config, "plan.interrupted")] == [[doomed]]

    second.stop()
    verified = await anyio.to_thread.run_sync(
        lambda: portcullis("audit", "verify", "--config", str(config), "--allow-missing-checkpoints")
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
