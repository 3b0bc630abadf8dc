"""Issue 15: with `store: {backend: postgresql}`, every read command takes the same flags and prints the same
output as on SQLite.

A history is made by a real gateway on SQLite (calls allowed, denied, held for approval, rate limited, a
plan run, a policy reload, a signed checkpoint), then the same rows are put in a fresh PostgreSQL
database for a twin deployment (the same files, `store:` pointing at PostgreSQL). Each command runs on
both and must print exactly the same thing, but for the deployment's folder.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from click.testing import CliRunner
from support import REPO

from gateway import Gateway
from gateway.audit.checkpoints import load_or_create_key
from gateway.audit.salt import read_salt_file
from gateway.cli import main
from gateway.outcomes import OutcomeCode
from gateway.pipeline import Caller
from gateway.snapshot import Snapshot
from gateway.store.postgres.audit_reads import glob_regex
from gateway.store.postgres.migrate import migrate

pytestmark = pytest.mark.anyio
DEMO_PLAN = json.loads((REPO / "examples" / "plans" / "refund-and-notify.json").read_text())
PG_STORE = {"backend": "postgresql", "dsn": "${PORTCULLIS_DATABASE_URL}"}
COPIED = ("audit_log", "approval_requests", "approval_decisions", "plan_runs", "plan_steps")
"""The tables a read command reads, copied in this order (a decision after its request, a step after its run)."""


def who(subject: str) -> Caller:
    return Caller(subject=subject, auth="test", transport="test", session=f"{subject}-session")


def run(config_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args, "--config", str(config_path)])
    return result.exit_code, result.stdout + result.stderr


@pytest.fixture
async def history(config_path: Path) -> dict[str, Any]:
    """Traffic of every kind the read commands show, written by a real gateway on SQLite."""
    async with Gateway(Snapshot.from_path(config_path).config) as gateway:
        email = {"subject": "hello", "body": "see you on Tuesday"}
        await gateway.call_tool(who("alice"), "email.send", {"to": "bob@acme.example", **email})
        await gateway.call_tool(who("alice"), "email.send", {"to": "eve@evil.example", **email})
        await gateway.call_tool(who("alice"), "crm.find_customer", {"query": "Grace Hopper"})
        nul = {"query": "nul\u0000byte", "nested": {"deeper": ["Needle", 3.5]}}
        await gateway.call_tool(who("alice"), "crm.find_customer", nul)
        held = await gateway.call_tool(who("alice"), "gateway.plan_run", {"plan": DEMO_PLAN})
        assert held.code is OutcomeCode.APPROVAL_REQUIRED
        await gateway.approvals.approve(held.data["approval_id"], who("carol"), "fine")
        done = await gateway.approvals.wait(held.data["approval_id"], 20)
        assert done is not None and done.status.value == "succeeded", done
        refund = {"customer_id": "C001", "amount": 500, "reason": "goodwill"}
        pending = await gateway.call_tool(who("bob"), "payments.refund", refund)
        assert pending.code is OutcomeCode.APPROVAL_REQUIRED
        await gateway.call_tool(who("mallory"), "payments.refund", refund)
        await gateway.call_tool(who("erin"), "nosuch.tool", {})
        small = {"customer_id": "C001", "amount": 5, "reason": "small"}
        codes = [(await gateway.call_tool(who("bob"), "payments.refund", small)).code for _ in range(11)]
        assert codes[-1] is OutcomeCode.RATE_LIMITED
        assert await gateway.checkpoint() is not None
    return {"plan_approval": held.data["approval_id"], "pending": pending.data["approval_id"]}


@pytest.fixture
def twin(config_path: Path, history: dict[str, Any], pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The same deployment on PostgreSQL, holding the same rows; its config path."""
    root = config_path.parent.parent / "on-postgres"
    shutil.copytree(config_path.parent, root, ignore=shutil.ignore_patterns("audit.db*"))
    config = yaml.safe_load(config_path.read_text())
    # Replicas on PostgreSQL share one configured salt: here, the one the SQLite twin's file holds.
    salt = read_salt_file(config_path.parent / "audit" / "audit.salt")
    config = {**config, "store": PG_STORE, "audit": {**config["audit"], "salt": salt}}
    (root / config_path.name).write_text(yaml.safe_dump(config, sort_keys=False))
    monkeypatch.setenv("PORTCULLIS_DATABASE_URL", pg_dsn)
    source = sqlite3.connect(config_path.parent / "audit" / "audit.db")
    with psycopg.connect(pg_dsn, autocommit=True) as target:
        migrate(target)
        for table in COPIED:
            wanted = {
                row[0]
                for row in target.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name = %s AND is_generated = 'NEVER'"
                    " AND is_identity = 'NO'",
                    (table,),
                )
            }
            columns = [row[1] for row in source.execute(f"PRAGMA table_info({table})") if row[1] in wanted]
            order = "seq" if table == "audit_log" else "rowid"
            rows = source.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}").fetchall()
            marks = ", ".join(["%s"] * len(columns))
            with target.cursor() as cursor:
                cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
    source.close()
    return root / config_path.name


