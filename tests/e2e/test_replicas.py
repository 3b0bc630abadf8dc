"""Three `portcullis serve` replicas on one PostgreSQL, behind a real HAProxy: one truth for all of them.

What a company running replicas relies on, each checked through real processes: a caller's rate limit
is one quota (not one per replica); a private read on one replica and an external send on another
are one flow; an approved call runs exactly once whichever replica's worker sees it first; every
replica's records extend one hash chain that `audit verify` accepts. Behind HAProxy, handshake-era
sessions stick to their replica, stateless-era requests go anywhere, and a replica that dies costs
its own sessions only: new requests go to the others.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import psycopg
import httpx2
import pytest
import yaml
from haproxy import haproxy
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pg import PostgresServer, postgres_server
from servers import free_port, wait_for_http
from support import make_guarded_deployment, portcullis

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]
REPLICAS = 3


@pytest.fixture
def deployment(tmp_path: Path, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo plus the lab tools on a fresh PostgreSQL database, its schema created by `db init`."""
    database = postgres.create_database()
    monkeypatch.setenv("PORTCULLIS_DATABASE_URL", postgres.dsn(database))  # `db init` runs as the schema owner
    config = make_guarded_deployment(
        tmp_path / "d",
        [{"tools": "lab.echo", "labels": ["private_data"]}, {"tools": "lab.fetch", "labels": ["external_sink"]}],
        flows=[{"after": ["private_data"], "sink": "external_sink", "action": "block"}],
        rate_limits=[{"tools": "lab.grep", "rate": 3, "per_seconds": 3600, "burst": 3}],
    )
    settings = yaml.safe_load(config.read_text())
    settings["store"] = {"backend": "postgresql", "dsn": "${PORTCULLIS_DATABASE_URL}"}
    settings["audit"]["salt"] = "${PORTCULLIS_AUDIT_SALT}"  # one salt for every replica
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    monkeypatch.setenv("PORTCULLIS_AUDIT_SALT", "replicas-test-salt")
    with (config.parent / "policies" / "policy.csv").open("a") as policy:
        policy.write("g, gina, role:manager\n")
    initialised = portcullis("db", "init", "--config", str(config))
    assert initialised.returncode == 0, initialised.stderr
    # The replicas connect as a role that owns nothing: a member of portcullis_gateway, as the README says.
    role = f"app_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.dsn(database), autocommit=True) as owner:
        owner.execute(f"CREATE ROLE {role} LOGIN IN ROLE portcullis_gateway")
    monkeypatch.setenv("PORTCULLIS_DATABASE_URL", postgres.dsn(database, user=role))
    return config


@contextmanager
def replicas(config: Path, count: int = REPLICAS) -> Iterator[list[tuple[subprocess.Popen[bytes], int]]]:
    """`count` real `portcullis serve` processes on one deployment and one database, each on its own port."""
    started: list[tuple[subprocess.Popen[bytes], int]] = []
    logs = []
    try:
        for n in range(count):
            port = free_port()
            output = (config.parent / f"replica-{n}.log").open("w")
            logs.append(output)
            process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)],
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PORTCULLIS_SUBJECT": ""},
            )
            started.append((process, port))
        for n, (process, port) in enumerate(started):
            wait_for_http(f"http://127.0.0.1:{port}/mcp", process, config.parent / f"replica-{n}.log", 401)
        yield started
    finally:
        for process, _ in started:
            if process.poll() is None:
                process.terminate()
        for process, _ in started:
            process.wait(timeout=20)
        for output in logs:
            output.close()


@asynccontextmanager
async def client(url: str, subject: str, mode: str = "auto") -> AsyncIterator[Client]:
    """An SDK client as `subject`: `auto` speaks the stateless 2026 era, `legacy` holds a session."""
    headers = {"Authorization": f"Bearer demo-{subject}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as session,
    ):
        yield session


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}/mcp"


