"""The planner against calling tools one by one, through a real MCP client over stdio, in one run.

1. Eight independent steps that each take 100 ms, as one plan (`gateway.plan_run`): the wall time
   (goal: under 150 ms, against 800 ms for eight calls in a row).
2. A chain of four steps, each using the previous step's result (a 20 ms tool): the gateway's
   overhead beyond the steps' own 80 ms, as one plan vs four separate client calls (each a round
   trip through the whole pipeline, as an agent would make them), interleaved.

    python benchmarks/planner.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import yaml
from mcp import Client, StdioServerParameters

REPO = Path(__file__).resolve().parent.parent
TOOLS = '''
"""Benchmark tools: a step that takes a fixed time and passes a token on."""

import anyio

from gateway import tool


@tool(read_only=True)
async def wait(ms: int, token: str = "") -> dict:
    """Sleep `ms` milliseconds; return the token with one more mark."""
    await anyio.sleep(ms / 1000)
    return {"token": token + "."}
'''


def deployment(root: Path) -> Path:
    shutil.copytree(REPO / "policies", root / "policies")
    (root / "tools").mkdir()
    (root / "tools" / "bench.py").write_text(TOOLS)
    with (root / "policies" / "policy.csv").open("a") as policy:
        policy.write("\np, role:support, bench.*, call, allow\n")
    config = yaml.safe_load((REPO / "portcullis.yaml").read_text())
    config["upstreams"] = []
    config["tools"].pop("http_files", None)
    (root / "portcullis.yaml").write_text(yaml.safe_dump(config))
    return root / "portcullis.yaml"


def fan_out(steps: int, ms: int) -> dict[str, Any]:
    return {
        "goal": f"{steps} independent steps",
        "limits": {"max_parallel": steps},
        "steps": [{"id": f"s{i}", "tool": "bench.wait", "arguments": {"ms": ms}} for i in range(steps)],
    }


def chain(steps: int, ms: int) -> dict[str, Any]:
    plan: list[dict[str, Any]] = [{"id": "s0", "tool": "bench.wait", "arguments": {"ms": ms, "token": ""}}]
    for i in range(1, steps):
        plan.append(
            {"id": f"s{i}", "tool": "bench.wait", "arguments": {"ms": ms, "token": {"$ref": f"s{i - 1}.result.token"}}}
        )
    return {"goal": f"a chain of {steps}", "steps": plan}


def stats(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)]
    return f"median {statistics.median(ordered) * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms"


async def main(rounds: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="portcullis-planner-bench-"))
    config = deployment(root / "deployment")
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "gateway", "serve", "--transport", "stdio", "--config", str(config), "--as", "alice"],
        cwd=str(config.parent),
    )
    async with Client(params) as client:
        await client.call_tool("bench.wait", {"ms": 1})  # warm up
        fan, chained, separate = [], [], []
        for _ in range(rounds):
            started = time.perf_counter()
            result = await client.call_tool("gateway.plan_run", {"plan": fan_out(8, 100)})
            fan.append(time.perf_counter() - started)
            assert result.structured_content and result.structured_content["status"] == "succeeded", result

            started = time.perf_counter()
            result = await client.call_tool("gateway.plan_run", {"plan": chain(4, 20)})
            chained.append(time.perf_counter() - started)
            assert result.structured_content and result.structured_content["status"] == "succeeded", result

            started = time.perf_counter()
            token = ""
            for _ in range(4):
                step = await client.call_tool("bench.wait", {"ms": 20, "token": token})
                token = step.structured_content["token"]  # type: ignore[index]
            separate.append(time.perf_counter() - started)
    shutil.rmtree(root, ignore_errors=True)
    fan_median = statistics.median(fan) * 1000
    print(f"{rounds} rounds, stdio client, interleaved")
    print(
        f"8 independent 100 ms steps as one plan:   {stats(fan)}"
        f"   (goal < 150 ms: {'met' if fan_median < 150 else 'NOT met'}; in a row they take 800 ms)"
    )
    print(f"chain of 4 x 20 ms, one plan:             {stats(chained)}")
    print(f"chain of 4 x 20 ms, 4 separate calls:     {stats(separate)}")
    own = 80.0
    plan_overhead = statistics.median(chained) * 1000 - own
    call_overhead = statistics.median(separate) * 1000 - own
    print(
        f"overhead beyond the steps' own {own:.0f} ms: plan {plan_overhead:.1f} ms,"
        f" separate calls {call_overhead:.1f} ms ({plan_overhead / call_overhead:.2f} x;"
        " without the agent's model round trip between calls,"
        " which a plan also saves)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    anyio.run(main, parser.parse_args().rounds)
