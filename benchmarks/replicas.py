"""What sharing state across replicas costs: SQLite in one process against PostgreSQL for one and three.

Paths, interleaved round by round so that machine noise hits them alike:
  sqlite-1   one `portcullis serve` on the embedded SQLite store (baseline: today's default)
  pg-1       one `portcullis serve` on PostgreSQL (rate buckets, flow labels and the chain in the database)
  pg-3-lb    three replicas on one PostgreSQL behind HAProxy (stateless-era clients, round robin)

Every call pays for what a shared store must do per call: a rate-limit take (a limit no call reaches),
a flow-label record (the tool is labelled), and the intent and outcome audit records. Per path: the
latency of calls one after another (median, p99), then the throughput of `--clients` clients calling
at once. PostgreSQL is a real server started for the run (tests/pg.py), HAProxy a real one
(tests/haproxy.py). On a 2-core machine three replicas share two cores with the database and the
clients: the ratio that matters is pg-1 against sqlite-1 (what the shared store costs per call), and
pg-3-lb's throughput shows whether the database, not the gateway, is the bottleneck.

Then two measurements of the store itself:
  records/s  durable audit records per second, 64 concurrent appenders in each of 1 and 3 processes on
             one PostgreSQL (synchronous commit on), against 64 in one process on SQLite (synchronous=FULL)
  wake-up    an approval decided on replica B (`gateway.deny`), the agent waiting on replica A
             (`gateway.approval_wait`): from the decision's request to the waiter's answer, with the
             replicas' polls set to 30 s so that only PostgreSQL's LISTEN/NOTIFY can wake it

    python benchmarks/replicas.py [--calls 300] [--rounds 5] [--clients 8] [--seconds 5] [--wakeups 50]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from pathlib import Path

import anyio
import httpx
import httpx2
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from haproxy import free_port, haproxy  # noqa: E402
from pg import postgres_server  # noqa: E402

from gateway.store.postgres.connect import open_pool  # noqa: E402
from gateway.store.postgres.migrate import migrate  # noqa: E402

BENCH_TOOL = '''
from gateway import tool

@tool(read_only=True)
def echo(text: str) -> str:
    """Return the text."""
    return text
'''
ARGS = {"text": "hello"}
PATHS = ("sqlite-1", "pg-1", "pg-3-lb")


def deployment(root: Path, dsn: str | None, poll_seconds: float | None = None) -> Path:
    shutil.copytree(REPO / "policies", root / "policies")
    shutil.copytree(REPO / "tools", root / "tools", ignore=shutil.ignore_patterns("__pycache__", "*.http.yaml"))
    (root / "tools" / "bench.py").write_text(BENCH_TOOL)
    with (root / "policies" / "policy.csv").open("a") as policy:
        policy.write("\np, role:support, bench.*, call, allow\n")
    guardrails = yaml.safe_load((REPO / "policies" / "guardrails.yaml").read_text())
    guardrails["rules"].append({"tools": "bench.echo", "labels": ["untrusted_content"]})
    # A limit no call reaches, on the benchmark's tool only (the demo's refund limit would refuse the wake-up runs).
    guardrails["rate_limits"] = [{"tools": "bench.echo", "rate": 1_000_000, "per_seconds": 1}]
    (root / "policies" / "guardrails.yaml").write_text(yaml.safe_dump(guardrails))
    config = yaml.safe_load((REPO / "portcullis.yaml").read_text())
    config["tools"].pop("http_files", None)
    config["audit"]["checkpoint_seconds"] = 0
    if poll_seconds is not None:
        config.setdefault("approvals", {})["poll_seconds"] = poll_seconds
        config["approvals"]["wait_seconds"] = 0
    if dsn is not None:
        config["store"] = {"backend": "postgresql", "dsn": "${PORTCULLIS_DATABASE_URL}"}
        config["audit"]["salt"] = "benchmark-salt"
    (root / "portcullis.yaml").write_text(yaml.safe_dump(config))
    return root / "portcullis.yaml"


@contextmanager
def served(config: Path, count: int, dsn: str | None) -> Iterator[list[int]]:
    env = {**os.environ, "PORTCULLIS_SUBJECT": ""}
    if dsn is not None:
        env["PORTCULLIS_DATABASE_URL"] = dsn
        command = [sys.executable, "-m", "gateway", "db", "init", "--config", str(config)]
        subprocess.run(command, env=env, check=True, capture_output=True)
    processes: list[tuple[subprocess.Popen[bytes], int]] = []
    try:
        for _ in range(count):
            port = free_port()
            command = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)]
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            processes.append((process, port))
        for process, port in processes:
            wait_for(f"http://127.0.0.1:{port}/mcp", process)
        yield [port for _, port in processes]
    finally:
        for process, _ in processes:
            process.terminate()
        for process, _ in processes:
            process.wait(timeout=30)


def wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server at {url} exited")
        try:
            if httpx.post(url, json={}, timeout=1).status_code == 401:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"the server at {url} did not start")


@asynccontextmanager
async def client(url: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": "Bearer demo-alice"}, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http), mode="auto") as session,
    ):
        yield session


async def sequential(session: Client, count: int, into: list[float]) -> None:
    for _ in range(count):
        started = time.perf_counter()
        result = await session.call_tool("bench.echo", ARGS)
        into.append(time.perf_counter() - started)
        if result.is_error:
            raise RuntimeError(f"a benchmark call failed: {result}")


async def concurrent(sessions: list[Client], count: int) -> float:
    """Calls per second with every session calling at once, `count` calls in all."""
    each = max(1, count // len(sessions))

    async def run(session: Client) -> None:
        for _ in range(each):
            await session.call_tool("bench.echo", ARGS)

    started = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        for session in sessions:
            tasks.start_soon(run, session)
    return each * len(sessions) / (time.perf_counter() - started)


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000


def append_for(backend: str, where: str, seconds: float, callers: int, start: float) -> int:
    """In a process of its own: `callers` tasks appending durable records until `seconds` have passed."""
    from gateway.audit import AuditRecord, AuditStore
    from gateway.store.postgres.audit_log import PgAuditLog
    from gateway.store.postgres.connect import PoolSettings, open_pool

    async def run() -> int:
        pool = None
        if backend == "postgresql":
            pool = open_pool(where, PoolSettings(max_size=4))
            log: AuditStore | PgAuditLog = PgAuditLog(pool)
        else:
            log = AuditStore(Path(where))
        log.open("benchmark-salt")
        while time.time() < start:  # every process starts at once
            await anyio.sleep(0.01)
        deadline = time.perf_counter() + seconds
        written = 0

        async def appender(n: int) -> None:
            nonlocal written
            while time.perf_counter() < deadline:
                await log.append(AuditRecord(event="tool.call", subject=f"user{n}", tool="bench.echo"))
                written += 1

        async with anyio.create_task_group() as tasks:
            for n in range(callers):
                tasks.start_soon(appender, n)
        await log.close()
        if pool is not None:
            pool.close()
        return written

    return anyio.run(run)


def records_per_second(backend: str, where: str, processes: int, seconds: float, callers: int = 64) -> float:
    start = time.time() + 2
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        counts = pool.starmap(append_for, [(backend, where, seconds, callers, start)] * processes)
    return sum(counts) / seconds


async def wakeups(urls: list[str], count: int) -> list[float]:
    """Seconds from the approver's decision (on replica B) to the waiting agent's answer (on replica A)."""
    found: list[float] = []
    async with client_as(urls[0], "bob") as requester, client_as(urls[1], "carol") as approver:
        for n in range(count):
            arguments = {"customer_id": "C004", "amount": 150 + n, "reason": f"wake {n}"}
            held = await requester.call_tool("payments.refund", arguments)
            error = (held.meta or {})["portcullis/error"]
            if "approval_id" not in error:
                raise RuntimeError(f"the refund was not held for approval: {error}")
            request_id = error["approval_id"]
            answered: dict[str, float] = {}

            async def wait(request_id: str = request_id, answered: dict[str, float] = answered) -> None:
                await requester.call_tool("gateway.approval_wait", {"approval_id": request_id, "timeout_s": 20})
                answered["at"] = time.perf_counter()

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(wait)
                await anyio.sleep(0.2)  # the wait is in flight on replica A
                decided = time.perf_counter()
                await approver.call_tool("gateway.deny", {"approval_id": request_id, "reason": "benchmark"})
            found.append(answered["at"] - decided)
    return found


@asynccontextmanager
async def client_as(url: str, subject: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer demo-{subject}"}, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy") as session,
    ):
        yield session


async def main(calls: int, rounds: int, clients: int, seconds: float, wakeup_count: int) -> None:
    with tempfile.TemporaryDirectory() as folder, postgres_server() as postgres, ExitStack() as stack:
        root = Path(folder)
        urls: dict[str, str] = {}
        dsn_1 = postgres.dsn(postgres.create_database())
        dsn_3 = postgres.dsn(postgres.create_database())
        (port,) = stack.enter_context(served(deployment(root / "sqlite", None), 1, None))
        urls["sqlite-1"] = f"http://127.0.0.1:{port}/mcp"
        (port,) = stack.enter_context(served(deployment(root / "pg1", dsn_1), 1, dsn_1))
        urls["pg-1"] = f"http://127.0.0.1:{port}/mcp"
        ports = stack.enter_context(served(deployment(root / "pg3", dsn_3), 3, dsn_3))
        urls["pg-3-lb"] = stack.enter_context(haproxy(root / "haproxy", ports))

        latency: dict[str, list[float]] = {path: [] for path in PATHS}
        throughput: dict[str, list[float]] = {path: [] for path in PATHS}
        per_round = max(1, calls // rounds)
        async with AsyncExitStack() as sessions:
            one = {path: await sessions.enter_async_context(client(urls[path])) for path in PATHS}
            many = {
                path: [await sessions.enter_async_context(client(urls[path])) for _ in range(clients)] for path in PATHS
            }
            for path in PATHS:  # warm up: imports, connections, first scans
                await sequential(one[path], 30, [])
            for _ in range(rounds):
                for path in PATHS:
                    await sequential(one[path], per_round, latency[path])
                    throughput[path].append(await concurrent(many[path], per_round * 2))

        print(f"Calls through each path: {per_round * rounds} sequential, {rounds} interleaved rounds;")
        print(f"throughput with {clients} clients at once, {per_round * 2} calls per round.")
        base_median, _ = summary(latency["sqlite-1"])
        base_rate = statistics.median(throughput["sqlite-1"])
        print(f"{'path':<10} {'median ms':>10} {'p99 ms':>8} {'x median':>9} {'calls/s':>9} {'x calls/s':>10}")
        for path in PATHS:
            median, p99 = summary(latency[path])
            rate = statistics.median(throughput[path])
            ratios = f"{median / base_median:>9.2f} {rate:>9.0f} {rate / base_rate:>10.2f}"
            print(f"{path:<10} {median:>10.2f} {p99:>8.2f} {ratios}")

        print(f"\nDurable audit records per second, 64 concurrent appenders per process, {seconds:.0f} s each:")
        sqlite_rate = records_per_second("sqlite", str(root / "append" / "audit.db"), 1, seconds)
        print(f"  sqlite, 1 process        {sqlite_rate:>8.0f} /s   1.00 x")
        for processes in (1, 3):
            dsn = postgres.dsn(postgres.create_database())
            with open_pool(dsn) as pool:
                migrate(pool)
            rate = records_per_second("postgresql", dsn, processes, seconds)
            print(
                f"  postgresql, {processes} process{'es' if processes > 1 else '  '} {rate:>8.0f} /s   "
                f"{rate / sqlite_rate:.2f} x"
            )

        print(f"\nApproval wake-up across replicas ({wakeup_count} decisions, polls at 30 s):")
        dsn_w = postgres.dsn(postgres.create_database())
        ports_w = stack.enter_context(served(deployment(root / "wake", dsn_w, poll_seconds=30), 2, dsn_w))
        found = await wakeups([f"http://127.0.0.1:{port}/mcp" for port in ports_w], wakeup_count)
        ordered = sorted(found)
        p95 = ordered[min(len(ordered) - 1, math.ceil(len(ordered) * 0.95) - 1)]
        median = statistics.median(ordered) * 1000
        print(f"  median {median:.1f} ms, p95 {p95 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300, help="sequential calls per path (across all rounds)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8, help="clients calling at once for throughput")
    parser.add_argument("--seconds", type=float, default=5, help="seconds of appending per store measurement")
    parser.add_argument("--wakeups", type=int, default=50, help="approval decisions timed across replicas")
    arguments = parser.parse_args()
    anyio.run(main, arguments.calls, arguments.rounds, arguments.clients, arguments.seconds, arguments.wakeups)