def same(config_path: Path, twin: Path, *args: str) -> str:
    """Run the command on both deployments; assert they print the same; the output."""
    code, on_sqlite = run(config_path, *args)
    twin_code, on_postgres = run(twin, *args)
    on_postgres = on_postgres.replace(str(twin.parent), str(config_path.parent))
    assert (twin_code, on_postgres) == (code, on_sqlite)
    return on_sqlite


QUERIES = [
    [],
    ["--format", "table"],
    ["--format", "csv", "--limit", "7"],
    ["--format", "jsonl", "--limit", "3", "--page", "2"],
    ["--tool", "payments.*"],
    ["--tool", "[ce]*.?ind_*"],
    ["--tool", "crm.find_customer", "--subject", "alice"],
    ["--tool", "payments.refund", "--decision", "allow", "--limit", "4", "--page", "2"],
    ["--event", "approval.*"],
    ["--event", "plan.*"],
    ["--event", "tool.call", "--outcome", "rate_limited"],
    ["--text", "hopper"],
    ["--text", "NEEDLE"],
    ["--text", "3.5"],
    ["--text", "on tuesday"],
    ["--text", "evil.example"],
    ["--text", "nul"],  # a value holding \u0000 breaks neither search (SQLite reads it only up to the NUL)
    ["--text", "goodwill", "--subject", "bob"],
    ["--since", "1h", "--until", "2999-01-01T00:00:00Z", "--limit", "5"],
    ["--until", "2000-01-01T00:00:00Z"],
    ["--tenant", "nobody"],
]


@pytest.mark.parametrize("filters", QUERIES, ids=lambda f: " ".join(f) or "all")
async def test_audit_query_prints_the_same_records_on_postgres(
    config_path: Path, twin: Path, filters: list[str]
) -> None:
    out = same(config_path, twin, "audit", "query", *filters, *([] if "--format" in filters else ["--json"]))
    if filters in (["--text", "hopper"], ["--text", "NEEDLE"], ["--tool", "payments.*"]):
        assert json.loads(out), "the filter should find something, or the comparison proves little"


async def test_audit_query_by_approval_and_plan_run_and_text_never_inside_a_hash(
    config_path: Path, twin: Path, history: dict[str, Any]
) -> None:
    approval = json.loads(same(config_path, twin, "audit", "query", "--approval", history["plan_approval"], "--json"))
    run_ids = {r["plan_run_id"] for r in approval if r.get("plan_run_id")}
    assert approval and len(run_ids) == 1
    steps = json.loads(same(config_path, twin, "audit", "query", "--plan-run", run_ids.pop(), "--json"))
    assert {r["event"] for r in steps} >= {"plan.started", "plan.finished"}
    (sent, *_) = json.loads(same(config_path, twin, "audit", "query", "--tool", "email.send", "--json"))
    hashed = sent["arguments"]["to"]
    assert hashed.startswith("hmac-sha256:")
    assert json.loads(same(config_path, twin, "audit", "query", "--text", hashed[20:32], "--json")) == []
    assert json.loads(same(config_path, twin, "audit", "query", "--text", "hmac-sha256", "--json")) == []


async def test_verify_stats_export_and_tail_print_the_same_on_postgres(config_path: Path, twin: Path) -> None:
    verified = same(config_path, twin, "audit", "verify")
    assert verified.startswith("ok: ") and "chain intact" in verified and " 0 signed checkpoint" not in verified
    assert json.loads(same(config_path, twin, "audit", "verify", "--json"))["ok"] is True
    stats = same(config_path, twin, "audit", "stats", "--since", "2000-01-01T00:00:00Z", "--top", "3", "--json")
    assert json.loads(stats)["by_decision"]
    same(config_path, twin, "audit", "stats", "--since", "2000-01-01T00:00:00Z")
    exported = same(config_path, twin, "audit", "export").splitlines()
    assert [json.loads(line)["seq"] for line in exported] == list(range(1, len(exported) + 1))
    same(config_path, twin, "audit", "export", "--format", "ocsf", "--since", "1h")
    assert len(same(config_path, twin, "audit", "tail", "-n", "5").splitlines()) == 5
    same(config_path, twin, "audit", "tail", "-n", "0")


