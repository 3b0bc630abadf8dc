"""`plan run` answers at once with `--wait 0`, in an operator's words, naming the real request (issue 14, item 10)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner
from support import REPO, make_deployment

from gateway.cli import main

PLAN = REPO / "examples" / "plans" / "refund-and-notify.json"


def test_wait_0_answers_at_once_with_the_command_to_run_next(tmp_path: Path) -> None:
    # Agents' calls wait 10 s for a quick approval here; the command line says how long it waits itself.
    config = make_deployment(tmp_path / "deployment", changes={"approvals": {"wait_seconds": 10}})
    started = time.monotonic()
    result = CliRunner().invoke(
        main, ["plan", "run", str(PLAN), "--as", "alice", "--wait", "0", "--config", str(config)]
    )
    took = time.monotonic() - started
    assert result.exit_code == 2, result.output
    assert took < 8, f"plan run --wait 0 took {took:.1f} s"  # the 10 s quick-approval wait is not taken

    listed = CliRunner().invoke(main, ["approvals", "list", "--config", str(config), "--json"])
    (request,) = json.loads(listed.stdout)
    assert request["tool"] == "gateway.plan_run" and request["status"] == "pending"
    out = result.stdout
    assert out.startswith(f"approval_required: request {request['id']} is pending approval by role:manager")
    assert f"portcullis approvals show {request['id']}" in out
    assert f"portcullis approvals approve {request['id']}" in out
    assert "gateway.approval_wait" not in out and "ID)" not in out  # words for an agent, a placeholder


def test_a_negative_wait_is_refused(tmp_path: Path) -> None:
    config = make_deployment(tmp_path / "deployment")
    result = CliRunner().invoke(
        main, ["plan", "run", str(PLAN), "--as", "alice", "--wait", "-1", "--config", str(config)]
    )
    assert result.exit_code == 2 and "--wait" in result.stderr
    assert not (config.parent / "audit" / "audit.db").exists()
