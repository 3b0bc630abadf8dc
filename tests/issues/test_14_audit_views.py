"""Issue 14 item 13: the database's views are what the README says they are.

`denials` holds the calls "denied or refused": every `deny` decision and every refusal outcome the
README lists (it once left out `guardrail_blocked`, `invalid_arguments` and `rate_limited`); each
view has the columns the README names; and a database made by an older release gets today's views.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from support import REPO

from gateway.audit import AuditRecord, AuditStore
from gateway.outcomes import OutcomeCode

pytestmark = pytest.mark.anyio


def documented_views() -> dict[str, str]:
    """The README's "Stable views" list: view name -> its description."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("Stable views:") : readme.index("The tables themselves")]
    items = re.split(r"\n- ", "\n" + section.split("\n", 1)[1])
    return {m.group(1): m.group(2) for item in items if (m := re.match(r"`(\w+)`: (.*)", item, re.S))}


async def opened(path: Path) -> None:
    """Open the database as a gateway does (schema and views), then close it."""
    audit = AuditStore(path)
    audit.open("views-test-salt")
    await audit.close()


def columns(path: Path, view: str) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[1] for row in db.execute(f"PRAGMA table_info({view})")]


async def test_denials_holds_every_deny_and_exactly_the_refusals_the_readme_lists(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    audit = AuditStore(path)
    audit.open("views-test-salt")
    try:
        for code in OutcomeCode:  # one call with each outcome, allowed by policy
            await audit.append(AuditRecord(event="tool.call", call_id=code.value, decision="allow", outcome=code.value))
        await audit.append(
            AuditRecord(event="tool.call", call_id="denied-by-policy", decision="deny", outcome="denied")
        )
        await audit.append(AuditRecord(event="resource.read", call_id="not-a-call", decision="deny", outcome="denied"))
    finally:
        await audit.close()
    described = documented_views()["denials"]
    listed = set(re.findall(r"`(\w+)`", described.split("the outcomes", 1)[1].split("(", 1)[0]))
    assert {"guardrail_blocked", "invalid_arguments", "rate_limited"} <= listed
    assert listed <= {code.value for code in OutcomeCode}
    with sqlite3.connect(path) as db:
        shown = {row[0] for row in db.execute("SELECT call_id FROM denials")}
    assert shown == listed | {"denied-by-policy"}


async def test_every_view_has_the_columns_the_readme_names(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    await opened(path)
    documented = documented_views()
    assert set(documented) == {"calls", "denials", "approvals"}
    for view in ("calls", "approvals"):
        named = [c.strip().rstrip(";.") for c in documented[view].split(";")[0].split(",")]
        assert columns(path, view) == named, view
    assert columns(path, "denials") == columns(path, "calls")


async def test_a_database_from_an_older_release_gets_todays_views(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    await opened(path)
    with sqlite3.connect(path) as db:  # the view as an older release made it
        db.executescript(
            "DROP VIEW denials; CREATE VIEW denials AS SELECT * FROM calls"
            " WHERE decision = 'deny' OR outcome IN ('denied', 'unknown_tool', 'approval_denied');"
        )
    await opened(path)
    with sqlite3.connect(path) as db:
        (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'denials'").fetchone()
    assert "guardrail_blocked" in sql and "rate_limited" in sql and "invalid_arguments" in sql
