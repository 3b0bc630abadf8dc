"""`portcullis plan`: the planner from the command line (schema, validate, preview, run, status, list)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import click

from gateway.calls import Caller
from gateway.cli.options import (
    config_option,
    echo_json,
    echo_table,
    json_option,
    load,
    load_gateway,
    resolve_subject,
    subject_option,
)
from gateway.gateway import Gateway
from gateway.outcomes import Outcome, OutcomeCode
from gateway.planner import Plan, validate
from gateway.planner.tools import render_preview
from gateway.reads import NoDatabase, open_reads
from gateway.store.errors import StoreError

if TYPE_CHECKING:
    from gateway.audit.reader import AuditReader


@click.group()
def plan() -> None:
    """Check, preview and run multi-step plans."""


@plan.command()
def schema() -> None:
    """Print the plan document's JSON Schema."""
    echo_json(Plan.model_json_schema())


def _read(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{file}: cannot read the plan: {exc}") from exc


def _caller(gateway: Gateway, chosen: str | None) -> Caller:
    """The caller every plan command acts as: the OS user's subject (--as only where the deployment allows)."""
    return resolve_subject(gateway.config, chosen).caller(gateway.config)


def _checked(gateway: Gateway, data: Any, caller: Caller) -> Plan:
    checked, problems = validate(data, lambda tool: gateway.planner.plan_tool(caller, tool))
    if checked is None:
        lines = "\n  ".join(f"{p.path}: {p.message}" for p in problems)
        raise click.ClickException(f"the plan is not valid:\n  {lines}")
    return checked


@plan.command("validate")
@config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@subject_option("Check the tools as this subject sees them.")
def validate_command(config_path: Path, file: Path, chosen: str | None) -> None:
    """Check a plan's shape, references, graph and tools (exit 1 with every problem).

    Example: portcullis plan validate examples/plans/refund-and-notify.json
    """
    gateway = load_gateway(config_path)
    checked = _checked(gateway, _read(file), _caller(gateway, chosen))
    click.echo(f"valid: {len(checked.steps)} steps, plan hash {checked.hash}")


@plan.command()
@config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@subject_option("Preview as this subject.")
@json_option
def preview(config_path: Path, file: Path, chosen: str | None, as_json: bool) -> None:
    """What a plan would do as SUBJECT, before anything runs: decisions, findings, flows, batches.

    Exit status 1 when a step is denied (the plan would be refused).

    Example: portcullis plan preview examples/plans/refund-and-notify.json --as alice
    """
    gateway = load_gateway(config_path)
    caller = _caller(gateway, chosen)
    checked = _checked(gateway, _read(file), caller)
    shown = anyio.run(gateway.preview_plan, checked, caller)
    if as_json:
        echo_json(shown.model_dump(mode="json"))
    else:
        click.echo(render_preview(shown))
    if shown.refused:
        raise SystemExit(1)


@plan.command()
@config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@subject_option("Run as this subject (every step is decided as them).")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Seconds to wait for a needed approval and the run (0: answer at once).",
)
@json_option
def run(config_path: Path, file: Path, chosen: str | None, wait: float, as_json: bool) -> None:
    """Run a plan through the gateway as SUBJECT (the same pipeline, approval queue and audit as MCP).

    The command is an administrative session: it runs this plan only; a serving gateway executes
    approved requests (this plan's, once approved, included).

    When steps need approval, one request covers the plan: this prints its id (exit 2) at once, or
    with --wait waits that long for the decision and the run. SUBJECT is the one your OS user maps
    to (identity.os_users); --as names another only where identity.allow_choosing_subject is true.

    Example: portcullis plan run examples/plans/refund-and-notify.json --wait 60
    """
    gateway = load_gateway(config_path)
    caller = _caller(gateway, chosen)
    data = _read(file)

    async def work() -> Outcome:
        async with gateway:
            return await gateway.call_tool(caller, "gateway.plan_run", {"plan": data}, wait=wait)

    outcome = anyio.run(work)
    if as_json:
        echo_json(outcome.model_dump(mode="json"))
    else:
        click.echo(_report(outcome))
    if outcome.code is OutcomeCode.APPROVAL_REQUIRED:
        raise SystemExit(2)
    if not outcome.ok:
        raise SystemExit(1)


def _report(outcome: Outcome) -> str:
    """A run's outcome in the operator's words (the outcome's message is written for an agent)."""
    if outcome.code is OutcomeCode.APPROVAL_REQUIRED and outcome.data.get("approval_id"):
        request = outcome.data["approval_id"]
        approver = outcome.data.get("approver_role") or "an approver"
        return (
            f"approval_required: request {request} is pending approval by {approver}\n"
            f"  portcullis approvals show {request}      what it asks, and its status\n"
            f"  portcullis approvals approve {request}   as {approver}; a serving gateway then runs the plan"
        )
    report = outcome.structured or {}
    if not report:
        return f"{outcome.code.value}: {outcome.message}"
    lines = [f"{outcome.code.value}: {report.get('status')}"]
    for step in report.get("steps", []):
        lines.append(f"  {step['id']:<14} {step['tool']:<24} {step['status']:<10} {step.get('message') or ''}")
    if report.get("run_id"):
        lines.append(f"run {report['run_id']}")
    return "\n".join(lines)


@plan.command()
@config_option
@click.argument("run_id")
@json_option
def status(config_path: Path, run_id: str, as_json: bool) -> None:
    """A plan run's status, step by step."""
    with _reader(config_path) as reader:
        record = reader.plan_run(run_id)
    if record is None:
        raise click.ClickException(f"no plan run {run_id}")
    if as_json:
        echo_json(record.model_dump(mode="json"))
        return
    click.echo(f"run {record.id}: {record.status} ({record.subject}, {record.created_at}) {record.goal}")
    echo_table(
        [s.model_dump() for s in record.steps],
        ["step_id", "tool", "status", "attempts", "outcome", "audit_id", "message"],
    )


@plan.command("list")
@config_option
@click.option("--limit", type=int, default=20, show_default=True)
@json_option
def list_command(config_path: Path, limit: int, as_json: bool) -> None:
    """Recent plan runs, newest first."""
    with _reader(config_path) as reader:
        rows = reader.plan_runs(limit)
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["id", "created_at", "subject", "status", "goal"])


@contextmanager
def _reader(config_path: Path) -> Iterator[AuditReader]:
    """The deployment's plan runs (SQLite or PostgreSQL, as `store:` says); a store fault is a ClickException."""
    try:
        with open_reads(load(config_path)) as reads:
            yield reads.audit
    except NoDatabase as exc:
        raise click.ClickException(str(exc)) from exc
    except StoreError as exc:
        raise click.ClickException(f"cannot read plan runs: {exc}") from exc
