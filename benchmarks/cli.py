"""How long `portcullis` commands take from a fresh process, against `python -c pass` in the same run.

Each round runs every command once, in a new process, in an order rotated round by round, so that
machine noise hits them alike; the figures are the median and p99 over the rounds, and what each
command costs over the bare interpreter. Commands run both as `python -m gateway ...` and as the
`portcullis` console script beside the interpreter.

`audit query` reads a copy of the demo deployment whose log is filled first with calls by the demo
subjects (allowed, denied, refused), unless --config names a deployment that already has a log.

Goals (issue 14): `portcullis --version` under 150 ms, `portcullis audit query` under 400 ms.

    python benchmarks/cli.py [--runs 20] [--calls 90] [--config portcullis.yaml] [--heavy]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

REPO = Path(__file__).resolve().parent.parent

# (subject, tool, arguments): what the demo's operators and agents do in an ordinary hour.
CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("alice", "crm.find_customer", {"query": "Ada"}),
    ("alice", "tickets.list", {}),
    ("alice", "email.send", {"to": "ops@acme.example", "subject": "Hello", "body": "Checking in."}),
    ("alice", "email.send", {"to": "someone@example.com", "subject": "Hello", "body": "Checking in."}),
    ("bob", "crm.get_customer", {"customer_id": "C001"}),
    ("bob", "payments.refund", {"customer_id": "C001", "amount": 20, "reason": "late delivery"}),
    ("dave", "crm.find_customer", {"query": "Ada"}),
    ("mallory", "tickets.list", {}),
    ("alice", "crm.get_customer", {"customer_id": "not-an-id"}),
]


def demo_copy(root: Path) -> Path:
    """The demo deployment under `root`, with its own (empty) audit log and business data."""
    for folder in ("policies", "tools"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "tools.lock", root / "tools.lock")
    shutil.copy(REPO / "portcullis.yaml", root / "portcullis.yaml")
    (root / "audit").mkdir()
    return root / "portcullis.yaml"


def fill_log(config: Path, calls: int) -> None:
    """Write `calls` calls' records to the deployment's log, through the gateway (no upstreams, no HTTP tools)."""
    import anyio

    from gateway import Gateway
    from gateway.calls import Caller
    from gateway.config import load_config

    local = config.with_name("fill.yaml")
    text = config.read_text().split("\nupstreams:")[0].replace("http_files: [tools/inventory.http.yaml]", "")
    local.write_text(text)

    async def run() -> None:
        async with Gateway(load_config(local)) as gateway:
            for n in range(calls):
                subject, tool, arguments = CALLS[n % len(CALLS)]
                caller = Caller(subject=subject, tenant="acme", auth="bench", transport="bench")
                await gateway.call_tool(caller, tool, arguments)

    anyio.run(run)
    local.unlink()


def records(config: Path) -> int:
    connection = sqlite3.connect(f"file:{config.parent / 'audit' / 'audit.db'}?mode=ro", uri=True)
    try:
        count: int = connection.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    finally:
        connection.close()
    return count


def commands(config: Path, heavy: bool) -> dict[str, list[str]]:
    python = sys.executable
    script = str(Path(python).with_name("portcullis"))
    module = [python, "-m", "gateway"]
    deployment = ["--config", str(config)]
    table = {
        "python -c pass (baseline)": [python, "-c", "pass"],
        "python -m gateway --version": [*module, "--version"],
        "portcullis --version": [script, "--version"],
        "portcullis --help": [script, "--help"],
        "portcullis audit --help": [script, "audit", "--help"],
        "python -m gateway audit query": [*module, "audit", "query", *deployment],
        "portcullis audit query": [script, "audit", "query", *deployment],
    }
    if heavy:  # commands that build the whole gateway (policy engine, sources, upstreams)
        table["portcullis policy check"] = [script, "policy", "check", "alice", "crm.find_customer", *deployment]
        table["portcullis tools list"] = [script, "tools", "list", *deployment]
    return table


class Sample(NamedTuple):
    wall: float
    """Seconds from start to exit, as a user waits for them."""
    cpu: float
    """Seconds of CPU (user + system) the process used: steadier than wall time when the machine is busy."""


def timed(argv: list[str]) -> Sample:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr.decode(errors='replace')}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Sample(elapsed, cpu)


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, round(len(ordered) * 0.99) - 1)]


def measure(table: dict[str, list[str]], runs: int) -> None:
    names = list(table)
    samples: dict[str, list[Sample]] = {name: [] for name in names}
    for name in names:  # warm the disk cache and the bytecode once, unmeasured
        timed(table[name])
    for round_number in range(runs):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(timed(table[name]))
    baseline = statistics.median(sample.wall for sample in samples[names[0]])
    width = max(map(len, names))
    print(f"{runs} runs each, interleaved, fresh processes ({sys.executable}; load average {os.getloadavg()[0]:.1f}):")
    print(f"  {'command'.ljust(width)}  {'median':>9}  {'p99':>9}  {'over baseline':>13}  {'CPU median':>10}")
    for name in names:
        wall = [sample.wall for sample in samples[name]]
        median = statistics.median(wall)
        cpu = statistics.median(sample.cpu for sample in samples[name])
        print(
            f"  {name.ljust(width)}  {median * 1000:6.0f} ms  {p99(wall) * 1000:6.0f} ms"
            f"  {(median - baseline) * 1000:+10.0f} ms  {cpu * 1000:7.0f} ms"
        )
    print("Goals: portcullis --version under 150 ms; portcullis audit query under 400 ms (median, wall).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="Rounds (each command once per round).")
    parser.add_argument("--calls", type=int, default=90, help="Calls written to the demo copy's log first.")
    parser.add_argument("--config", type=Path, default=None, help="A deployment with a log (default: a demo copy).")
    parser.add_argument("--heavy", action="store_true", help="Also `policy check` and `tools list`.")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="portcullis-cli-bench-") as folder:
        config = arguments.config
        if config is None:
            config = demo_copy(Path(folder))
            fill_log(config, arguments.calls)
            print(f"demo copy, {arguments.calls} calls = {records(config)} records in its log: {config.parent}")
        measure(commands(config.resolve(), arguments.heavy), arguments.runs)


if __name__ == "__main__":
    main()
