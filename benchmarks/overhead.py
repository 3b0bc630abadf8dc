"""What the gateway costs per call, against a baseline measured in the same run.

Paths, interleaved round by round so that machine noise hits them alike:
  direct      the tool function through its source, in-process, no pipeline (baseline)
  pipeline    Gateway.call_tool in-process: authorization, guardrails, two audit commits
  stdio       the SDK client -> `portcullis serve --transport stdio` subprocess
  http        the SDK client -> `portcullis serve` (Streamable HTTP) subprocess
  up-direct   the SDK client -> an upstream MCP server over stdio (baseline for proxying)
  up-proxy    the SDK client -> a bare SDK proxy (no policy, no audit) -> the upstream: one hop
  up-stdio    the SDK client -> portcullis (stdio) -> the same upstream (stdio)
  up-http     the SDK client -> portcullis (HTTP) -> the same upstream (stdio)

Then the HTTP server's resident memory at idle and after 5,000 and 10,000 calls.

    python benchmarks/overhead.py [--calls 2000] [--rounds 10] [--memory-calls 10000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import httpx
import httpx2
import psutil
import yaml
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from gateway import Gateway
from gateway.pipeline import Caller
from gateway.sources.base import ToolContext

REPO = Path(__file__).resolve().parent.parent
BENCH_TOOL = '''
from gateway import tool

@tool(read_only=True)
def echo(text: str) -> str:
    """Return the text."""
    return text
'''
ARGS = {"text": "hello"}
BARE_PROXY = '''
"""The cheapest proxy the SDK allows: list and forward, nothing else (the cost of one hop)."""
import sys
from contextlib import asynccontextmanager

from mcp import Client, StdioServerParameters
from mcp.server import NotificationOptions, Server
from mcp.server.stdio import stdio_server
import anyio

UPSTREAM = StdioServerParameters(command=sys.executable, args=[sys.argv[1]])


async def main() -> None:
    async with Client(UPSTREAM, mode="legacy", cache=None) as upstream:
        async def list_tools(ctx, params):
            return await upstream.list_tools()

        async def call_tool(ctx, params):
            return await upstream.call_tool(params.name, params.arguments or {})

        server = Server("bare-proxy", on_list_tools=list_tools, on_call_tool=call_tool)
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options(NotificationOptions()))


anyio.run(main)
'''
UPSTREAM = '''
from mcp.server import MCPServer

server = MCPServer("bench-upstream")


@server.tool()
def echo(text: str) -> str:
    """Return the text."""
    return text


if __name__ == "__main__":
    server.run()
'''


def deployment(root: Path) -> Path:
    shutil.copytree(REPO / "policies", root / "policies")
    (root / "tools").mkdir()
    (root / "tools" / "bench.py").write_text(BENCH_TOOL)
    (root / "upstream.py").write_text(UPSTREAM)
    (root / "bare_proxy.py").write_text(BARE_PROXY)
    with (root / "policies" / "policy.csv").open("a") as policy:
        policy.write("\np, role:support, bench.*, call, allow\np, role:support, up.*, call, allow\n")
    config = yaml.safe_load((REPO / "portcullis.yaml").read_text())
    config["upstreams"] = [
        {"namespace": "up", "stdio": {"command": sys.executable, "args": [str(root / "upstream.py")]}}
    ]
    config["tools"]["new_tools"] = "allow"
    config["tools"].pop("http_files", None)
    (root / "portcullis.yaml").write_text(yaml.safe_dump(config))
    return root / "portcullis.yaml"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_http(config: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.post(url, json={}, timeout=1).status_code == 401:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("HTTP server did not start")


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


async def timed(call: Callable[[], Awaitable[object]], count: int, into: list[float]) -> None:
    for _ in range(count):
        started = time.perf_counter()
        await call()
        into.append(time.perf_counter() - started)


async def main(calls: int, rounds: int, memory_calls: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        config = deployment(Path(folder))
        gateway = Gateway.from_path(config)
        definition, source = gateway.snapshot.catalog.get("bench.echo")  # type: ignore[misc]
        context = ToolContext(subject="alice", roles=(), settings={}, root=Path(folder))
        caller = Caller(subject="alice", auth="bench", transport="in-process")
        server, url = start_http(config)
        stdio = StdioServerParameters(
            command=sys.executable,
            args=["-m", "gateway", "serve", "--transport", "stdio", "--config", str(config), "--as", "alice"],
        )
        upstream_script = str(Path(folder) / "upstream.py")
        upstream = StdioServerParameters(command=sys.executable, args=[upstream_script])
        bare = StdioServerParameters(
            command=sys.executable, args=[str(Path(folder) / "bare_proxy.py"), upstream_script]
        )
        samples: dict[str, list[float]] = {
            name: [] for name in ("direct", "pipeline", "stdio", "http", "up-direct", "up-proxy", "up-stdio", "up-http")
        }
        per_round = max(1, calls // rounds)
        try:
            async with (
                gateway,
                Client(stdio, mode="legacy") as stdio_client,
                httpx2.AsyncClient(headers={"Authorization": "Bearer demo-alice"}, timeout=30) as session,
                Client(streamable_http_client(url, http_client=session), mode="legacy") as http_client,
                Client(upstream, mode="legacy") as upstream_client,
                Client(bare, mode="legacy") as bare_client,
            ):
                for _ in range(50):  # warm up
                    for client in (stdio_client, http_client):
                        await client.call_tool("bench.echo", ARGS)
                        await client.call_tool("up.echo", ARGS)
                    await upstream_client.call_tool("echo", ARGS)
                    await bare_client.call_tool("echo", ARGS)
                for _ in range(rounds):
                    await timed(lambda: source.call(definition, ARGS, context), per_round, samples["direct"])
                    await timed(lambda: gateway.call_tool(caller, "bench.echo", ARGS), per_round, samples["pipeline"])
                    await timed(lambda: stdio_client.call_tool("bench.echo", ARGS), per_round, samples["stdio"])
                    await timed(lambda: http_client.call_tool("bench.echo", ARGS), per_round, samples["http"])
                    await timed(lambda: upstream_client.call_tool("echo", ARGS), per_round, samples["up-direct"])
                    await timed(lambda: bare_client.call_tool("echo", ARGS), per_round, samples["up-proxy"])
                    await timed(lambda: stdio_client.call_tool("up.echo", ARGS), per_round, samples["up-stdio"])
                    await timed(lambda: http_client.call_tool("up.echo", ARGS), per_round, samples["up-http"])

                print(f"Per-call latency, {per_round * rounds} calls per path, {rounds} interleaved rounds")
                print(f"{'path':<10} {'median ms':>10} {'p99 ms':>10} {'x baseline':>11}  baseline")
                direct_median = summary(samples["direct"])[0]
                upstream_median = summary(samples["up-direct"])[0]
                for name, values in samples.items():
                    median, p99 = summary(values)
                    base, base_name = (
                        (upstream_median, "up-direct") if name.startswith("up-") else (direct_median, "direct")
                    )
                    print(f"{name:<10} {median:>10.3f} {p99:>10.3f} {median / base:>11.2f}  {base_name}")
                pipeline_cost = summary(samples["pipeline"])[0] - direct_median
                print(f"pipeline's own cost per call (pipeline - direct, median): {pipeline_cost:.3f} ms")
                hop = summary(samples["up-proxy"])[0] - upstream_median
                added = summary(samples["up-stdio"])[0] - upstream_median
                print(f"one proxy hop without policy or audit (up-proxy - up-direct, median): {hop:.3f} ms")
                print(f"what proxying through portcullis (stdio) adds to an upstream call (median): {added:.3f} ms")
                print(f"portcullis over a bare hop (up-stdio / up-proxy, median): {added / hop:.2f}x of the hop's cost")

                memory = psutil.Process(server.pid)
                idle = memory.memory_info().rss / 2**20
                rss: dict[int, float] = {}
                done = 0
                for checkpoint in (memory_calls // 2, memory_calls):
                    while done < checkpoint:
                        await http_client.call_tool("bench.echo", ARGS)
                        done += 1
                    rss[checkpoint] = memory.memory_info().rss / 2**20
                half, full = memory_calls // 2, memory_calls
                print(f"HTTP server RSS: idle {idle:.1f} MiB, after {half} calls {rss[half]:.1f} MiB,")
                growth = (rss[full] / rss[half] - 1) * 100
                print(f"  after {full} calls {rss[full]:.1f} MiB (growth {half}->{full}: {growth:+.1f}%)")
        finally:
            server.terminate()
            server.wait(timeout=15)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--memory-calls", type=int, default=10_000)
    options = parser.parse_args()
    os.environ.pop("PORTCULLIS_SUBJECT", None)
    anyio.run(main, options.calls, options.rounds, options.memory_calls)
