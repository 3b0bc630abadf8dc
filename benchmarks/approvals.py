"""How soon an approval reaches the waiting requester: decided in the gateway's own process vs elsewhere.

A requester waits (`approval_wait`, or the call's quick path) while an approver decides. The time
measured runs from the decision to the waiter holding the executed call's result: the queue worker
must notice the approval, claim it, run the tool (the demo's refund, a few ms), and the waiter must
notice the result. Two ways to decide, interleaved in one run:

- in the same process (an approver's MCP client on this gateway: `gateway.approve`);
- in another process (the CLI, another replica): here a second gateway on the same database,
  whose decision this gateway can only see by polling (`approvals.poll_seconds`, 0.2 s).

    python benchmarks/approvals.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import yaml

from gateway import Gateway
from gateway.config import load_config
from gateway.pipeline import Caller

REPO = Path(__file__).resolve().parent.parent
BOB = Caller(subject="bob", auth="bench", transport="bench")
CAROL = Caller(subject="carol", auth="bench", transport="bench")


def deployment(root: Path) -> Path:
    shutil.copytree(REPO / "policies", root / "policies")
    shutil.copytree(REPO / "tools", root / "tools", ignore=shutil.ignore_patterns("__pycache__", "servers"))
    shutil.copy(REPO / "tools.lock", root / "tools.lock")
    guardrails = yaml.safe_load((root / "policies" / "guardrails.yaml").read_text())
    guardrails["rate_limits"] = []  # the demo's refund limit would stop the rounds, not measure them
    (root / "policies" / "guardrails.yaml").write_text(yaml.safe_dump(guardrails))
    config = yaml.safe_load((REPO / "portcullis.yaml").read_text())
    config["upstreams"] = []
    config["tools"].pop("http_files", None)
    config["approvals"] = {"wait_seconds": 0}  # the call answers 'pending' at once; the waiter is separate
    (root / "portcullis.yaml").write_text(yaml.safe_dump(config))
    return root / "portcullis.yaml"


async def one(gateway: Gateway, decider: Gateway, amount: int) -> float:
    """Seconds from the decision to the waiter holding the result."""
    held = await gateway.call_tool(BOB, "payments.refund", {"customer_id": "C004", "amount": amount, "reason": "r"})
    assert "approval_id" in held.data, held
    request_id = held.data["approval_id"]
    done: list[Any] = []

    async def wait() -> None:
        done.append(await gateway.approvals.wait(request_id, 30))
        done.append(time.perf_counter())

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(wait)
        await anyio.sleep(0.25)  # the waiter is waiting and the worker idle, as when a person decides later
        decided = time.perf_counter()
        await decider.approvals.approve(request_id, CAROL, "bench")
    request, finished = done
    assert request.status.value == "succeeded", request
    return float(finished - decided)


def stats(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[max(0, int(len(ordered) * 0.9) - 1)]
    median, top = statistics.median(ordered) * 1000, ordered[-1] * 1000
    return f"median {median:7.1f} ms  p90 {p90 * 1000:7.1f} ms  max {top:7.1f} ms"


async def main(rounds: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="portcullis-approvals-bench-"))
    config = load_config(deployment(root / "deployment"))
    same: list[float] = []
    elsewhere: list[float] = []
    async with Gateway(config) as gateway, Gateway(config, mode="admin") as other:
        for n in range(rounds):
            same.append(await one(gateway, gateway, 101 + n))
            elsewhere.append(await one(gateway, other, 101 + n))
    shutil.rmtree(root, ignore_errors=True)
    poll = config.approvals.poll_seconds
    print(f"{rounds} rounds each, interleaved; approvals.poll_seconds = {poll}")
    print(f"decided in the same process:     {stats(same)}")
    print(f"decided in another process:      {stats(elsewhere)}   (polling only: up to 2 x {poll * 1000:.0f} ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    anyio.run(main, parser.parse_args().rounds)
