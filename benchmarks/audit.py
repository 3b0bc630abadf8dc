"""The audit log's cost and capacity, measured in one run.

1. What audit adds to one call at a time: the same pipeline with and without its audit
   records (intent and outcome), interleaved, median and p99.
2. Durable throughput: 64 concurrent writers appending records (synchronous=FULL, group commit).
3. Verification speed: records checked per second over the whole chain.
4. Queries over a large log (1,000,000 records by default, spread over 30 days, 200 subjects,
   20 tenants, 12 tools): the filters of `portcullis audit query`, median of 20 runs each
   (goal: under 50 ms each).

    python benchmarks/audit.py [--calls 2000] [--records 20000] [--verify 100000] [--query 1000000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

from gateway import Gateway
from gateway.audit import AuditQuery, AuditRecord, AuditStore, open_readonly, query_records, verify_file
from gateway.config import load_config
from gateway.ids import new_id
from gateway.pipeline import CallContext, Caller, Pipeline
from gateway.pipeline.assembly import build_stages

REPO = Path(__file__).resolve().parent.parent
BENCH_TOOL = '''
from gateway import tool

@tool(read_only=True)
async def echo(text: str) -> str:
    """Return the text."""
    return text
'''


def deployment(root: Path) -> Path:
    shutil.copytree(REPO / "policies", root / "policies")
    (root / "tools").mkdir()
    (root / "tools" / "bench.py").write_text(BENCH_TOOL)
    with (root / "policies" / "policy.csv").open("a") as policy:
        policy.write("\np, role:support, bench.*, call, allow\n")
    text = (REPO / "portcullis.yaml").read_text()
    (root / "portcullis.yaml").write_text(
        text.split("\nupstreams:")[0].replace("http_files: [tools/inventory.http.yaml]", "")
    )
    return root / "portcullis.yaml"


def stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


async def per_call(config: Path, calls: int) -> None:
    async with Gateway(load_config(config)) as gateway:
        snapshot = gateway.snapshot
        stages = build_stages(snapshot)
        audited = Pipeline(stages, gateway.audit, ())
        bare = Pipeline(stages, None, ())
        caller = Caller(subject="alice", auth="bench", transport="bench")

        def call() -> CallContext:
            return CallContext(
                call_id=new_id(), caller=caller, tool_name="bench.echo", arguments={"text": "hi"}, snapshot=snapshot
            )

        with_audit: list[float] = []
        without: list[float] = []
        for _ in range(calls):
            for pipeline, into in ((audited, with_audit), (bare, without)):
                started = time.perf_counter()
                await pipeline.run(call())
                into.append(time.perf_counter() - started)
    a, b = stats(with_audit), stats(without)
    print(f"1 caller, {calls} calls each, interleaved:")
    print(f"  pipeline without audit  median {b[0]:.3f} ms  p99 {b[1]:.3f} ms")
    print(f"  pipeline with audit     median {a[0]:.3f} ms  p99 {a[1]:.3f} ms")
    print(f"  audit adds              {a[0] - b[0]:.3f} ms per call (goal: under 0.5 ms)")


async def throughput(folder: Path, records: int, writers: int = 64) -> None:
    store = AuditStore(folder / "throughput.db")
    store.open()
    per_writer = records // writers

    async def writer(index: int) -> None:
        for n in range(per_writer):
            await store.append(
                AuditRecord(event="tool.call", subject=f"user{index}", tool="bench.echo", detail={"n": n})
            )

    started = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        for index in range(writers):
            tasks.start_soon(writer, index)
    elapsed = time.perf_counter() - started
    await store.close()
    total = per_writer * writers
    print(
        f"{writers} concurrent writers: {total} durable records in {elapsed:.2f} s = {total / elapsed:,.0f} records/s"
        " (goal: 10,000/s; synchronous=FULL)"
    )


async def verification(folder: Path, records: int) -> None:
    store = AuditStore(folder / "verify.db")
    store.open()
    batch = 512

    async def fill(offset: int) -> None:
        for n in range(offset, records, batch):
            await store.append(AuditRecord(event="tool.call", subject="alice", tool="bench.echo", detail={"n": n}))

    async with anyio.create_task_group() as tasks:
        for offset in range(batch):
            tasks.start_soon(fill, offset)
    await store.close()
    started = time.perf_counter()
    report = verify_file(folder / "verify.db")
    elapsed = time.perf_counter() - started
    print(
        f"verify: {report.records} records in {elapsed:.2f} s = {report.records / elapsed:,.0f} records/s"
        f" (goal: 100,000/s; chain {'intact' if report.ok else 'BROKEN'})"
    )


TOOLS = [f"{ns}.{verb}" for ns in ("crm", "tickets", "payments", "email") for verb in ("get", "create", "send")]
OUTCOMES = ["ok"] * 8 + ["denied", "approval_required", "guardrail_blocked", "timeout"]


async def queries(folder: Path, records: int) -> None:
    store = AuditStore(folder / "query.db")
    store.open()
    start = datetime.now(UTC) - timedelta(days=30)
    step = timedelta(days=30) / records
    workers = 256

    def record(n: int) -> AuditRecord:
        outcome = OUTCOMES[n % len(OUTCOMES)]
        return AuditRecord(
            event="tool.call",
            ts=(start + step * n).isoformat().replace("+00:00", "Z"),
            call_id=f"c{n}",
            subject=f"user{n % 200}",
            tenant=f"tenant{n % 20}",
            tool=TOOLS[n % len(TOOLS)],
            decision="deny"
            if outcome == "denied"
            else ("approval_required" if outcome == "approval_required" else "allow"),
            outcome=outcome,
            rule=f"p, role:r{n % 50}, {TOOLS[n % len(TOOLS)]}, call, allow (policy.csv:{n % 90})",
            approval_id=f"a{n}" if outcome == "approval_required" else None,
            plan_run_id=f"run{n // 4}" if n % 10 < 4 else None,
        )

    async def fill(offset: int) -> None:
        for n in range(offset, records, workers):
            await store.append(record(n), durable=False)

    started = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        for offset in range(workers):
            tasks.start_soon(fill, offset)
    await store.close()
    print(f"query: filled {records:,} records in {time.perf_counter() - started:.0f} s")
    middle = (start + timedelta(days=15)).isoformat().replace("+00:00", "Z")
    hour_later = (start + timedelta(days=15, hours=1)).isoformat().replace("+00:00", "Z")
    cases = {
        "newest page (no filter)": AuditQuery(),
        "subject": AuditQuery(subject="user17"),
        "tenant": AuditQuery(tenant="tenant3"),
        "tool glob crm.*": AuditQuery(tool="crm.*"),
        "decision deny": AuditQuery(decision="deny"),
        "outcome approval_required": AuditQuery(outcome="approval_required"),
        "approval id": AuditQuery(approval_id=f"a{records // 2 - records // 2 % 12 + 9}"),
        "plan run": AuditQuery(plan_run_id=f"run{records // 8}"),
        "one hour, 15 days back": AuditQuery(since=middle, until=hour_later),
        "subject + tool + since 7d": AuditQuery(subject="user5", tool="payments.*", since="7d"),
        "text in rule, with subject": AuditQuery(subject="user42", text="role:r42"),
    }
    connection = open_readonly(folder / "query.db")
    try:
        for label, spec in cases.items():
            spec = spec.model_copy(update={"limit": 100, "newest_first": True})
            timings, found = [], 0
            for _ in range(20):
                begun = time.perf_counter()
                found = len(query_records(connection, spec))
                timings.append(time.perf_counter() - begun)
            median, p99 = stats(timings)
            verdict = "ok" if median < 50 else "OVER 50 ms"
            print(f"  {label:<30} median {median:7.2f} ms  p99 {p99:7.2f} ms  ({found} rows; {verdict})")
    finally:
        connection.close()


async def main(calls: int, records: int, verify_records: int, query_records_count: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        await per_call(deployment(root / "deployment"), calls)
        await throughput(root, records)
        await verification(root, verify_records)
        if query_records_count:
            await queries(root, query_records_count)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--verify", type=int, default=100_000)
    parser.add_argument("--query", type=int, default=1_000_000, help="records for the query benchmark (0: skip)")
    options = parser.parse_args()
    sys.exit(anyio.run(main, options.calls, options.records, options.verify, options.query))