async def test_policy_replay_approvals_and_plan_runs_print_the_same_on_postgres(
    config_path: Path, twin: Path, history: dict[str, Any], tmp_path: Path
) -> None:
    stricter = tmp_path / "candidate"
    shutil.copytree(config_path.parent / "policies", stricter)
    (stricter / "policy.csv").write_text((stricter / "policy.csv").read_text() + "p, alice, email.send, call, deny\n")
    replayed = json.loads(same(config_path, twin, "policy", "replay", "--policy", str(stricter), "--json"))
    assert [c["tool"] for c in replayed["changes"]] == ["email.send"] * 2
    unchanged = str(config_path.parent / "policies")
    assert json.loads(same(config_path, twin, "policy", "replay", "--policy", unchanged, "--json"))["not_replayable"]
    same(config_path, twin, "policy", "replay", "--policy", unchanged, "--since", "1h")

    pending = json.loads(same(config_path, twin, "approvals", "list", "--json"))
    assert [r["id"] for r in pending] == [history["pending"]]
    same(config_path, twin, "approvals", "list", "--status", "all")
    shown = json.loads(same(config_path, twin, "approvals", "show", history["plan_approval"], "--json"))
    assert [d["approver"] for d in shown["decisions"]] == ["carol"]
    same(config_path, twin, "approvals", "show", history["plan_approval"])

    runs = json.loads(same(config_path, twin, "plan", "list", "--json"))
    assert len(runs) == 1
    same(config_path, twin, "plan", "list")
    status = json.loads(same(config_path, twin, "plan", "status", runs[0]["id"], "--json"))
    assert status["steps"]
    same(config_path, twin, "plan", "status", runs[0]["id"])


async def test_verify_names_the_same_altered_record_on_postgres(config_path: Path, twin: Path, pg_dsn: str) -> None:
    db = sqlite3.connect(config_path.parent / "audit" / "audit.db")
    db.executescript("DROP TRIGGER audit_no_update;")
    db.execute("UPDATE audit_log SET body = replace(body, '\"alice\"', '\"carol\"') WHERE seq = 3")
    db.commit()
    db.close()
    with psycopg.connect(pg_dsn, autocommit=True) as connection:  # as the table's owner, who can do anything
        connection.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_no_update")
        connection.execute("UPDATE audit_log SET body = replace(body, '\"alice\"', '\"carol\"') WHERE seq = 3")
    report = json.loads(same(config_path, twin, "audit", "verify", "--json"))
    assert (report["ok"], report["first_bad_seq"]) == (False, 3)


