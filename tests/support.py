"""Build throwaway deployments for tests: the demo's policies and tools plus test-only extras.

The demo `policies/` and `tools/` are copied, so tests exercise the files that
ship, and a `faulty` tool module adds the failures a user must be protected from.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result
from mcp import Client

from gateway.cli import main
from gateway.pipeline import CallContext, Caller
from gateway.snapshot import Snapshot

Connect = Callable[[str], AbstractAsyncContextManager[Client]]
"""Open an MCP client session as a demo subject (see tests/e2e/conftest.py)."""

DEMO_TOOLS = frozenset(
    {
        "crm.find_customer",
        "crm.get_customer",
        "crm.delete_customer",
        "tickets.create",
        "tickets.list",
        "payments.refund",
        "email.send",
        "kb.search",
        "kb.get_article",
        "inventory.get_item",
        "inventory.list_items",
    }
)
_SUPPORT = {
    "crm.find_customer",
    "crm.get_customer",
    "tickets.create",
    "tickets.list",
    "email.send",
    "kb.search",
    "kb.get_article",
    "inventory.get_item",
    "inventory.list_items",
}
_FOLLOW = {"gateway.approval_status", "gateway.approval_wait", "gateway.approval_cancel"}
_PLAN = {
    "gateway.plan_validate",
    "gateway.plan_preview",
    "gateway.plan_run",
    "gateway.plan_status",
    "gateway.plan_draft",
}
_DECIDE = {"gateway.approvals_pending", "gateway.approve", "gateway.deny"}
DEMO_VIEW: dict[str, set[str]] = {
    "alice": _SUPPORT | {"payments.refund"} | _PLAN | _FOLLOW,
    "bob": {"crm.find_customer", "crm.get_customer", "payments.refund"} | _FOLLOW | _PLAN,
    "carol": _SUPPORT | {"payments.refund"} | _FOLLOW | _DECIDE | _PLAN,
    "dave": {"gateway.approval_status", "gateway.audit_query"},
    "erin": set(DEMO_TOOLS) | {"gateway.policy_check", "gateway.audit_query"} | _FOLLOW | _DECIDE | _PLAN,
    "mallory": set(),
}
"""The demo tools each demo subject may call (or request approval for)."""

REPO = Path(__file__).resolve().parent.parent

FAULTY_TOOLS = '''
"""Test-only tools that misbehave on purpose."""

import time

from gateway import tool


@tool(read_only=True)
def echo(text: str) -> str:
    """Return the text."""
    return text


@tool()
def boom(text: str = "x") -> str:
    """Always raises."""
    raise RuntimeError("the tool exploded")


@tool(timeout_seconds=0.5)
def slow(seconds: float = 5.0) -> str:
    """Sleeps longer than its timeout."""
    time.sleep(seconds)
    return "finally"


@tool()
def huge(size: int = 2_000_000) -> str:
    """Returns more than the result cap."""
    return "x" * size
'''

TEST_POLICY = """
# test-only: alice may use the faulty tools
p, role:support, faulty.*, call, allow
"""


def make_deployment(
    root: Path, *, extra_policy: str = "", extra_config: str = "", changes: dict[str, Any] | None = None
) -> Path:
    """Create a deployment under `root`; return its config path.

    `changes` are merged into the demo config (mappings merged, other values replaced).
    """
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "policies", root / "policies", dirs_exist_ok=True)
    shutil.copytree(REPO / "tools", root / "tools", dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "tools" / "faulty.py").write_text(FAULTY_TOOLS)
    shutil.copy(REPO / "tools.lock", root / "tools.lock")
    with (root / "policies" / "policy.csv").open("a") as policy:
        policy.write(TEST_POLICY + extra_policy)
    config = (REPO / "portcullis.yaml").read_text() + textwrap.dedent(extra_config)
    # Tests answer 'pending' at once unless they test the quick path, and poll the queue quickly.
    changes = _merge({"approvals": {"wait_seconds": 0, "poll_seconds": 0.05}}, changes or {})
    config = yaml.safe_dump(_merge(yaml.safe_load(config), changes), sort_keys=False)
    (root / "portcullis.yaml").write_text(config)
    return root / "portcullis.yaml"


def make_call(snapshot: Snapshot, subject: str | None, tool: str, arguments: Any = None, **changes: Any) -> CallContext:
    """A CallContext as a transport would build it, for calling one stage directly."""
    context = CallContext(
        call_id="test-call",
        caller=Caller(subject=subject, auth="test", transport="test"),
        tool_name=tool,
        arguments={} if arguments is None else arguments,
        snapshot=snapshot,
    )
    return context.evolve(**changes) if changes else context


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


UPSTREAMS = Path(__file__).resolve().parent / "upstreams"


def toy_upstream(namespace: str = "toy", *, variant: dict[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
    """Config for the test upstream server `tests/upstreams/toy.py` over stdio."""
    env = {"TOY_VARIANT": json.dumps(variant)} if variant else {}
    return {
        "namespace": namespace,
        "stdio": {"command": sys.executable, "args": [str(UPSTREAMS / "toy.py")], "env": env},
        **settings,
    }


def portcullis(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (usable from async tests, unlike CliRunner): for tests whose point
    is a second process beside a server, or what a fresh process prints."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=120, check=False
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in this process, answering like `portcullis` without the interpreter's start-up.

    It runs in a thread of its own, since its commands run their own event loop (so it is usable from
    async tests, which it blocks as `portcullis` does). Only what the CLI prints is captured: not log
    records a fresh process would print, so tests asserting what stderr lacks keep `portcullis`.
    """

    def invoke() -> Result:
        return CliRunner().invoke(main, list(args))

    with ThreadPoolExecutor(max_workers=1) as thread:
        result = thread.submit(invoke).result(timeout=120)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))  # as a crashing process would print
    return subprocess.CompletedProcess(["portcullis", *args], result.exit_code, result.stdout, stderr)


