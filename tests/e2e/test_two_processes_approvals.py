"""Two `portcullis serve` processes and CLI commands on one database: approvals stay exactly-once.

Requests arrive at both servers at once, approvers decide from the CLI (two of them racing on
the same requests), requesters wait on both servers. Each approved call runs exactly once (counted
by the payments tool's own rows in data/acme.db), denied and cancelled ones never, every waiter
gets the outcome with its reason, and the audit chain verifies. A server killed while it runs an
approved call leaves it `interrupted` (seen by the other server), never run again.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from servers import free_port, wait_for_http
from support import make_deployment, portcullis

from gateway import Gateway, OutcomeCode
from gateway.config import load_config
from gateway.pipeline import Caller

pytestmark = pytest.mark.anyio
REQUESTS = 6
HELD_TOOLS = '''
"""Test-only: a call that runs until the test lets it finish, and says so in a journal."""

import anyio

from gateway import ToolContext, tool


@tool(destructive=False)
async def until(name: str, *, ctx: ToolContext) -> str:
    """Wait until the file `name` exists in the deployment folder."""
    with (ctx.root / "started.log").open("a") as started:
        started.write(name + "\\n")
    while not ctx.path(name).exists():
        await anyio.sleep(0.02)
    with (ctx.root / "ran.log").open("a") as ran:
        ran.write(name + "\\n")
    return "released"
'''


@contextmanager
def servers(config: Path, count: int = 2) -> Iterator[list[tuple[subprocess.Popen[bytes], str]]]:
    """`count` real `portcullis serve` processes on the same deployment (and database), each on its own port."""
    started: list[tuple[subprocess.Popen[bytes], str]] = []
    logs = []
    try:
        for n in range(count):
            port = free_port()
            log = config.parent / f"server-{n}.log"
            output = log.open("w")
            logs.append(output)
            process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)],
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PORTCULLIS_SUBJECT": ""},
            )
            url = f"http://127.0.0.1:{port}/mcp"
            started.append((process, url))
            wait_for_http(url, process, log, 401)
        yield started
    finally:
        for process, _ in started:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=15)
        for output in logs:
            output.close()


@asynccontextmanager
async def session(url: str, subject: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer demo-{subject}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
    ):
        yield client


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await anyio.to_thread.run_sync(lambda: portcullis(*args))


def rows(path: Path, query: str, *params: Any) -> list[tuple[Any, ...]]:
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        return db.execute(query, params).fetchall()


def audit_events(config: Path, event: str) -> list[dict[str, Any]]:
    found = rows(config.parent / "audit" / "audit.db", "SELECT body FROM audit_log WHERE event = ? ORDER BY seq", event)
    return [json.loads(body) for (body,) in found]


def owner_pid(owner: str) -> int:
    return int(owner.split(":")[1])


async def test_two_servers_and_the_cli_run_each_approved_call_exactly_once(tmp_path: Path) -> None:
    config = make_deployment(tmp_path / "d", extra_policy="g, gina, role:manager\n")
    claims = [f"claim-{n}" for n in range(REQUESTS)]
    with servers(config) as running:
        pids = {process.pid for process, _ in running}
        urls = [url for _, url in running]
        ids: dict[str, str] = {}
        async with session(urls[0], "bob") as on_a, session(urls[1], "bob") as on_b:
            clients = [on_a, on_b]

            async def request(n: int) -> None:
                arguments = {"customer_id": "C004", "amount": 150 + n, "reason": claims[n]}
                result = await clients[n % 2].call_tool("payments.refund", arguments)
                assert result.meta is not None, result
                details = result.meta["portcullis/error"]
                assert details["code"] == "approval_required", details
                ids[claims[n]] = details["approval_id"]

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tasks:  # requests at both servers at once
                    for n in range(REQUESTS):
                        tasks.start_soon(request, n)

            waited: dict[tuple[str, int], dict[str, Any]] = {}
            decided: dict[str, list[subprocess.CompletedProcess[str]]] = {claim: [] for claim in claims}

            async def wait(claim: str, server: int) -> None:
                arguments = {"approval_id": ids[claim], "timeout_s": 45}
                result = await clients[server].call_tool("gateway.approval_wait", arguments)
                assert result.structured_content is not None, result
                waited[(claim, server)] = result.structured_content | {"text": result.content[0].text}  # type: ignore[union-attr]

            async def decide(claim: str, *args: str) -> None:
                decided[claim].append(await cli("approvals", *args, ids[claim], "--config", str(config)))

            with anyio.fail_after(90):
                async with anyio.create_task_group() as tasks:
                    for claim in claims:  # every request waited on at both servers
                        for server in (0, 1):
                            tasks.start_soon(wait, claim, server)
                    for claim in claims[:4]:  # two approvers race on each of the first four
                        tasks.start_soon(decide, claim, "approve", "--as", "carol")
                        tasks.start_soon(decide, claim, "approve", "--as", "gina")
                    tasks.start_soon(decide, claims[4], "deny", "--as", "carol", "--reason", "duplicate claim")
                    tasks.start_soon(decide, claims[5], "cancel", "--as", "bob", "--reason", "paid by card")

    for claim in claims[:4]:
        outcomes = sorted(done.returncode for done in decided[claim])
        assert outcomes == [0, 1], [d.stderr for d in decided[claim]]  # one approver won, the other was too late
        assert any("not_pending" in done.stderr for done in decided[claim])
        for server in (0, 1):
            assert waited[(claim, server)]["status"] == "succeeded"
            assert waited[(claim, server)]["result"]["structured"]["amount"] == 150 + claims.index(claim)
    assert [done.returncode for done in decided[claims[4]] + decided[claims[5]]] == [0, 0]
    for server in (0, 1):
        assert (waited[(claims[4], server)]["status"], waited[(claims[4], server)]["reason"]) == (
            "denied",
            "duplicate claim",
        )
        assert "duplicate claim" in waited[(claims[4], server)]["text"]
        assert waited[(claims[5], server)]["status"] == "cancelled"
        assert "paid by card" in waited[(claims[5], server)]["reason"]

    # The tool's own side effect: one refund row per approved request, none for the others.
    issued = rows(config.parent / "data" / "acme.db", "SELECT reason FROM refunds")
    assert sorted(reason for (reason,) in issued) == claims[:4]
    executing = audit_events(config, "approval.executing")
    assert sorted(record["approval_id"] for record in executing) == sorted(ids[c] for c in claims[:4])
    assert {owner_pid(record["detail"]["owner"]) for record in executing} <= pids
    assert sorted(r["approval_id"] for r in audit_events(config, "approval.approve")) == sorted(
        ids[c] for c in claims[:4]
    )  # the losing approver's decision was not recorded
    verified = portcullis("audit", "verify", "--config", str(config))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "chain intact" in verified.stdout


async def test_a_server_killed_mid_call_leaves_the_request_interrupted_and_the_other_never_reruns_it(
    tmp_path: Path,
) -> None:
    config = make_deployment(
        tmp_path / "d",
        extra_policy="p, role:support, held.*, call, approve, approver role:manager\n"
        "p, role:manager, held.*, approve, allow\n",
    )
    (config.parent / "tools" / "held.py").write_text(HELD_TOOLS)
    database = config.parent / "audit" / "audit.db"
    async with Gateway(load_config(config), mode="admin") as requester:  # a third process on the database
        held = await requester.call_tool(
            Caller(subject="alice", auth="test", transport="test"), "held.until", {"name": "go"}
        )
    assert held.code is OutcomeCode.APPROVAL_REQUIRED
    request_id = held.data["approval_id"]
    with servers(config) as running:
        approved = await cli("approvals", "approve", request_id, "--as", "carol", "--config", str(config))
        assert approved.returncode == 0, approved.stderr
        with anyio.fail_after(20):
            while not (
                claimed := rows(database, "SELECT lease_owner FROM approval_requests WHERE id = ?", request_id)
            ) or (claimed[0][0] is None or not (config.parent / "started.log").exists()):
                await anyio.sleep(0.05)
        owner = claimed[0][0]
        (victim,) = [process for process, _ in running if process.pid == owner_pid(owner)]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        with anyio.fail_after(20):  # the survivor sees the owner is gone, before its 30 s lease runs out
            while (
                rows(database, "SELECT status FROM approval_requests WHERE id = ?", request_id)[0][0] != "interrupted"
            ):
                await anyio.sleep(0.05)
        (config.parent / "go").write_text("")  # were it run again, it would finish now
        await anyio.sleep(1.0)  # many queue passes of the survivor
        (status,) = rows(database, "SELECT status FROM approval_requests WHERE id = ?", request_id)
        assert status == ("interrupted",)
    assert (config.parent / "started.log").read_text().splitlines() == ["go"]
    assert not (config.parent / "ran.log").exists()
    (record,) = audit_events(config, "approval.interrupted")
    assert record["detail"]["owner"] == owner and record["detail"]["owner_gone"] is True
    shown = json.loads(portcullis("approvals", "show", request_id, "--config", str(config), "--json").stdout)
    assert shown["status"] == "interrupted" and "not run again" in shown["status_reason"]
    verified = portcullis("audit", "verify", "--config", str(config))
    assert verified.returncode == 0, verified.stdout + verified.stderr