async def test_a_database_that_cannot_be_reached_is_a_clear_error(twin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTCULLIS_DATABASE_URL", "host=/nonexistent-socket-dir dbname=nothing connect_timeout=1")
    for command in (["audit", "query"], ["audit", "verify"], ["approvals", "list"], ["plan", "list"]):
        code, out = run(twin, *command)
        assert code == 1 and "Error: cannot" in out and "Traceback" not in out, out


PATTERNS = [
    "*",
    "a*",
    "*.send",
    "?mail.*",
    "[ce]*",
    "[^c]*",
    "[]]*",
    "[a-c]*",
    "a.b",
    "a%b",
    "a_b",
    "(x)|y",
    "[",
    "x\\y",
    "'; --",
    "é?",
    "[!]*",
    "a[.]b",
    "*[*]*",
]
NAMES = [
    "a",
    "ab",
    "a.b",
    "axb",
    "a%b",
    "azb",
    "a_b",
    "email.send",
    "crm.x",
    "]x",
    "b",
    "(x)|y",
    "x\\y",
    "'; --",
    "éa",
    "!",
    "*",
    "a*b",
    "[",
    "A.B",
]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_glob_matches_on_postgres_exactly_what_sqlite_glob_matches(pattern: str, postgres: Any) -> None:
    names = NAMES
    sqlite = sqlite3.connect(":memory:")
    expected = [name for name in names if sqlite.execute("SELECT ? GLOB ?", (name, pattern)).fetchone()[0]]
    regex = glob_regex(pattern)
    with psycopg.connect(postgres.dsn()) as connection:
        found = (
            []
            if regex is None
            else [
                name
                for name in names
                if connection.execute("SELECT %s ~ %s", (name, regex)).fetchone()[0]  # type: ignore[index]
            ]
        )
    assert found == expected


async def traffic(gateway: Gateway) -> None:
    """The same calls on either backend."""
    await gateway.call_tool(who("alice"), "crm.find_customer", {"query": "Grace Hopper"})
    await gateway.call_tool(who("alice"), "email.send", {"to": "bob@acme.example", "subject": "hi", "body": "Tuesday"})
    await gateway.call_tool(who("mallory"), "crm.find_customer", {"query": "x"})
    small = {"customer_id": "C001", "amount": 5, "reason": "goodwill"}
    assert (await gateway.call_tool(who("bob"), "payments.refund", small)).code is OutcomeCode.OK
    large = {"customer_id": "C001", "amount": 500, "reason": "goodwill"}
    assert (await gateway.call_tool(who("bob"), "payments.refund", large)).code is OutcomeCode.APPROVAL_REQUIRED


def steady(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What does not change from one run of `traffic` to the next (ids, times and hashes do)."""
    return [(r["event"], r.get("subject"), r.get("tool"), r.get("decision"), r.get("outcome")) for r in records]


async def test_what_a_gateway_on_postgres_wrote_reads_as_the_same_traffic_on_sqlite(
    config_path: Path, tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real PostgreSQL writer (store/postgres/audit_log.py), not copied rows, behind the read commands."""
    from support import make_deployment

    monkeypatch.setenv("PORTCULLIS_DATABASE_URL", pg_dsn)
    on_postgres = make_deployment(
        tmp_path / "pg-deployment", changes={"store": PG_STORE, "audit": {"salt": "on-postgres-test-salt"}}
    )
    with psycopg.connect(pg_dsn, autocommit=True) as connection:
        migrate(connection)
    load_or_create_key(on_postgres.parent / "audit" / "checkpoint.key")  # as `db init` does: replicas never make one
    for deployment in (config_path, on_postgres):
        async with Gateway(Snapshot.from_path(deployment).config) as gateway:
            await traffic(gateway)
            assert await gateway.checkpoint() is not None
    assert not (on_postgres.parent / "audit" / "audit.db").exists()

    def both(*args: str) -> tuple[str, str]:
        (code, sqlite_out), (pg_code, pg_out) = run(config_path, *args), run(on_postgres, *args)
        assert (code, pg_code) == (0, 0), pg_out
        return sqlite_out, pg_out

    for filters in ([], ["--tool", "crm.*"], ["--text", "hopper"], ["--decision", "deny"], ["--subject", "bob"]):
        sqlite_out, pg_out = both("audit", "query", *filters, "--json")
        assert steady(json.loads(pg_out)) == steady(json.loads(sqlite_out)) != []
    sqlite_out, pg_out = both("audit", "verify", "--json")
    assert json.loads(pg_out) | {"checkpoint_file": None} == json.loads(sqlite_out) | {"checkpoint_file": None}
    assert json.loads(pg_out)["ok"] and json.loads(pg_out)["checkpoints"] >= 1
    sqlite_out, pg_out = both("audit", "stats", "--since", "2000-01-01T00:00:00Z")
    assert pg_out == sqlite_out
    sqlite_out, pg_out = both("audit", "export")
    events = [[json.loads(line)["event"] for line in out.splitlines()] for out in (sqlite_out, pg_out)]
    assert events[0] == events[1] != []
    tails = [[line.split("  ", 2)[2] for line in out.splitlines()] for out in both("audit", "tail", "-n", "3")]
    assert len(tails[1]) == 3 and tails[0] == tails[1]
    sqlite_out, pg_out = both("approvals", "list", "--json")
    listed = [
        [(r["subject"], r["tool"], r["status"], r["arguments"]) for r in json.loads(out)]
        for out in (sqlite_out, pg_out)
    ]
    assert (
        listed[1]
        == listed[0]
        == [("bob", "payments.refund", "pending", {"customer_id": "C001", "amount": 500, "reason": "goodwill"})]
    )
    shown = json.loads(run(on_postgres, "approvals", "show", json.loads(pg_out)[0]["id"], "--json")[1])
    assert (shown["status"], shown["decisions"]) == ("pending", [])


async def test_reading_a_sqlite_deployment_never_loads_the_postgresql_driver(config_path: Path) -> None:
    async with Gateway(Snapshot.from_path(config_path).config) as gateway:
        await traffic(gateway)
    probe = (
        "import sys\nfrom gateway.cli import main\ntry:\n    main(sys.argv[1:], prog_name='portcullis')\n"
        "except SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "print(sorted(m for m in ('psycopg', 'psycopg_pool') if m in sys.modules), file=sys.stderr)\n"
    )
    for command in (["audit", "query", "--json"], ["audit", "verify", "--allow-missing-checkpoints"]):
        done = subprocess.run(
            [sys.executable, "-c", probe, *command, "--config", str(config_path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0 and done.stderr.strip().splitlines()[-1] == "[]", done.stderr