def code(result: Any) -> str:
    """The machine-readable outcome of a tool result: `ok`, or the refusal's code (a pending approval is
    a refusal with `isError` false)."""
    error = (result.meta or {}).get("portcullis/error")
    return "ok" if error is None else str(error["code"])


def verify(config: Path) -> subprocess.CompletedProcess[str]:
    return portcullis("audit", "verify", "--config", str(config), "--allow-missing-checkpoints")


async def test_replicas_share_one_quota_one_flow_and_one_chain(deployment: Path) -> None:
    with replicas(deployment) as running:
        ports = [port for _, port in running]
        async with (
            client(url(ports[0]), "alice") as r0,
            client(url(ports[1]), "alice") as r1,
            client(url(ports[2]), "alice") as r2,
        ):
            on = [r0, r1, r2]
            # Rate limit: 3 per hour for alice's lab.grep, asked 9 times, 3 at each replica.
            codes = [code(await on[n % 3].call_tool("lab.grep", {"pattern": f"p{n}"})) for n in range(9)]
            assert codes.count("ok") == 3, codes
            assert codes.count("rate_limited") == 6, codes

            # Flow: a send is fine before any private read; a private read on replica 0 blocks a send on replica 1.
            assert code(await r2.call_tool("lab.fetch", {"url": "https://example.com/a"})) == "ok"
            assert code(await r0.call_tool("lab.echo", {"text": "customer record"})) == "ok"
            blocked = await r1.call_tool("lab.fetch", {"url": "https://example.com/b"})
            assert code(blocked) == "guardrail_blocked", blocked
            assert "private_data" in blocked.content[0].text  # type: ignore[union-attr]

    verified = verify(deployment)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "chain intact" in verified.stdout
    starts = json.loads(
        portcullis("audit", "query", "--config", str(deployment), "--event", "gateway.start", "--format", "json").stdout
    )
    assert len(starts) == REPLICAS  # every replica wrote into the one chain


async def test_an_approved_call_runs_once_whichever_replica_sees_it(deployment: Path) -> None:
    claims = [f"claim-{n}" for n in range(4)]
    with replicas(deployment) as running:
        ports = [port for _, port in running]
        async with (
            client(url(ports[0]), "bob", "legacy") as r0,
            client(url(ports[1]), "bob", "legacy") as r1,
            client(url(ports[2]), "bob", "legacy") as r2,
        ):
            on = [r0, r1, r2]
            ids: dict[str, str] = {}
            for n, claim in enumerate(claims):
                arguments = {"customer_id": "C004", "amount": 150 + n, "reason": claim}
                result = await on[n % 3].call_tool("payments.refund", arguments)
                assert code(result) == "approval_required", result
                ids[claim] = result.meta["portcullis/error"]["approval_id"]  # type: ignore[index]

            waited: dict[tuple[str, int], dict[str, Any]] = {}
            decided: dict[str, list[subprocess.CompletedProcess[str]]] = {claim: [] for claim in claims}

            async def wait(claim: str, replica: int) -> None:
                arguments = {"approval_id": ids[claim], "timeout_s": 45}
                result = await on[replica].call_tool("gateway.approval_wait", arguments)
                assert result.structured_content is not None, result
                waited[(claim, replica)] = result.structured_content

            async def decide(claim: str, approver: str) -> None:
                args = ("approvals", "approve", ids[claim], "--as", approver, "--config", str(deployment))
                decided[claim].append(await anyio.to_thread.run_sync(lambda: portcullis(*args)))

            with anyio.fail_after(90):
                async with anyio.create_task_group() as tasks:
                    for claim in claims:
                        for replica in range(REPLICAS):
                            tasks.start_soon(wait, claim, replica)
                        tasks.start_soon(decide, claim, "carol")  # two approvers race on each request
                        tasks.start_soon(decide, claim, "gina")

    for claim in claims:
        assert sorted(done.returncode for done in decided[claim]) == [0, 1], [d.stderr for d in decided[claim]]
        for replica in range(REPLICAS):
            assert waited[(claim, replica)]["status"] == "succeeded", waited[(claim, replica)]
    with sqlite3.connect(deployment.parent / "data" / "acme.db") as db:
        issued = sorted(reason for (reason,) in db.execute("SELECT reason FROM refunds"))
    assert issued == claims  # the tool's own side effect: one refund per approved request
    verified = verify(deployment)
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_behind_haproxy_sessions_stick_and_a_dead_replica_costs_only_its_own(
    deployment: Path, tmp_path: Path
) -> None:
    with replicas(deployment) as running, haproxy(tmp_path / "haproxy", [port for _, port in running]) as front:
        # A handshake-era session lives in one replica: every call of it reaches that replica.
        async with client(front, "alice", "legacy") as held:
            for n in range(6):
                assert code(await held.call_tool("lab.echo", {"text": f"held {n}"})) == "ok"
        # Stateless requests go round the replicas; all are answered.
        async with client(front, "alice") as stateless:
            for n in range(6):
                assert code(await stateless.call_tool("lab.echo", {"text": f"any {n}"})) == "ok"

        process, _ = running[0]
        process.send_signal(signal.SIGKILL)  # a replica dies without a word
        process.wait(timeout=10)
        async with client(front, "alice") as stateless:
            with anyio.fail_after(30):
                for n in range(9):  # every request is answered by a live replica (HAProxy redispatches)
                    assert code(await stateless.call_tool("lab.echo", {"text": f"after {n}"})) == "ok"
        async with client(front, "alice", "legacy") as fresh:  # a new session lands on a live replica
            assert code(await fresh.call_tool("lab.echo", {"text": "new session"})) == "ok"


