"""Plans through the gateway, in process: preview decisions, refusal, approval of the whole plan and
tampering, parallelism, timeouts, retries, on_error and compensations, pauses, status and audit links."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from support import journal, make_plan_deployment

from gateway import Gateway
from gateway.outcomes import OutcomeCode
from gateway.pipeline import Caller
from gateway.planner import Plan

pytestmark = pytest.mark.anyio


def who(subject: str = "alice") -> Caller:
    return Caller(subject=subject, auth="test", transport="test", session=f"{subject}-session")


def plan(*steps: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"version": 1, "goal": "test", "steps": list(steps), **fields}


def step(step_id: str, tool: str, **fields: Any) -> dict[str, Any]:
    arguments = fields.pop("arguments", {})
    if tool == "act":
        arguments = {"value": "small", **arguments}
    return {"id": step_id, "tool": f"plab.{tool}", "arguments": arguments, **fields}


@pytest.fixture
async def gateway(tmp_path: Path) -> Any:
    async with Gateway.from_path(make_plan_deployment(tmp_path / "d")) as running:
        yield running


async def run(gateway: Gateway, document: dict[str, Any], subject: str = "alice") -> Any:
    return await gateway.call_tool(who(subject), "gateway.plan_run", {"plan": document})


def steps_of(outcome: Any) -> dict[str, dict[str, Any]]:
    report = outcome.structured if outcome.structured is not None else json.loads(outcome.content[0]["text"])
    return {s["id"]: s for s in report["steps"]}


async def test_preview_gives_each_steps_decision_before_anything_runs(gateway: Gateway, tmp_path: Path) -> None:
    document = plan(
        step("look", "lookup", arguments={"name": "x"}),
        step("plain", "act", arguments={"label": "p", "value": "small"}),
        step("big", "act", arguments={"label": "b", "value": "big"}),
        step("later", "act", arguments={"label": "l", "value": {"$ref": "look.result.matches[0].id"}}),
        step("no", "fail", arguments={"label": "forbidden"}),
    )
    preview = await gateway.preview_plan(Plan.model_validate(document), who())
    decisions = {s.id: s.decision for s in preview.steps}
    assert decisions == {
        "look": "allow",
        "plain": "allow",
        "big": "approval_required",
        "later": "runtime",  # a condition reads args.value, which comes from `look`
        "no": "deny",
    }
    assert preview.batches == (("look", "plain", "big", "no"), ("later",))
    assert [(f.source, f.target) for f in preview.flows] == [("look", "later")]
    # a plan with a denied step is refused whole: nothing ran, not even the allowed steps
    refused = await run(gateway, document)
    assert refused.code is OutcomeCode.DENIED and "no (plab.fail)" in refused.message
    assert journal(tmp_path / "d") == []


async def test_independent_steps_run_in_parallel_up_to_the_limit(gateway: Gateway) -> None:
    sleeps = [step(f"s{i}", "sleep", arguments={"label": f"s{i}", "seconds": 0.3}) for i in range(4)]
    parallel = await run(gateway, plan(*sleeps))
    assert parallel.code is OutcomeCode.OK, parallel.message
    spans = [(s["result"]["started"], s["result"]["finished"]) for s in steps_of(parallel).values()]
    assert max(start for start, _ in spans) < min(end for _, end in spans)  # all four overlapped
    serial = await run(gateway, plan(*sleeps, limits={"max_parallel": 1}))
    spans = sorted((s["result"]["started"], s["result"]["finished"]) for s in steps_of(serial).values())
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(3))  # one at a time


async def test_step_and_plan_timeouts(gateway: Gateway) -> None:
    slow = step("slow", "sleep", arguments={"label": "slow", "seconds": 3}, timeout_seconds=0.2, on_error="continue")
    quick = step("quick", "sleep", arguments={"label": "quick", "seconds": 0.01})
    outcome = await run(gateway, plan(slow, quick))
    report = steps_of(outcome)
    assert report["slow"]["status"] == "failed" and report["slow"]["code"] == "timeout"
    assert report["quick"]["status"] == "succeeded"
    late = await run(
        gateway, plan(step("long", "sleep", arguments={"label": "l", "seconds": 3}), limits={"timeout_seconds": 0.3})
    )
    assert late.structured is None and json.loads(late.content[0]["text"])["status"] == "timed_out"


async def test_retries_apply_to_idempotent_tools_only(gateway: Gateway) -> None:
    outcome = await run(gateway, plan(step("f", "flaky", arguments={"key": "k1", "failures": 2}, retries=2)))
    assert outcome.code is OutcomeCode.OK
    assert steps_of(outcome)["f"]["attempts"] == 3
    refused = await run(gateway, plan(step("b", "brittle", arguments={"key": "k2"}, retries=1)))
    assert refused.code is OutcomeCode.INVALID_ARGUMENTS and "is not idempotent" in refused.message
    once = await run(gateway, plan(step("b", "brittle", arguments={"key": "k3"})))
    assert steps_of(once)["b"]["attempts"] == 1 and steps_of(once)["b"]["status"] == "failed"


async def test_compensations_run_in_reverse_order_and_a_failing_one_does_not_stop_the_rest(
    gateway: Gateway, tmp_path: Path
) -> None:
    document = plan(
        step(
            "a",
            "act",
            arguments={"label": "a"},
            compensate={"tool": "plab.undo", "arguments": {"label": {"$ref": "a.result.label"}}},
        ),
        step(
            "b",
            "act",
            arguments={"label": "b"},
            after=["a"],
            compensate={"tool": "plab.undo", "arguments": {"label": "bad-b"}},
        ),
        step(
            "c",
            "act",
            arguments={"label": "c"},
            after=["b"],
            compensate={"tool": "plab.undo", "arguments": {"label": "c"}},
        ),
        step("boom", "fail", arguments={"label": "boom"}, after=["c"], on_error="compensate"),
        step("never", "act", arguments={"label": "never"}, after=["boom"]),
    )
    outcome = await run(gateway, document)
    report = json.loads(outcome.content[0]["text"])
    assert report["status"] == "compensation_failed"
    done = [(e["tool"], e["label"]) for e in journal(tmp_path / "d")]
    assert done == [
        ("act", "a"),
        ("act", "b"),
        ("act", "c"),
        ("fail", "boom"),
        ("undo", "c"),
        ("undo", "bad-b"),
        ("undo", "a"),  # newest first; b's fails, a's still runs
    ]
    statuses = {s["id"]: s["status"] for s in report["steps"]}
    assert statuses == {
        "a": "compensated",
        "b": "compensation_failed",
        "c": "compensated",
        "boom": "failed",
        "never": "skipped",
    }


async def test_a_reference_to_a_failed_step_skips_only_what_needs_it(gateway: Gateway, tmp_path: Path) -> None:
    document = plan(
        step("x", "fail", arguments={"label": "x"}, on_error="continue"),
        step("y", "act", arguments={"label": "y", "value": {"$ref": "x.result.label"}}),
        step("z", "act", arguments={"label": "z"}),
    )
    outcome = await run(gateway, document)
    statuses = {s: r["status"] for s, r in steps_of(outcome).items()}
    assert statuses == {"x": "failed", "y": "skipped", "z": "succeeded"}
    assert "needs x" in steps_of(outcome)["y"]["message"]


async def test_one_approval_covers_the_plan_and_a_changed_plan_needs_a_new_one(gateway: Gateway) -> None:
    document = plan(
        step("small", "act", arguments={"label": "s", "value": "small"}),
        step("big", "act", arguments={"label": "b", "value": "big"}),
    )
    held = await run(gateway, document)
    assert held.code is OutcomeCode.APPROVAL_REQUIRED
    request = await gateway.approvals.get(held.data["approval_id"])
    assert request is not None and request.arguments["plan"] == document  # the approver sees every step
    assert any("step big: plab.act" in reason for reason in request.reasons)

    # the same plan with one step changed is another request: the approval binds the plan's content
    tampered = json.loads(json.dumps(document))
    tampered["steps"][0]["arguments"]["label"] = "changed"
    other = await run(gateway, tampered)
    assert other.code is OutcomeCode.APPROVAL_REQUIRED and other.data["approval_id"] != request.id
    # and nobody can hand in an approval's coverage themselves
    forged = await gateway.call_tool(who(), "gateway.plan_run", {"plan": document, "approval_covers": []})
    assert forged.code is OutcomeCode.INVALID_ARGUMENTS

    await gateway.approvals.approve(request.id, who("carol"), "fine")
    done = await gateway.approvals.wait(request.id, 10)
    assert done is not None and done.status.value == "succeeded", done
    run_id = done.result["structured"]["run_id"]
    with sqlite3.connect(gateway.config.resolve(gateway.config.audit.path)) as db:
        rows = db.execute(
            "SELECT json_extract(body, '$.plan_step'), json_extract(body, '$.approval_id') FROM audit_log"
            " WHERE event = 'tool.call' AND json_extract(body, '$.plan_run_id') = ?",
            (run_id,),
        ).fetchall()
    assert sorted(rows) == [("big", request.id), ("small", None)]  # the big step ran under the plan's approval


async def test_a_step_whose_resolved_arguments_need_another_approval_pauses_the_plan(
    gateway: Gateway, tmp_path: Path
) -> None:
    document = plan(
        step("look", "lookup", arguments={"name": "big"}),
        step("act", "act", arguments={"label": "x", "value": {"$ref": "look.result.matches[0].tags[9]"}}),
    )
    # a reference that does not resolve fails the step (no guessing)
    outcome = await run(gateway, document)
    assert steps_of(outcome)["act"]["status"] == "failed"
    document["steps"][0] = step("look", "act", arguments={"label": "look", "value": "small"})
    document["steps"][1]["arguments"]["value"] = {"$ref": "look.result.label"}  # "look": allowed at run time
    assert (await run(gateway, document)).code is OutcomeCode.OK
    document["steps"][0]["arguments"]["label"] = "big"  # now the referenced value makes the step need approval
    paused = await run(gateway, document)
    report = json.loads(paused.content[0]["text"])
    assert report["status"] == "paused"
    act = {s["id"]: s for s in report["steps"]}["act"]
    assert act["status"] == "paused" and act["code"] == "approval_required" and act["approval_id"]


async def test_plan_status_is_for_the_owner_and_auditors(gateway: Gateway) -> None:
    outcome = await run(gateway, plan(step("a", "act", arguments={"label": "a"})))
    run_id = outcome.structured["run_id"]
    mine = await gateway.call_tool(who(), "gateway.plan_status", {"run_id": run_id})
    assert mine.code is OutcomeCode.OK and mine.structured["status"] == "succeeded"
    assert mine.structured["steps"][0]["audit_id"] == steps_of(outcome)["a"]["audit_id"]
    assert (
        await gateway.call_tool(who("bob"), "gateway.plan_status", {"run_id": run_id})
    ).code is OutcomeCode.TOOL_FAILED
    audited = await gateway.call_tool(who("dave"), "gateway.plan_status", {"run_id": run_id})
    assert audited.code is OutcomeCode.UNKNOWN_TOOL  # dave has no plan tools in the demo; he reads from the CLI


async def test_policy_conditions_see_schema_defaults_for_omitted_arguments(gateway: Gateway) -> None:
    """`when args.value == "big"` on a call that omits `value` (default "") neither needs approval nor denies."""
    outcome = await gateway.call_tool(who(), "plab.act", {"label": "no value given"})
    assert outcome.code is OutcomeCode.OK, outcome.message
    held = await gateway.call_tool(who(), "plab.act", {"label": "x", "value": "big"})
    assert held.code is OutcomeCode.APPROVAL_REQUIRED