LAB_TOOLS = '''
"""Test-only tools for the guardrails: each hands one kind of argument on, or returns what it is given."""

from gateway import ToolContext, tool


@tool(read_only=True)
def echo(text: str) -> str:
    """Return the text (stands for any tool whose output we did not write)."""
    return text


@tool(read_only=True)
def read_file(path: str, *, ctx: ToolContext) -> str:
    """Read a file under the deployment's files/ folder."""
    return (ctx.root / "files" / path).read_text()


@tool(read_only=True)
def fetch(url: str) -> str:
    """Pretend to fetch a URL (no network here): says which URL it would fetch."""
    return f"fetched {url}"


@tool(read_only=True)
def grep(pattern: str) -> str:
    """Pretend to run grep PATTERN: says what it would run."""
    return f"grep {pattern}"
'''

LAB_POLICY = """
# test-only: alice may use the guardrail lab tools; managers approve what the guardrails hold
p, role:support, lab.*, call, allow
p, role:manager, lab.*, approve, allow
"""


def make_guarded_deployment(root: Path, rules: list[dict[str, Any]] | None = None, **settings: Any) -> Path:
    """The demo deployment plus `tools/lab.py`, with `rules` added to its guardrails.yaml and `settings` merged."""
    config = make_deployment(root, extra_policy=LAB_POLICY)
    (root / "tools" / "lab.py").write_text(LAB_TOOLS)
    set_guardrails(root, rules, **settings)
    return config


def set_guardrails(root: Path, rules: list[dict[str, Any]] | None = None, **settings: Any) -> None:
    """Rewrite the deployment's guardrails.yaml: the shipped demo file, plus `rules`, with `settings` merged.

    The detector budget is generous unless a test sets it: these tests are about detection, and a loaded
    machine must not turn a slow first scan into a `*.error` finding (tests of the budget set their own)."""
    settings = {"budget_ms": 10_000, **settings}
    shipped = yaml.safe_load((REPO / "policies" / "guardrails.yaml").read_text())
    shipped["rules"] = [*shipped.get("rules", []), *(rules or [])]
    (root / "policies" / "guardrails.yaml").write_text(yaml.safe_dump(_merge(shipped, settings), sort_keys=False))


PLAN_LAB_TOOLS = '''
"""Test-only tools for the planner: timed sleeps, flaky and failing steps, and a journal of what ran."""

import json
import time

import anyio

from gateway import ToolContext, tool


def _journal(ctx: ToolContext, entry: dict) -> None:
    with (ctx.root / "journal.jsonl").open("a") as journal:
        journal.write(json.dumps(entry) + "\\n")


@tool(read_only=True)
async def sleep(label: str, seconds: float = 0.1, *, ctx: ToolContext) -> dict:
    """Sleep, then say when it started and finished."""
    started = time.monotonic()
    await anyio.sleep(seconds)
    _journal(ctx, {"tool": "sleep", "label": label})
    return {"label": label, "started": started, "finished": time.monotonic()}


@tool(read_only=True)
def lookup(name: str) -> dict:
    """A nested result, for references into objects and arrays."""
    return {"matches": [{"id": f"{name}-1", "tags": ["a", "b"]}, {"id": f"{name}-2", "tags": []}], "count": 2}


@tool(destructive=False)
def act(label: str, value: str = "", *, ctx: ToolContext) -> dict:
    """Record an action in the journal (and the value it was given)."""
    _journal(ctx, {"tool": "act", "label": label, "value": value})
    return {"label": label, "value": value}


@tool(destructive=False)
def undo(label: str, *, ctx: ToolContext) -> dict:
    """Record a compensation; fails for labels starting with 'bad'."""
    _journal(ctx, {"tool": "undo", "label": label})
    if label.startswith("bad"):
        raise RuntimeError("the compensation failed")
    return {"undone": label}


@tool(destructive=False)
def fail(label: str = "x", *, ctx: ToolContext) -> str:
    """Always fails."""
    _journal(ctx, {"tool": "fail", "label": label})
    raise RuntimeError("this step fails")


@tool(idempotent=True, destructive=False)
def flaky(key: str, failures: int, *, ctx: ToolContext) -> dict:
    """Fails the first `failures` calls for `key`, then succeeds (idempotent: safe to retry)."""
    counter = ctx.root / f"flaky-{key}.count"
    seen = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(seen + 1))
    if seen < failures:
        raise RuntimeError(f"attempt {seen + 1} fails")
    return {"key": key, "attempts": seen + 1}


@tool(destructive=False)
def brittle(key: str, *, ctx: ToolContext) -> dict:
    """Fails once per key, like flaky, but is not idempotent (must not be retried)."""
    counter = ctx.root / f"brittle-{key}.count"
    seen = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(seen + 1))
    if seen < 1:
        raise RuntimeError("first attempt fails")
    return {"key": key}
'''

PLAN_POLICY = """
# test-only: alice may use the planner lab tools; 'act' above 100 needs a manager; 'undo' is alice's too
p, role:support, plab.*, call, allow
p, role:support, plab.act, call, approve, approver role:manager, when args.value == "big"
p, role:support, plab.fail, call, deny, when args.label == "forbidden"
"""


def make_plan_deployment(root: Path, **changes: Any) -> Path:
    """The demo deployment plus `tools/plab.py` (the planner's test tools)."""
    config = make_deployment(root, extra_policy=PLAN_POLICY, changes=changes or None)
    (root / "tools" / "plab.py").write_text(PLAN_LAB_TOOLS)
    return config


def journal(root: Path) -> list[dict[str, Any]]:
    path = root / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