async def test_a_decision_on_one_replica_wakes_the_waiter_on_another_at_once(deployment: Path) -> None:
    # Polls every 30 s: only the notice the deciding transaction sends can wake the waiter within a second.
    text = deployment.read_text().replace("poll_seconds: 0.05", "poll_seconds: 30")
    assert "poll_seconds: 30" in text
    deployment.write_text(text)
    with replicas(deployment, 2) as running:
        a, b = (url(port) for _, port in running)
        async with client(a, "bob", "legacy") as requester, client(b, "carol") as approver:
            for round_ in range(3):
                arguments = {"customer_id": "C004", "amount": 150 + round_, "reason": f"wake {round_}"}
                held = await requester.call_tool("payments.refund", arguments)
                assert code(held) == "approval_required", held
                request_id = held.meta["portcullis/error"]["approval_id"]  # type: ignore[index]
                woken: dict[str, Any] = {}

                async def wait(request_id: str = request_id, woken: dict[str, Any] = woken) -> None:
                    result = await requester.call_tool(
                        "gateway.approval_wait", {"approval_id": request_id, "timeout_s": 20}
                    )
                    woken["at"] = anyio.current_time()
                    woken["status"] = (result.structured_content or {}).get("status")

                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(wait)
                    await anyio.sleep(0.5)  # the waiter is waiting on replica A (an approval_wait is in flight)
                    decided = await approver.call_tool("gateway.approve", {"approval_id": request_id})
                    assert code(decided) == "ok", decided
                    decided_at = anyio.current_time()
                assert woken["status"] == "succeeded", woken
                assert woken["at"] - decided_at < 1.0, f"woken {woken['at'] - decided_at:.2f} s after the decision"


