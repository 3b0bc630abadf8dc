"""`portcullis policy`: ask what policy decides, without calling anything."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import click

from gateway.cli.options import config_option, echo_json, json_option, load_gateway


@click.group()
def policy() -> None:
    """Check and explain authorization policy."""


@policy.command()
@config_option
@click.argument("subject")
@click.argument("tool")
@click.option("--args", "arguments", default="{}", help="The call's arguments as a JSON object.")
@json_option
def check(config_path: Path, subject: str, tool: str, arguments: str, as_json: bool) -> None:
    """Show the decision for SUBJECT calling TOOL, the rule behind it and any findings.

    Runs the pipeline up to (not including) execution: nothing is called,
    queued or recorded.

    Example: portcullis policy check bob payments.refund --args '{"customer_id": "C001", "amount": 20, "reason": "x"}'
    """
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--args") from exc
    report = anyio.run(load_gateway(config_path).check, subject, tool, parsed)
    if as_json:
        echo_json(report.model_dump(mode="json"))
        return
    click.echo(f"decision: {report.decision.value}")
    click.echo(f"rule:     {report.rule or '(none matched: deny by default)'}")
    if report.rule_source:
        click.echo(f"source:   {report.rule_source}")
    if report.approver:
        click.echo(f"approver: {report.approver} ({report.quorum} distinct approver(s))")
    click.echo(f"roles:    {', '.join(report.roles) or '(none)'}")
    click.echo(f"outcome:  {report.outcome} ({report.message})")
    for match in report.matches:
        if match.condition is None:
            verdict = "matched"
        elif match.condition_error is not None:
            verdict = f"condition could not be evaluated ({match.condition_error})"
        else:
            verdict = f"condition is {str(match.condition_value).lower()}"
        flag = "+" if match.counted else "-"
        click.echo(f"  {flag} {match.rule}  [{match.source}] {verdict}")
    for finding in report.findings:
        click.echo(f"finding:  [{finding.rule}] {finding.path or ''} {finding.message}")