HELD_TOOLS = '''
"""Test-only: a call that runs until the test lets it finish, and says so in a journal."""

import anyio
import psycopg

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
HELD_POLICY = "p, role:support, held.*, call, approve, approver role:manager\np, role:manager, held.*, approve, allow\n"


def database_rows(query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(os.environ["PORTCULLIS_DATABASE_URL"]) as connection:
        return connection.execute(query, params).fetchall()


def owner_pid(owner: str) -> int:
    return int(owner.split(":")[1])


async def test_a_replica_killed_under_load_loses_nothing_acknowledged_and_runs_nothing_twice(
    deployment: Path, tmp_path: Path
) -> None:
    root = deployment.parent
    (root / "tools" / "held.py").write_text(HELD_TOOLS)
    with (root / "policies" / "policy.csv").open("a") as policy:
        policy.write(HELD_POLICY)
    names = [f"job-{n}" for n in range(6)]
    acknowledged: dict[int, str] = {}  # audit id -> the text of a call the caller was told succeeded
    failures: list[str] = []
    with replicas(deployment) as running, haproxy(tmp_path / "haproxy", [port for _, port in running]) as front:
        pids = {process.pid: process for process, _ in running}
        # Approved calls that run until released, claimed by the replicas' queue workers.
        async with client(front, "alice", "legacy") as requester:
            ids = []
            for name in names:
                held = await requester.call_tool("held.until", {"name": name})
                assert code(held) == "approval_required", held
                ids.append(held.meta["portcullis/error"]["approval_id"])  # type: ignore[index]
        for request_id in ids:
            approved = await anyio.to_thread.run_sync(
                lambda r=request_id: portcullis("approvals", "approve", r, "--as", "carol", "--config", str(deployment))
            )
            assert approved.returncode == 0, approved.stderr
        with anyio.fail_after(30):
            while (
                len(owners := database_rows("SELECT lease_owner FROM approval_requests WHERE status = 'executing'")) < 6
            ):
                await anyio.sleep(0.05)
        victim_pid = owner_pid(owners[0][0])
        claimed_by_victim = {
            row[0]
            for row in database_rows("SELECT id FROM approval_requests WHERE lease_owner LIKE %s", f"%:{victim_pid}:%")
        }
        assert claimed_by_victim

        stop = anyio.Event()

        async def load(worker: int) -> None:
            n = 0
            while not stop.is_set():
                try:
                    async with client(front, "alice") as session:
                        while not stop.is_set():
                            text = f"w{worker}-{n}"
                            n += 1
                            result = await session.call_tool("lab.echo", {"text": text})
                            if code(result) == "ok":
                                acknowledged[int(result.meta["portcullis/audit_id"])] = text  # type: ignore[index]
                            else:
                                failures.append(code(result))
                except Exception as exc:  # a call in flight on the killed replica broke its session: not acknowledged
                    failures.append(repr(exc))

        async with anyio.create_task_group() as tasks:
            for worker in range(16):
                tasks.start_soon(load, worker)
            await anyio.sleep(2)  # under load
            before = len(acknowledged)
            pids[victim_pid].send_signal(signal.SIGKILL)
            pids[victim_pid].wait(timeout=10)
            with anyio.fail_after(30):  # the survivors see the owner is gone, before its lease runs out
                while database_rows(
                    "SELECT count(*) FROM approval_requests WHERE id = ANY(%s) AND status <> 'interrupted'",
                    list(claimed_by_victim),
                )[0][0]:
                    await anyio.sleep(0.05)
            after_kill = len(acknowledged)
            await anyio.sleep(2)  # the survivors keep serving
            stop.set()
        assert len(acknowledged) > after_kill > before > 0, (before, after_kill, len(acknowledged))
        for name in names:  # release every held call: one interrupted by the kill must not run now
            (root / name).write_text("")
        with anyio.fail_after(30):
            while database_rows("SELECT count(*) FROM approval_requests WHERE status = 'executing'")[0][0]:
                await anyio.sleep(0.05)
        await anyio.sleep(1.0)  # several queue passes of every survivor

    # Every acknowledged call has its record, with the arguments the caller sent.
    recorded = dict(database_rows("SELECT seq, body FROM audit_log WHERE seq = ANY(%s)", list(acknowledged)))
    assert sorted(recorded) == sorted(acknowledged)
    for seq, text in acknowledged.items():
        body = json.loads(recorded[seq])
        assert (body["tool"], body["outcome"], body["arguments"]["text"]) == ("lab.echo", "ok", text)
    # Requests the killed replica held ended visibly, and nothing ran twice.
    statuses = dict(database_rows("SELECT id, status FROM approval_requests WHERE id = ANY(%s)", ids))
    assert {statuses[i] for i in claimed_by_victim} == {"interrupted"}
    assert {statuses[i] for i in set(ids) - claimed_by_victim} <= {"succeeded"}
    started = (root / "started.log").read_text().splitlines()
    ran = (root / "ran.log").read_text().splitlines() if (root / "ran.log").exists() else []
    assert sorted(started) == sorted(names)  # each claimed once, by one replica
    assert len(ran) == len(set(ran)) == len(names) - len(claimed_by_victim)
    verified = verify(deployment)
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_postgresql_restarted_under_load_refuses_calls_while_down_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with postgres_server() as own:  # a server of this test's own: it is stopped and started under load
        monkeypatch.setenv("PORTCULLIS_DATABASE_URL", own.dsn(own.create_database()))
        monkeypatch.setenv("PORTCULLIS_AUDIT_SALT", "restart-test-salt")
        config = make_guarded_deployment(tmp_path / "d")
        settings = yaml.safe_load(config.read_text())
        # A call waits at most a second for the database before it is refused.
        settings["store"] = {
            "backend": "postgresql",
            "dsn": "${PORTCULLIS_DATABASE_URL}",
            "connect_timeout_seconds": 1,
            "lock_timeout_seconds": 1,
        }
        settings["audit"]["salt"] = "${PORTCULLIS_AUDIT_SALT}"
        config.write_text(yaml.safe_dump(settings, sort_keys=False))
        assert portcullis("db", "init", "--config", str(config)).returncode == 0

        phase = "up"
        acknowledged: dict[int, str] = {}
        answered: dict[str, list[str]] = {"up": [], "down": [], "back": []}
        stop = anyio.Event()
        with replicas(config, 2) as running:
            urls = [url(port) for _, port in running]

            async def load(worker: int) -> None:
                n = 0
                while not stop.is_set():
                    try:
                        async with client(urls[worker % 2], "alice") as session:
                            while not stop.is_set():
                                started_in, text = phase, f"w{worker}-{n}"
                                n += 1
                                result = await session.call_tool("lab.echo", {"text": text})
                                answered[started_in].append(code(result))
                                if code(result) == "ok":
                                    acknowledged[int(result.meta["portcullis/audit_id"])] = text  # type: ignore[index]
                                await anyio.sleep(0.01)
                    except Exception as exc:  # a broken session is reconnected; its call was not acknowledged
                        answered[phase].append(f"broken: {exc!r}"[:300])

            async with anyio.create_task_group() as tasks:
                for worker in range(8):
                    tasks.start_soon(load, worker)
                await anyio.sleep(1.5)
                await anyio.to_thread.run_sync(own.stop)
                phase = "down"
                await anyio.sleep(4.0)
                phase = "back"  # calls that start from here may find it down or up again
                await anyio.to_thread.run_sync(own.start)
                with anyio.fail_after(30):  # served again once the database is back
                    while answered["back"].count("ok") < 20:
                        await anyio.sleep(0.1)
                stop.set()

        assert answered["up"].count("ok") > 0
        assert answered["down"] and "ok" not in answered["down"], set(answered["down"])  # fail closed, every one
        assert set(answered["down"]) <= {"audit_unavailable"}, set(answered["down"])  # a clear, machine-readable code
        # Nothing acknowledged was lost: every call the caller was told succeeded has its record.
        with psycopg.connect(os.environ["PORTCULLIS_DATABASE_URL"]) as connection:
            rows = connection.execute(
                "SELECT seq, body FROM audit_log WHERE seq = ANY(%s)", (list(acknowledged),)
            ).fetchall()
        recorded = {seq: json.loads(body)["arguments"]["text"] for seq, body in rows}
        assert recorded == acknowledged
        verified = verify(config)
        assert verified.returncode == 0, verified.stdout + verified.stderr
